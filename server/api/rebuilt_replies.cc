#include "server/api/rebuilt_replies.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/status_macros.h"

namespace iommud {
namespace {

absl::Status GroupById(const RequestHandlers& handlers, uint64_t group_id,
                       iommu::v1::Group* reply) {
  iommu::v1::GetGroupRequest get;
  get.set_group_id(group_id);
  return handlers.GetGroup(get, reply);
}

absl::Status GroupOfDevice(const RequestHandlers& handlers, const std::string& device,
                           iommu::v1::Group* reply) {
  iommu::v1::GetDeviceRequest get;
  get.set_device(device);
  iommu::v1::Device found;
  RETURN_IF_ERROR(handlers.GetDevice(get, &found));
  return GroupById(handlers, found.group_id(), reply);
}

}  // namespace

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::ProbeDeviceRequest& request, uint64_t /*result_ref*/,
                          iommu::v1::Device* reply) {
  iommu::v1::GetDeviceRequest get;
  get.set_device(request.device());
  return handlers.GetDevice(get, reply);
}

absl::Status RebuildReply(const RequestHandlers& /*handlers*/,
                          const iommu::v1::ReleaseDeviceRequest& /*request*/, uint64_t result_ref,
                          iommu::v1::ReleaseDeviceResponse* reply) {
  reply->Clear();
  reply->set_leaked_attachment(result_ref != 0);
  return absl::OkStatus();
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::UseDefaultDomainRequest& request,
                          uint64_t /*result_ref*/, iommu::v1::Group* reply) {
  return GroupOfDevice(handlers, request.device(), reply);
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::UnuseDefaultDomainRequest& request,
                          uint64_t /*result_ref*/, iommu::v1::Group* reply) {
  return GroupOfDevice(handlers, request.device(), reply);
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::ClaimOwnershipRequest& request, uint64_t /*result_ref*/,
                          iommu::v1::Group* reply) {
  return GroupById(handlers, request.group_id(), reply);
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::ReleaseOwnershipRequest& request,
                          uint64_t /*result_ref*/, iommu::v1::Group* reply) {
  return GroupById(handlers, request.group_id(), reply);
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::ClaimDeviceRequest& request, uint64_t /*result_ref*/,
                          iommu::v1::Group* reply) {
  return GroupOfDevice(handlers, request.device(), reply);
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::HandOverGroupRequest& request, uint64_t /*result_ref*/,
                          iommu::v1::Group* reply) {
  return GroupById(handlers, request.group_id(), reply);
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::ReleaseDeviceOwnershipRequest& request,
                          uint64_t /*result_ref*/, iommu::v1::Group* reply) {
  return GroupOfDevice(handlers, request.device(), reply);
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::RenewLeaseRequest& request, uint64_t /*result_ref*/,
                          iommu::v1::Group* reply) {
  return GroupById(handlers, request.group_id(), reply);
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::AllocDomainRequest& /*request*/, uint64_t result_ref,
                          iommu::v1::Domain* reply) {
  iommu::v1::GetDomainRequest get;
  get.set_domain_id(result_ref);
  return handlers.GetDomain(get, reply);
}

absl::Status RebuildReply(const RequestHandlers& /*handlers*/,
                          const iommu::v1::FreeDomainRequest& request, uint64_t /*result_ref*/,
                          iommu::v1::Domain* reply) {
  reply->Clear();
  reply->set_id(request.domain_id());
  return absl::OkStatus();
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::AttachDeviceRequest& request, uint64_t /*result_ref*/,
                          iommu::v1::Group* reply) {
  return GroupOfDevice(handlers, request.device(), reply);
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::AttachGroupRequest& request, uint64_t /*result_ref*/,
                          iommu::v1::Group* reply) {
  return GroupById(handlers, request.group_id(), reply);
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::DetachGroupRequest& request, uint64_t /*result_ref*/,
                          iommu::v1::Group* reply) {
  return GroupById(handlers, request.group_id(), reply);
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::DetachDeviceRequest& request, uint64_t /*result_ref*/,
                          iommu::v1::Group* reply) {
  return GroupOfDevice(handlers, request.device(), reply);
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::ReplaceDomainRequest& request, uint64_t /*result_ref*/,
                          iommu::v1::Group* reply) {
  return GroupById(handlers, request.group_id(), reply);
}

