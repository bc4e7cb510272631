#include "server/api/proto_convert.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/status_macros.h"

namespace iommud {
namespace {

absl::Status InvalidEnum(int value, absl::string_view field) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidEnumValue,
               absl::StrCat(field, ": unknown enum value ", value),
               {{"field", std::string(field)}, {"value", absl::StrCat(value)}});
}

}  // namespace

iommu::v1::DomainType DomainTypeToProto(DomainType type) {
  switch (type) {
    case DomainType::kBlocked: return iommu::v1::DOMAIN_TYPE_BLOCKED;
    case DomainType::kIdentity: return iommu::v1::DOMAIN_TYPE_IDENTITY;
    case DomainType::kUnmanaged: return iommu::v1::DOMAIN_TYPE_UNMANAGED;
    case DomainType::kDma: return iommu::v1::DOMAIN_TYPE_DMA;
    case DomainType::kDmaFq: return iommu::v1::DOMAIN_TYPE_DMA_FQ;
  }
  return iommu::v1::DOMAIN_TYPE_UNSPECIFIED;
}

absl::StatusOr<std::optional<DomainType>> DomainTypeFromProto(int value, absl::string_view field) {
  switch (value) {
    case iommu::v1::DOMAIN_TYPE_UNSPECIFIED: return std::optional<DomainType>();
    case iommu::v1::DOMAIN_TYPE_BLOCKED: return DomainType::kBlocked;
    case iommu::v1::DOMAIN_TYPE_IDENTITY: return DomainType::kIdentity;
    case iommu::v1::DOMAIN_TYPE_UNMANAGED: return DomainType::kUnmanaged;
    case iommu::v1::DOMAIN_TYPE_DMA: return DomainType::kDma;
    case iommu::v1::DOMAIN_TYPE_DMA_FQ: return DomainType::kDmaFq;
  }
  return InvalidEnum(value, field);
}

iommu::v1::DriverBinding DriverBindingToProto(DriverBinding binding) {
  switch (binding) {
    case DriverBinding::kNone: return iommu::v1::DRIVER_BINDING_NONE;
    case DriverBinding::kKernelDriver: return iommu::v1::DRIVER_BINDING_KERNEL_DRIVER;
    case DriverBinding::kUserOwned: return iommu::v1::DRIVER_BINDING_USER_OWNED;
  }
  return iommu::v1::DRIVER_BINDING_UNSPECIFIED;
}

iommu::v1::FaultReason FaultReasonToProto(FaultReason reason) {
  switch (reason) {
    case FaultReason::kNone: return iommu::v1::FAULT_REASON_NONE;
    case FaultReason::kUnknownRid: return iommu::v1::FAULT_REASON_UNKNOWN_RID;
    case FaultReason::kBlocked: return iommu::v1::FAULT_REASON_BLOCKED;
    case FaultReason::kNoMapping: return iommu::v1::FAULT_REASON_NO_MAPPING;
    case FaultReason::kPermission: return iommu::v1::FAULT_REASON_PERMISSION;
  }
  return iommu::v1::FAULT_REASON_NONE;
}

void UnitToProto(const UnitInfo& unit, iommu::v1::IommuUnit* out) {
  out->Clear();
  out->set_name(unit.name);
  out->set_backend(unit.backend);
  out->set_pgsize_bitmap(unit.caps.pgsize_bitmap);
  out->set_iova_bits(unit.caps.iova_bits);
  out->set_max_rids(unit.caps.max_rids);
  for (DomainType type : unit.caps.domain_types) out->add_domain_types(DomainTypeToProto(type));
  for (const IovaRange& range : unit.caps.reserved_regions) {
    iommu::v1::IovaRange* region = out->add_reserved_regions();
    region->set_start(range.start);
    region->set_size(range.size);
  }
  out->set_device_count(unit.device_count);
  out->set_group_count(unit.group_count);
  out->set_domain_count(unit.domain_count);
}

void DeviceToProto(const DeviceInfo& device, iommu::v1::Device* out) {
  out->Clear();
  out->set_name(device.name);
  out->set_unit(device.unit);
  out->set_rid(device.rid);
  for (Rid alias : device.alias_rids) out->add_alias_rids(alias);
  out->set_group_id(device.group);
  out->set_binding(DriverBindingToProto(device.binding));
  out->set_domain_id(device.domain);
  out->set_attached(device.attached);
}

void GroupToProto(const GroupInfo& group, iommu::v1::Group* out) {
  out->Clear();
  out->set_id(group.id);
  out->set_unit(group.unit);
  for (const std::string& device : group.devices) out->add_devices(device);
  out->set_domain_id(group.domain);
  out->set_default_domain_id(group.default_domain);
  out->set_blocking_domain_id(group.blocking_domain);
  out->set_owner(group.owner);
  out->set_owner_cnt(group.owner_cnt);
  for (const std::string& device : group.claimed_devices) out->add_claimed_devices(device);
  for (const std::string& device : group.attached_devices) out->add_attached_devices(device);
  if (group.lease_ttl != absl::ZeroDuration()) {
    out->set_lease_ttl_millis(absl::ToInt64Milliseconds(group.lease_ttl));
    out->set_lease_expiry_unix_nanos(absl::ToUnixNanos(group.lease_expiry));
    out->set_lease_bound(group.lease_bound);
  }
  if (group.handed_over) {
    out->set_handed_over(true);
    out->set_handover_uid(group.handover_uid);
    out->set_handover_gid(group.handover_gid);
  }
}

