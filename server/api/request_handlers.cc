#include "server/api/request_handlers.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/status_macros.h"
#include "server/api/pagination.h"
#include "server/api/proto_convert.h"

namespace iommud {
namespace {

// Keeps the elements of `items` for which `keep` is true.
template <typename T, typename Pred>
std::vector<T> Filter(std::vector<T> items, Pred keep) {
  items.erase(
      std::remove_if(items.begin(), items.end(), [&](const T& item) { return !keep(item); }),
      items.end());
  return items;
}

// Collection names of the page tokens: the list and its filters.
std::string Collection(absl::string_view list, absl::string_view unit, uint64_t group_id = 0) {
  return absl::StrCat(list, "?unit=", unit, "&group_id=", group_id);
}

// A wire lease TTL (0 = none); anything beyond what a Duration holds becomes infinite, which the
// registry refuses like any TTL out of its range.
absl::Duration LeaseTtlFromProto(uint64_t millis) {
  constexpr uint64_t kMaxMillis = uint64_t{1} << 62;
  return millis > kMaxMillis ? absl::InfiniteDuration()
                             : absl::Milliseconds(static_cast<int64_t>(millis));
}

}  // namespace

RequestHandlers::RequestHandlers(Registry* registry, RequestBounds bounds)
    : registry_(registry), bounds_(bounds) {}

uint32_t RequestHandlers::PageSize(uint32_t requested) const {
  return EffectivePageSize(requested, bounds_.max_page_size);
}

// --- Inventory ---

absl::Status RequestHandlers::ListUnits(const iommu::v1::ListUnitsRequest& request,
                                        iommu::v1::ListUnitsResponse* response) const {
  ASSIGN_OR_RETURN(Page<UnitInfo> page,
                   Paginate(
                       registry_->ListUnits(), [](const UnitInfo& unit) { return unit.name; },
                       "units", PageSize(request.page_size()), request.page_token()));
  for (const UnitInfo& unit : page.items) UnitToProto(unit, response->add_units());
  response->set_next_page_token(page.next_page_token);
  return absl::OkStatus();
}

absl::Status RequestHandlers::ListGroups(const iommu::v1::ListGroupsRequest& request,
                                         iommu::v1::ListGroupsResponse* response) const {
  if (!request.unit().empty()) RETURN_IF_ERROR(registry_->GetUnit(request.unit()).status());
  std::vector<GroupInfo> groups = Filter(registry_->ListGroups(), [&](const GroupInfo& group) {
    return request.unit().empty() || group.unit == request.unit();
  });
  ASSIGN_OR_RETURN(
      Page<GroupInfo> page,
      Paginate(
          std::move(groups), [](const GroupInfo& group) { return NumericPageKey(group.id); },
          Collection("groups", request.unit()), PageSize(request.page_size()), request.page_token()));
  for (const GroupInfo& group : page.items) GroupToProto(group, response->add_groups());
  response->set_next_page_token(page.next_page_token);
  return absl::OkStatus();
}

absl::Status RequestHandlers::GetGroup(const iommu::v1::GetGroupRequest& request,
                                       iommu::v1::Group* response) const {
  RETURN_IF_ERROR(RequireId(request.group_id(), "group_id"));
  ASSIGN_OR_RETURN(GroupInfo group, registry_->GetGroup(request.group_id()));
  GroupToProto(group, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::ListDevices(const iommu::v1::ListDevicesRequest& request,
                                          iommu::v1::ListDevicesResponse* response) const {
  if (!request.unit().empty()) RETURN_IF_ERROR(registry_->GetUnit(request.unit()).status());
  if (request.group_id() != 0) RETURN_IF_ERROR(registry_->GetGroup(request.group_id()).status());
  std::vector<DeviceInfo> devices = Filter(registry_->ListDevices(), [&](const DeviceInfo& device) {
    return (request.unit().empty() || device.unit == request.unit()) &&
           (request.group_id() == 0 || device.group == request.group_id());
  });
  ASSIGN_OR_RETURN(Page<DeviceInfo> page,
                   Paginate(
                       std::move(devices), [](const DeviceInfo& device) { return device.name; },
                       Collection("devices", request.unit(), request.group_id()),
                       PageSize(request.page_size()), request.page_token()));
  for (const DeviceInfo& device : page.items) DeviceToProto(device, response->add_devices());
  response->set_next_page_token(page.next_page_token);
  return absl::OkStatus();
}

absl::Status RequestHandlers::GetDevice(const iommu::v1::GetDeviceRequest& request,
                                        iommu::v1::Device* response) const {
  RETURN_IF_ERROR(RequireField(request.device(), "device"));
  ASSIGN_OR_RETURN(DeviceInfo device, registry_->GetDevice(request.device()));
  DeviceToProto(device, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::ListDomains(const iommu::v1::ListDomainsRequest& request,
                                          iommu::v1::ListDomainsResponse* response) const {
  if (!request.unit().empty()) RETURN_IF_ERROR(registry_->GetUnit(request.unit()).status());
  std::vector<DomainInfo> domains = Filter(registry_->ListDomains(), [&](const DomainInfo& domain) {
    return request.unit().empty() || domain.unit == request.unit();
  });
  ASSIGN_OR_RETURN(
      Page<DomainInfo> page,
      Paginate(
          std::move(domains), [](const DomainInfo& domain) { return NumericPageKey(domain.id); },
          Collection("domains", request.unit()), PageSize(request.page_size()), request.page_token()));
  for (const DomainInfo& domain : page.items) DomainToProto(domain, response->add_domains());
  response->set_next_page_token(page.next_page_token);
  return absl::OkStatus();
}

absl::Status RequestHandlers::GetDomain(const iommu::v1::GetDomainRequest& request,
                                        iommu::v1::Domain* response) const {
  RETURN_IF_ERROR(RequireId(request.domain_id(), "domain_id"));
  ASSIGN_OR_RETURN(DomainInfo domain, registry_->GetDomain(request.domain_id()));
  DomainToProto(domain, response);
  return absl::OkStatus();
}

// --- Device lifecycle ---

absl::Status RequestHandlers::ProbeDevice(const iommu::v1::ProbeDeviceRequest& request,
                                          iommu::v1::Device* response, CallContext* context) const {
  ASSIGN_OR_RETURN(ProbeRequest probe, ProbeRequestFromProto(request));
  ASSIGN_OR_RETURN(DeviceInfo device, registry_->ProbeDevice(probe, context));
  DeviceToProto(device, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::ReleaseDevice(const iommu::v1::ReleaseDeviceRequest& request,
                                            iommu::v1::ReleaseDeviceResponse* response,
                                            CallContext* context) const {
  RETURN_IF_ERROR(RequireField(request.device(), "device"));
  // Unforced: a device claimed again after the wait for its owner ended is refused, not revoked.
  ASSIGN_OR_RETURN(ReleaseResult result,
                   registry_->ReleaseDevice(request.device(), context,
                                            /*refuse_if_in_use=*/!request.force()));
  response->set_leaked_attachment(result.leaked_attachment);
  return absl::OkStatus();
}

// --- DMA ownership ---

absl::Status RequestHandlers::UseDefaultDomain(const iommu::v1::UseDefaultDomainRequest& request,
                                               iommu::v1::Group* response,
                                               CallContext* context) const {
  RETURN_IF_ERROR(RequireField(request.device(), "device"));
  ASSIGN_OR_RETURN(GroupInfo group, registry_->UseDefaultDomain(request.device(), context));
  GroupToProto(group, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::UnuseDefaultDomain(
    const iommu::v1::UnuseDefaultDomainRequest& request, iommu::v1::Group* response,
    CallContext* context) const {
  RETURN_IF_ERROR(RequireField(request.device(), "device"));
  ASSIGN_OR_RETURN(GroupInfo group, registry_->UnuseDefaultDomain(request.device(), context));
  GroupToProto(group, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::ClaimOwnership(const iommu::v1::ClaimOwnershipRequest& request,
                                             iommu::v1::Group* response,
                                             CallContext* context) const {
  RETURN_IF_ERROR(RequireId(request.group_id(), "group_id"));
  ASSIGN_OR_RETURN(GroupInfo group, registry_->ClaimOwnership(
                                        request.group_id(), request.owner(),
                                        LeaseTtlFromProto(request.lease_ttl_millis()), context));
  GroupToProto(group, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::HandOverGroup(const iommu::v1::HandOverGroupRequest& request,
                                            iommu::v1::Group* response,
                                            CallContext* context) const {
  RETURN_IF_ERROR(RequireId(request.group_id(), "group_id"));
  ASSIGN_OR_RETURN(GroupInfo group,
                   registry_->HandOverGroup(request.group_id(), request.owner(), request.uid(),
                                            request.gid(), context));
  GroupToProto(group, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::RenewLease(const iommu::v1::RenewLeaseRequest& request,
                                         iommu::v1::Group* response, CallContext* context) const {
  RETURN_IF_ERROR(RequireId(request.group_id(), "group_id"));
  std::optional<absl::Duration> ttl;
  if (request.lease_ttl_millis() != 0) ttl = LeaseTtlFromProto(request.lease_ttl_millis());
  ASSIGN_OR_RETURN(GroupInfo group,
                   registry_->RenewLease(request.group_id(), request.owner(), ttl, context));
  GroupToProto(group, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::BindLease(const iommu::v1::RenewLeaseRequest& request,
                                        uint64_t stream, iommu::v1::Group* response) const {
  RETURN_IF_ERROR(RequireId(request.group_id(), "group_id"));
  std::optional<absl::Duration> ttl;
  if (request.lease_ttl_millis() != 0) ttl = LeaseTtlFromProto(request.lease_ttl_millis());
  ASSIGN_OR_RETURN(GroupInfo group,
                   registry_->BindLease(request.group_id(), request.owner(), ttl, stream));
  GroupToProto(group, response);
  return absl::OkStatus();
}

absl::StatusOr<bool> RequestHandlers::ReleaseBoundLease(uint64_t group, uint64_t stream) const {
  return registry_->ReleaseBoundLease(group, stream);
}

absl::Status RequestHandlers::ReleaseOwnership(const iommu::v1::ReleaseOwnershipRequest& request,
                                               iommu::v1::Group* response,
                                               CallContext* context) const {
  RETURN_IF_ERROR(RequireId(request.group_id(), "group_id"));
  ASSIGN_OR_RETURN(GroupInfo group, registry_->ReleaseOwnership(request.group_id(), request.owner(),
                                                                request.force(), context));
  GroupToProto(group, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::ClaimDevice(const iommu::v1::ClaimDeviceRequest& request,
                                          iommu::v1::Group* response, CallContext* context) const {
  RETURN_IF_ERROR(RequireField(request.device(), "device"));
  ASSIGN_OR_RETURN(GroupInfo group,
                   registry_->ClaimDevice(request.device(), request.owner(), context));
  GroupToProto(group, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::ReleaseDeviceOwnership(
    const iommu::v1::ReleaseDeviceOwnershipRequest& request, iommu::v1::Group* response,
    CallContext* context) const {
  RETURN_IF_ERROR(RequireField(request.device(), "device"));
  ASSIGN_OR_RETURN(GroupInfo group,
                   registry_->ReleaseDeviceOwnership(request.device(), request.owner(), context));
  GroupToProto(group, response);
  return absl::OkStatus();
}

// --- Domains and attachment ---

absl::Status RequestHandlers::AllocDomain(const iommu::v1::AllocDomainRequest& request,
                                          iommu::v1::Domain* response, CallContext* context) const {
  RETURN_IF_ERROR(RequireField(request.unit(), "unit"));
  ASSIGN_OR_RETURN(std::optional<DomainType> type, DomainTypeFromProto(request.type(), "type"));
  ASSIGN_OR_RETURN(DomainInfo domain,
                   registry_->AllocDomain(request.unit(), type.value_or(DomainType::kUnmanaged),
                                          request.owner(), context));
  DomainToProto(domain, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::FreeDomain(const iommu::v1::FreeDomainRequest& request,
                                         iommu::v1::Domain* response, CallContext* context) const {
  RETURN_IF_ERROR(RequireId(request.domain_id(), "domain_id"));
  ASSIGN_OR_RETURN(DomainInfo domain,
                   registry_->FreeDomain(request.domain_id(), request.owner(), context));
  DomainToProto(domain, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::AttachDevice(const iommu::v1::AttachDeviceRequest& request,
                                           iommu::v1::Group* response, CallContext* context) const {
  RETURN_IF_ERROR(RequireField(request.device(), "device"));
  RETURN_IF_ERROR(RequireId(request.domain_id(), "domain_id"));
  ASSIGN_OR_RETURN(GroupInfo group, registry_->AttachDevice(request.device(), request.domain_id(),
                                                            request.owner(), context));
  GroupToProto(group, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::AttachGroup(const iommu::v1::AttachGroupRequest& request,
                                          iommu::v1::Group* response, CallContext* context) const {
  RETURN_IF_ERROR(RequireId(request.group_id(), "group_id"));
  RETURN_IF_ERROR(RequireId(request.domain_id(), "domain_id"));
  ASSIGN_OR_RETURN(GroupInfo group, registry_->AttachGroup(request.group_id(), request.domain_id(),
                                                           request.owner(), context));
  GroupToProto(group, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::DetachGroup(const iommu::v1::DetachGroupRequest& request,
                                          iommu::v1::Group* response, CallContext* context) const {
  RETURN_IF_ERROR(RequireId(request.group_id(), "group_id"));
  RETURN_IF_ERROR(RequireId(request.domain_id(), "domain_id"));
  ASSIGN_OR_RETURN(GroupInfo group, registry_->DetachGroup(request.group_id(), request.domain_id(),
                                                           request.owner(), context));
  GroupToProto(group, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::DetachDevice(const iommu::v1::DetachDeviceRequest& request,
                                           iommu::v1::Group* response, CallContext* context) const {
  RETURN_IF_ERROR(RequireField(request.device(), "device"));
  RETURN_IF_ERROR(RequireId(request.domain_id(), "domain_id"));
  ASSIGN_OR_RETURN(GroupInfo group, registry_->DetachDevice(request.device(), request.domain_id(),
                                                            request.owner(), context));
  GroupToProto(group, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::ReplaceDomain(const iommu::v1::ReplaceDomainRequest& request,
                                            iommu::v1::Group* response,
                                            CallContext* context) const {
  RETURN_IF_ERROR(RequireId(request.group_id(), "group_id"));
  RETURN_IF_ERROR(RequireId(request.from_domain_id(), "from_domain_id"));
  RETURN_IF_ERROR(RequireId(request.to_domain_id(), "to_domain_id"));
  ASSIGN_OR_RETURN(GroupInfo group,
                   registry_->ReplaceDomain(request.group_id(), request.from_domain_id(),
                                            request.to_domain_id(), request.owner(), context));
  GroupToProto(group, response);
  return absl::OkStatus();
}

// --- Memory regions ---

absl::Status RequestHandlers::RegisterMemory(const iommu::v1::RegisterMemoryRequest& request,
                                             iommu::v1::MemoryRegion* response,
                                             CallContext* context) const {
  ASSIGN_OR_RETURN(MemoryRegionInfo region,
                   registry_->RegisterMemory(request.owner(), request.size(), nullptr));
  MemoryRegionToProto(region, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::UnregisterMemory(const iommu::v1::UnregisterMemoryRequest& request,
                                               iommu::v1::MemoryRegion* response,
                                               CallContext* context) const {
  RETURN_IF_ERROR(RequireId(request.region_id(), "region_id"));
  ASSIGN_OR_RETURN(MemoryRegionInfo region,
                   registry_->UnregisterMemory(request.region_id(), request.owner()));
  MemoryRegionToProto(region, response);
  return absl::OkStatus();
}

absl::Status RequestHandlers::ListMemoryRegions(
    const iommu::v1::ListMemoryRegionsRequest& request,
    iommu::v1::ListMemoryRegionsResponse* response) const {
  ASSIGN_OR_RETURN(
      Page<MemoryRegionInfo> page,
      Paginate(
          registry_->ListMemoryRegions(),
          [](const MemoryRegionInfo& region) { return NumericPageKey(region.id); },
          "memory_regions", PageSize(request.page_size()), request.page_token()));
  for (const MemoryRegionInfo& region : page.items) {
    MemoryRegionToProto(region, response->add_regions());
  }
  response->set_next_page_token(page.next_page_token);
  return absl::OkStatus();
}

// --- Mappings and DMA ---

absl::Status RequestHandlers::Map(const iommu::v1::MapRequest& request,
                                  iommu::v1::MapResponse* response, CallContext* context) const {
  RETURN_IF_ERROR(RequireId(request.domain_id(), "domain_id"));
  RETURN_IF_ERROR(CheckMapSize(request.size(), bounds_));
  if (request.region_id() != 0 && request.paddr() != 0) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kRegionAndPaddr,
                 "a Map names a region (region_id, region_offset) or a paddr, not both",
                 {{"region_id", absl::StrCat(request.region_id())},
                  {"paddr", absl::StrCat("0x", absl::Hex(request.paddr()))}});
  }
  ASSIGN_OR_RETURN(uint32_t prot, ProtFromProto(request.prot(), kProtRead | kProtWrite, "prot"));
  ASSIGN_OR_RETURN(Mapping mapping,
                   request.region_id() != 0
                       ? registry_->MapRegion(request.domain_id(), request.iova(),
                                              request.region_id(), request.region_offset(),
                                              request.size(), prot, request.owner(), context)
                       : registry_->Map(request.domain_id(), request.iova(), request.paddr(),
                                        request.size(), prot, request.owner(), context));
  MappingToProto(mapping, response->mutable_mapping());
  return absl::OkStatus();
}

absl::Status RequestHandlers::MapBatch(const iommu::v1::MapBatchRequest& request,
                                       iommu::v1::MapBatchResponse* response,
                                       CallContext* context) const {
  RETURN_IF_ERROR(RequireId(request.domain_id(), "domain_id"));
  std::vector<Registry::MapSpec> entries;
  entries.reserve(request.entries_size());
  uint64_t total = 0;
  for (const iommu::v1::MapBatchEntry& entry : request.entries()) {
    const std::string field = absl::StrCat("entries[", entries.size(), "]");
    if (entry.region_id() != 0 && entry.paddr() != 0) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kRegionAndPaddr,
                   "a MapBatch entry names a region (region_id, region_offset) or a paddr, not both",
                   {{"entry", absl::StrCat(entries.size())},
                    {"region_id", absl::StrCat(entry.region_id())},
                    {"paddr", absl::StrCat("0x", absl::Hex(entry.paddr()))}});
    }
    ASSIGN_OR_RETURN(uint32_t prot,
                     ProtFromProto(entry.prot(), kProtRead | kProtWrite, field + ".prot"));
    // Saturates: a sum past 2^64 is as much too large as the limit.
    total = entry.size() > UINT64_MAX - total ? UINT64_MAX : total + entry.size();
    Registry::MapSpec spec;
    spec.iova = entry.iova();
    spec.size = entry.size();
    spec.prot = prot;
    spec.paddr = entry.paddr();
    spec.region_id = entry.region_id();
    spec.region_offset = entry.region_offset();
    entries.push_back(spec);
  }
  RETURN_IF_ERROR(CheckMapSize(total, bounds_));
  ASSIGN_OR_RETURN(std::vector<Mapping> mappings,
                   registry_->MapBatch(request.domain_id(), entries, request.owner(), context));
  for (const Mapping& mapping : mappings) MappingToProto(mapping, response->add_mappings());
  return absl::OkStatus();
}

absl::Status RequestHandlers::Unmap(const iommu::v1::UnmapRequest& request,
                                    iommu::v1::UnmapResponse* response,
                                    CallContext* context) const {
  RETURN_IF_ERROR(RequireId(request.domain_id(), "domain_id"));
  ASSIGN_OR_RETURN(uint64_t bytes, registry_->Unmap(request.domain_id(), request.iova(),
                                                    request.size(), request.owner(), context));
  response->set_bytes_unmapped(bytes);
  return absl::OkStatus();
}

absl::Status RequestHandlers::ListMappings(const iommu::v1::ListMappingsRequest& request,
                                           iommu::v1::ListMappingsResponse* response) const {
  RETURN_IF_ERROR(RequireId(request.domain_id(), "domain_id"));
  ASSIGN_OR_RETURN(std::vector<Mapping> mappings, registry_->ListMappings(request.domain_id()));
  ASSIGN_OR_RETURN(
      Page<Mapping> page,
      Paginate(
          std::move(mappings), [](const Mapping& mapping) { return NumericPageKey(mapping.iova); },
          absl::StrCat("mappings?domain_id=", request.domain_id()), PageSize(request.page_size()),
          request.page_token()));
  for (const Mapping& mapping : page.items) MappingToProto(mapping, response->add_mappings());
  response->set_next_page_token(page.next_page_token);
  return absl::OkStatus();
}

absl::Status RequestHandlers::GetIovaRanges(const iommu::v1::GetIovaRangesRequest& request,
                                            iommu::v1::GetIovaRangesResponse* response) const {
  RETURN_IF_ERROR(RequireId(request.domain_id(), "domain_id"));
  ASSIGN_OR_RETURN(std::vector<IovaRange> ranges, registry_->IovaRanges(request.domain_id()));
  for (const IovaRange& range : ranges) {
    iommu::v1::IovaRange* out = response->add_ranges();
    out->set_start(range.start);
    out->set_size(range.size);
  }
  return absl::OkStatus();
}

absl::Status RequestHandlers::Translate(const iommu::v1::TranslateRequest& request,
                                        iommu::v1::TranslateResponse* response) const {
  RETURN_IF_ERROR(RequireField(request.device(), "device"));
  ASSIGN_OR_RETURN(uint32_t access, ProtFromProto(request.access(), kProtRead, "access"));
  ASSIGN_OR_RETURN(Translation translation,
                   registry_->Translate(request.device(), request.iova(), access));
  response->set_fault(FaultReasonToProto(translation.fault));
  response->set_paddr(translation.paddr);
  response->set_domain_id(translation.domain);
  return absl::OkStatus();
}

absl::Status RequestHandlers::ListTranslationFaults(const iommu::v1::ListTranslationFaultsRequest& request,
                                         iommu::v1::ListTranslationFaultsResponse* response) const {
  const uint32_t max_records = request.max_records() == 0
                                   ? kDefaultFaultRecords
                                   : std::min(request.max_records(), kMaxFaultRecords);
  uint64_t total = 0;
  std::vector<FaultRecord> faults = registry_->RecentFaults(max_records, &total);
  // The device behind each faulting RID, by (unit, RID): primary RIDs win over aliases; devices
  // sharing a RID are reported under the first by name.
  std::map<std::pair<std::string, Rid>, std::string> device_of;
  if (!faults.empty()) {
    const std::vector<DeviceInfo> devices = registry_->ListDevices();
    for (const DeviceInfo& device : devices)
      device_of.emplace(std::make_pair(device.unit, device.rid), device.name);
    for (const DeviceInfo& device : devices) {
      for (Rid alias : device.alias_rids)
        device_of.emplace(std::make_pair(device.unit, alias), device.name);
    }
  }
  for (const FaultRecord& fault : faults) {
    auto it = device_of.find(std::make_pair(fault.unit, fault.rid));
    FaultToProto(fault, it == device_of.end() ? "" : it->second, response->add_faults());
  }
  response->set_total(total);
  return absl::OkStatus();
}

}  // namespace iommud
