// RebuildReply: the reply of a mutating request whose change is durable but whose reply was never
// stored (the daemon stopped between the two; server/api/idempotency.h), rebuilt from the state now
// and the request record's result_ref (AllocDomain: the domain id; Unmap: the bytes unmapped;
// ReleaseDevice: whether it leaked an attachment).
//
// Best effort by nature: the reply shows the object the request named as it is now (a later
// request may have changed it since) and a FreeDomain reply only carries the freed domain's id.
// Errors are the lookups' errors.
#ifndef IOMMUD_SERVER_API_REBUILT_REPLIES_H_
#define IOMMUD_SERVER_API_REBUILT_REPLIES_H_

#include <cstdint>

#include "absl/status/status.h"
#include "iommu/v1/iommu.pb.h"
#include "server/api/request_handlers.h"

namespace iommud {

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::ProbeDeviceRequest& request, uint64_t result_ref,
                          iommu::v1::Device* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::ReleaseDeviceRequest& request, uint64_t result_ref,
                          iommu::v1::ReleaseDeviceResponse* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::UseDefaultDomainRequest& request, uint64_t result_ref,
                          iommu::v1::Group* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::UnuseDefaultDomainRequest& request, uint64_t result_ref,
                          iommu::v1::Group* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::ClaimOwnershipRequest& request, uint64_t result_ref,
                          iommu::v1::Group* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::ReleaseOwnershipRequest& request, uint64_t result_ref,
                          iommu::v1::Group* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::ClaimDeviceRequest& request, uint64_t result_ref,
                          iommu::v1::Group* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::HandOverGroupRequest& request, uint64_t result_ref,
                          iommu::v1::Group* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::ReleaseDeviceOwnershipRequest& request,
                          uint64_t result_ref, iommu::v1::Group* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::RenewLeaseRequest& request, uint64_t result_ref,
                          iommu::v1::Group* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::AllocDomainRequest& request, uint64_t result_ref,
                          iommu::v1::Domain* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::FreeDomainRequest& request, uint64_t result_ref,
                          iommu::v1::Domain* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::AttachDeviceRequest& request, uint64_t result_ref,
                          iommu::v1::Group* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::AttachGroupRequest& request, uint64_t result_ref,
                          iommu::v1::Group* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::DetachGroupRequest& request, uint64_t result_ref,
                          iommu::v1::Group* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::DetachDeviceRequest& request, uint64_t result_ref,
                          iommu::v1::Group* reply);
// RegisterMemory: NOT_FOUND REGION_NOT_FOUND (regions do not survive a restart); UnregisterMemory:
// the region's id only; Map of a region: the domain's mapping at the request's iova.
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::RegisterMemoryRequest& request, uint64_t result_ref,
                          iommu::v1::MemoryRegion* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::UnregisterMemoryRequest& request, uint64_t result_ref,
                          iommu::v1::MemoryRegion* reply);
absl::Status RebuildReply(const RequestHandlers& handlers, const iommu::v1::MapRequest& request,
                          uint64_t result_ref, iommu::v1::MapResponse* reply);
// MapBatch: each entry as Map's reply would be rebuilt.
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::MapBatchRequest& request, uint64_t result_ref,
                          iommu::v1::MapBatchResponse* reply);
absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::ReplaceDomainRequest& request, uint64_t result_ref,
                          iommu::v1::Group* reply);
absl::Status RebuildReply(const RequestHandlers& handlers, const iommu::v1::UnmapRequest& request,
                          uint64_t result_ref, iommu::v1::UnmapResponse* reply);

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_REBUILT_REPLIES_H_
