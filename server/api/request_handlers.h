// RequestHandlers: every RPC of iommu.v1.Iommu as a plain function of the Registry, without gRPC
// (so it can be tested in-process). The service (iommu_service.h) only adapts these onto the wire.
//
// Each handler validates what belongs to the wire (required fields, unknown enum values, prot bits,
// page tokens; INVALID_ARGUMENT with reasons MISSING_FIELD, INVALID_ENUM_VALUE, INVALID_PROT,
// INVALID_PAGE_TOKEN), then makes exactly one registry call per mutation and returns the registry's
// error unchanged. A mutating handler passes its `context` (the request's record for idempotency;
// null: none) to that registry call. List calls are paginated (pagination.h); an unknown unit or
// group in a List filter is NOT_FOUND like in the corresponding Get. On error `response` is
// unspecified. Thread-safe: the registry is.
#ifndef IOMMUD_SERVER_API_REQUEST_HANDLERS_H_
#define IOMMUD_SERVER_API_REQUEST_HANDLERS_H_

#include "absl/status/status.h"
#include "core/registry.h"
#include "core/store/call_context.h"
#include "iommu/v1/iommu.pb.h"
#include "server/api/request_bounds.h"

namespace iommud {

// Most recent faults ListTranslationFaults returns when max_records is 0, and at most.
inline constexpr uint32_t kDefaultFaultRecords = 100;
inline constexpr uint32_t kMaxFaultRecords = 1000;

class RequestHandlers {
 public:
  // `registry` is not owned and must outlive this. `bounds`: page sizes are clamped to
  // max_page_size, a Map larger than max_map_bytes is REQUEST_TOO_LARGE (request_bounds.h).
  explicit RequestHandlers(Registry* registry, RequestBounds bounds = {});

  absl::Status ListUnits(const iommu::v1::ListUnitsRequest& request,
                         iommu::v1::ListUnitsResponse* response) const;
  absl::Status ListGroups(const iommu::v1::ListGroupsRequest& request,
                          iommu::v1::ListGroupsResponse* response) const;
  absl::Status GetGroup(const iommu::v1::GetGroupRequest& request,
                        iommu::v1::Group* response) const;
  absl::Status ListDevices(const iommu::v1::ListDevicesRequest& request,
                           iommu::v1::ListDevicesResponse* response) const;
  absl::Status GetDevice(const iommu::v1::GetDeviceRequest& request,
                         iommu::v1::Device* response) const;
  absl::Status ListDomains(const iommu::v1::ListDomainsRequest& request,
                           iommu::v1::ListDomainsResponse* response) const;
  absl::Status GetDomain(const iommu::v1::GetDomainRequest& request,
                         iommu::v1::Domain* response) const;

  absl::Status ProbeDevice(const iommu::v1::ProbeDeviceRequest& request,
                           iommu::v1::Device* response, CallContext* context = nullptr) const;
  // Without `force`, a device bound USER_OWNED at the release is refused (DEVICE_IN_USE, nothing
  // changed); the service has waited for its owner before (owned_device_release.h).
  absl::Status ReleaseDevice(const iommu::v1::ReleaseDeviceRequest& request,
                             iommu::v1::ReleaseDeviceResponse* response,
                             CallContext* context = nullptr) const;

  absl::Status UseDefaultDomain(const iommu::v1::UseDefaultDomainRequest& request,
                                iommu::v1::Group* response, CallContext* context = nullptr) const;
  absl::Status UnuseDefaultDomain(const iommu::v1::UnuseDefaultDomainRequest& request,
                                  iommu::v1::Group* response, CallContext* context = nullptr) const;
  absl::Status ClaimOwnership(const iommu::v1::ClaimOwnershipRequest& request,
                              iommu::v1::Group* response, CallContext* context = nullptr) const;
  absl::Status ReleaseOwnership(const iommu::v1::ReleaseOwnershipRequest& request,
                                iommu::v1::Group* response, CallContext* context = nullptr) const;
  absl::Status ClaimDevice(const iommu::v1::ClaimDeviceRequest& request, iommu::v1::Group* response,
                           CallContext* context = nullptr) const;
  absl::Status ReleaseDeviceOwnership(const iommu::v1::ReleaseDeviceOwnershipRequest& request,
                                      iommu::v1::Group* response,
                                      CallContext* context = nullptr) const;
  absl::Status RenewLease(const iommu::v1::RenewLeaseRequest& request, iommu::v1::Group* response,
                          CallContext* context = nullptr) const;
  // A KeepLease message with `bind`: RenewLease that also binds the ownership to the KeepLease
  // stream `stream` (Registry::BindLease; LEASE_ALREADY_BOUND).
  absl::Status BindLease(const iommu::v1::RenewLeaseRequest& request, uint64_t stream,
                         iommu::v1::Group* response) const;
  // The KeepLease stream `stream` that bound `group` ended (Registry::ReleaseBoundLease): true if
  // the ownership was released.
  absl::StatusOr<bool> ReleaseBoundLease(uint64_t group, uint64_t stream) const;
  absl::Status HandOverGroup(const iommu::v1::HandOverGroupRequest& request,
                             iommu::v1::Group* response, CallContext* context = nullptr) const;