absl::Status RebuildReply(const RequestHandlers& /*handlers*/,
                          const iommu::v1::RegisterMemoryRequest& /*request*/,
                          uint64_t /*result_ref*/, iommu::v1::MemoryRegion* /*reply*/) {
  // Regions are not persisted: the region this request registered went with the daemon.
  return Error(absl::StatusCode::kNotFound, reason::kRegionNotFound,
               "the region this request registered did not survive a restart: register again");
}

absl::Status RebuildReply(const RequestHandlers& /*handlers*/,
                          const iommu::v1::UnregisterMemoryRequest& request,
                          uint64_t /*result_ref*/, iommu::v1::MemoryRegion* reply) {
  reply->Clear();
  reply->set_id(request.region_id());
  return absl::OkStatus();
}

absl::Status RebuildReply(const RequestHandlers& handlers, const iommu::v1::MapRequest& request,
                          uint64_t /*result_ref*/, iommu::v1::MapResponse* reply) {
  if (request.region_id() != 0) {
    // The region-space address is the region's base (gone with a restart) plus the offset: the
    // mapping itself says it.
    iommu::v1::ListMappingsRequest list;
    list.set_domain_id(request.domain_id());
    do {
      iommu::v1::ListMappingsResponse page;
      RETURN_IF_ERROR(handlers.ListMappings(list, &page));
      for (const iommu::v1::Mapping& mapping : page.mappings()) {
        if (mapping.iova() != request.iova()) continue;
        *reply->mutable_mapping() = mapping;
        return absl::OkStatus();
      }
      list.set_page_token(page.next_page_token());
    } while (!list.page_token().empty());
    return Error(absl::StatusCode::kNotFound, reason::kRegionNotFound,
                 "the mapping of this request is gone", {{"domain_id",
                                                          absl::StrCat(request.domain_id())}});
  }
  iommu::v1::Mapping* mapping = reply->mutable_mapping();
  mapping->set_iova(request.iova());
  mapping->set_paddr(request.paddr());
  mapping->set_size(request.size());
  mapping->set_prot(request.prot() != 0
                        ? request.prot()
                        : iommu::v1::PROT_READ | iommu::v1::PROT_WRITE);  // the default
  return absl::OkStatus();
}

absl::Status RebuildReply(const RequestHandlers& handlers,
                          const iommu::v1::MapBatchRequest& request, uint64_t /*result_ref*/,
                          iommu::v1::MapBatchResponse* reply) {
  reply->Clear();
  // The domain's mappings by iova, read once (a region entry's paddr is only in the mapping).
  absl::flat_hash_map<uint64_t, iommu::v1::Mapping> by_iova;
  iommu::v1::ListMappingsRequest list;
  list.set_domain_id(request.domain_id());
  do {
    iommu::v1::ListMappingsResponse page;
    RETURN_IF_ERROR(handlers.ListMappings(list, &page));
    for (const iommu::v1::Mapping& mapping : page.mappings()) by_iova[mapping.iova()] = mapping;
    list.set_page_token(page.next_page_token());
  } while (!list.page_token().empty());
  for (const iommu::v1::MapBatchEntry& entry : request.entries()) {
    auto found = by_iova.find(entry.iova());
    if (found == by_iova.end()) {
      return Error(absl::StatusCode::kNotFound, reason::kRegionNotFound,
                   "a mapping of this request is gone",
                   {{"domain_id", absl::StrCat(request.domain_id())},
                    {"iova", absl::StrCat("0x", absl::Hex(entry.iova()))}});
    }
    *reply->add_mappings() = found->second;
  }
  return absl::OkStatus();
}

absl::Status RebuildReply(const RequestHandlers& /*handlers*/,
                          const iommu::v1::UnmapRequest& /*request*/, uint64_t result_ref,
                          iommu::v1::UnmapResponse* reply) {
  reply->set_bytes_unmapped(result_ref);
  return absl::OkStatus();
}

}  // namespace iommud