void DomainToProto(const DomainInfo& domain, iommu::v1::Domain* out) {
  out->Clear();
  out->set_id(domain.id);
  out->set_unit(domain.unit);
  out->set_type(DomainTypeToProto(domain.type));
  out->set_owner(domain.owner);
  out->set_core_owned(domain.core_owned);
  out->set_pgsize_bitmap(domain.caps.pgsize_bitmap);
  out->set_iova_bits(domain.caps.iova_bits);
  for (GroupId group : domain.attached_groups) out->add_attached_group_ids(group);
  out->set_mapping_count(domain.mapping_count);
  out->set_mapped_bytes(domain.mapped_bytes);
}

void MemoryRegionToProto(const MemoryRegionInfo& region, iommu::v1::MemoryRegion* out) {
  out->Clear();
  out->set_id(region.id);
  out->set_owner(region.owner);
  out->set_size(region.size);
  out->set_base(region.base);
  out->set_mapped_bytes(region.mapped_bytes);
  out->set_kind(region.kind == MemoryRegionKind::kProcessMemory
                    ? iommu::v1::MemoryRegion::PROCESS_MEMORY
                    : iommu::v1::MemoryRegion::EMULATED);
}

void MappingToProto(const Mapping& mapping, iommu::v1::Mapping* out) {
  out->Clear();
  out->set_iova(mapping.iova);
  out->set_paddr(mapping.paddr);
  out->set_size(mapping.size);
  out->set_prot(mapping.prot);
}

void FaultToProto(const FaultRecord& fault, absl::string_view device, iommu::v1::FaultRecord* out) {
  out->Clear();
  out->set_unit(fault.unit);
  out->set_rid(fault.rid);
  out->set_device(std::string(device));
  out->set_iova(fault.iova);
  out->set_access(fault.access);
  out->set_reason(FaultReasonToProto(fault.reason));
  out->set_time_unix_nanos(fault.time_unix_nanos);
}

absl::Status RequireField(absl::string_view value, absl::string_view field) {
  if (!value.empty()) return absl::OkStatus();
  return Error(absl::StatusCode::kInvalidArgument, reason::kMissingField,
               absl::StrCat(field, " is required"), {{"field", std::string(field)}});
}

absl::Status RequireId(uint64_t value, absl::string_view field) {
  if (value != 0) return absl::OkStatus();
  return Error(absl::StatusCode::kInvalidArgument, reason::kMissingField,
               absl::StrCat(field, " is required (ids start at 1)"),
               {{"field", std::string(field)}});
}

absl::StatusOr<uint32_t> ProtFromProto(uint32_t bits, uint32_t if_zero, absl::string_view field) {
  constexpr uint32_t kKnownBits = kProtRead | kProtWrite;
  if (bits == 0) return if_zero;
  if ((bits & ~kKnownBits) != 0) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidProt,
                 absl::StrCat(field, ": unknown bits 0x", absl::Hex(bits & ~kKnownBits),
                              " (only PROT_READ=1 and PROT_WRITE=2)"),
                 {{"field", std::string(field)}, {"value", absl::StrCat(bits)}});
  }
  return bits;
}

absl::StatusOr<ProbeRequest> ProbeRequestFromProto(const iommu::v1::ProbeDeviceRequest& request) {
  RETURN_IF_ERROR(RequireField(request.unit(), "unit"));
  RETURN_IF_ERROR(RequireField(request.device(), "device"));
  ProbeRequest probe;
  ASSIGN_OR_RETURN(probe.default_domain_type,
                   DomainTypeFromProto(request.default_domain_type(), "default_domain_type"));
  probe.unit = request.unit();
  probe.device = request.device();
  probe.rid = request.rid();
  probe.alias_rids.assign(request.alias_rids().begin(), request.alias_rids().end());
  return probe;
}

absl::StatusOr<ProbeRequest> ProbeRequestFromTopology(const iommu::v1::Topology::Device& device) {
  RETURN_IF_ERROR(RequireField(device.unit(), "unit"));
  RETURN_IF_ERROR(RequireField(device.name(), "name"));
  ProbeRequest probe;
  ASSIGN_OR_RETURN(probe.default_domain_type,
                   DomainTypeFromProto(device.default_domain_type(), "default_domain_type"));
  probe.unit = device.unit();
  probe.device = device.name();
  probe.rid = device.rid();
  probe.alias_rids.assign(device.alias_rids().begin(), device.alias_rids().end());
  return probe;
}

absl::StatusOr<UnitCaps> UnitCapsFromProto(const iommu::v1::Topology::UnitCaps& proto) {
  UnitCaps caps;
  if (proto.pgsize_bitmap() != 0) caps.pgsize_bitmap = proto.pgsize_bitmap();
  if (proto.iova_bits() != 0) caps.iova_bits = proto.iova_bits();
  if (proto.max_rids() != 0) caps.max_rids = proto.max_rids();
  if (!proto.domain_types().empty()) {
    caps.domain_types.clear();
    for (int value : proto.domain_types()) {
      ASSIGN_OR_RETURN(std::optional<DomainType> type, DomainTypeFromProto(value, "domain_types"));
      if (!type.has_value()) {
        return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidEnumValue,
                     "domain_types: DOMAIN_TYPE_UNSPECIFIED is not a domain type",
                     {{"field", "domain_types"}, {"value", "0"}});
      }
      caps.domain_types.push_back(*type);
    }
  }
  if (!proto.reserved_regions().empty()) {
    caps.reserved_regions.clear();
    for (const iommu::v1::IovaRange& region : proto.reserved_regions()) {
      caps.reserved_regions.push_back({region.start(), region.size()});
    }
  }
  return caps;
}

}  // namespace iommud