  absl::Status AllocDomain(const iommu::v1::AllocDomainRequest& request,
                           iommu::v1::Domain* response, CallContext* context = nullptr) const;
  absl::Status FreeDomain(const iommu::v1::FreeDomainRequest& request, iommu::v1::Domain* response,
                          CallContext* context = nullptr) const;
  absl::Status AttachDevice(const iommu::v1::AttachDeviceRequest& request,
                            iommu::v1::Group* response, CallContext* context = nullptr) const;
  absl::Status AttachGroup(const iommu::v1::AttachGroupRequest& request, iommu::v1::Group* response,
                           CallContext* context = nullptr) const;
  absl::Status DetachGroup(const iommu::v1::DetachGroupRequest& request, iommu::v1::Group* response,
                           CallContext* context = nullptr) const;
  absl::Status DetachDevice(const iommu::v1::DetachDeviceRequest& request,
                            iommu::v1::Group* response, CallContext* context = nullptr) const;
  absl::Status ReplaceDomain(const iommu::v1::ReplaceDomainRequest& request,
                             iommu::v1::Group* response, CallContext* context = nullptr) const;

  // Memory regions. RegisterMemory registers an emulated region (no process memory over gRPC).
  absl::Status RegisterMemory(const iommu::v1::RegisterMemoryRequest& request,
                              iommu::v1::MemoryRegion* response,
                              CallContext* context = nullptr) const;
  absl::Status UnregisterMemory(const iommu::v1::UnregisterMemoryRequest& request,
                                iommu::v1::MemoryRegion* response,
                                CallContext* context = nullptr) const;
  absl::Status ListMemoryRegions(const iommu::v1::ListMemoryRegionsRequest& request,
                                 iommu::v1::ListMemoryRegionsResponse* response) const;

  // A region_id selects Registry::MapRegion (then paddr must be 0: INVALID_ARGUMENT
  // REGION_AND_PADDR), else Registry::Map of the raw paddr (admins only: the service's check).
  absl::Status Map(const iommu::v1::MapRequest& request, iommu::v1::MapResponse* response,
                   CallContext* context = nullptr) const;
  // Registry::MapBatch of the entries (each checked as Map checks its request; the entries' sizes
  // together at most max_map_bytes: REQUEST_TOO_LARGE). Raw paddrs: admins only (the service's
  // check).
  absl::Status MapBatch(const iommu::v1::MapBatchRequest& request,
                        iommu::v1::MapBatchResponse* response,
                        CallContext* context = nullptr) const;
  absl::Status Unmap(const iommu::v1::UnmapRequest& request, iommu::v1::UnmapResponse* response,
                     CallContext* context = nullptr) const;
  absl::Status ListMappings(const iommu::v1::ListMappingsRequest& request,
                            iommu::v1::ListMappingsResponse* response) const;
  absl::Status GetIovaRanges(const iommu::v1::GetIovaRangesRequest& request,
                             iommu::v1::GetIovaRangesResponse* response) const;
  absl::Status Translate(const iommu::v1::TranslateRequest& request,
                         iommu::v1::TranslateResponse* response) const;
  absl::Status ListTranslationFaults(const iommu::v1::ListTranslationFaultsRequest& request,
                          iommu::v1::ListTranslationFaultsResponse* response) const;

 private:
  // A List request's page_size clamped to bounds_.max_page_size (0 stays "the default").
  uint32_t PageSize(uint32_t requested) const;

  Registry* const registry_;
  const RequestBounds bounds_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_REQUEST_HANDLERS_H_
