// Registry: domains, attachment and mappings, docs/semantics.md "Attach / detach" and
// "Domains and mappings".
#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/fault_injector.h"
#include "core/group_lock.h"
#include "core/iova_ranges.h"
#include "core/memory_regions.h"
#include "core/registry.h"
#include "core/registry_state.h"
#include "core/status_macros.h"
#include "core/sync.h"

namespace iommud {

namespace {

std::string Hex(uint64_t value) { return absl::StrCat("0x", absl::Hex(value)); }

ErrorMetadata DomainMetadata(const DomainState& domain) {
  return {{"domain_id", absl::StrCat(domain.id)}, {"unit", domain.unit->name}};
}

// Users allocate UNMANAGED, IDENTITY and BLOCKED domains; DMA types are the host's.
bool IsUserDomainType(DomainType type) {
  return type == DomainType::kUnmanaged || type == DomainType::kIdentity ||
         type == DomainType::kBlocked;
}

// Who may change a domain's mappings: its owner; for a core (host DMA API) domain, the host only
// (empty owner).
absl::Status RequireDomainOwner(const DomainState& domain, absl::string_view owner) {
  if (domain.owner == owner) return absl::OkStatus();
  ErrorMetadata metadata = DomainMetadata(domain);
  metadata["owner"] = std::string(owner);
  return Error(absl::StatusCode::kPermissionDenied, reason::kNotOwner,
               domain.core_owned
                   ? absl::StrCat("domain ", domain.id, " belongs to the host's DMA API")
                   : absl::StrCat("domain ", domain.id, " is owned by another client"),
               metadata);
}

absl::Status RequirePaging(const DomainState& domain) {
  if (IsPaging(domain.type)) return absl::OkStatus();
  ErrorMetadata metadata = DomainMetadata(domain);
  metadata["domain_type"] = std::string(DomainTypeName(domain.type));
  return Error(absl::StatusCode::kFailedPrecondition, reason::kDomainNotPaging,
               absl::StrCat("domain ", domain.id, " is ", DomainTypeName(domain.type),
                            ": it has no page table"),
               metadata);
}

// The checks Map and Unmap share: size, alignment, aperture.
absl::Status CheckRange(const DomainState& domain, uint64_t iova, uint64_t size,
                        const uint64_t* paddr) {
  const UnitCaps& caps = domain.unit->caps;
  ErrorMetadata metadata = DomainMetadata(domain);
  metadata["iova"] = Hex(iova);
  metadata["size"] = Hex(size);
  if (size == 0) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidSize, "size must not be 0",
                 metadata);
  }
  const uint64_t page = caps.min_page_size();
  metadata["min_page_size"] = Hex(page);
  if (iova % page != 0 || size % page != 0 || (paddr != nullptr && *paddr % page != 0)) {
    if (paddr != nullptr) metadata["paddr"] = Hex(*paddr);
    return Error(absl::StatusCode::kInvalidArgument, reason::kUnaligned,
                 absl::StrCat("iova, paddr and size must be multiples of ", Hex(page)), metadata);
  }
  const uint64_t aperture_end = caps.aperture_end();
  if (iova >= aperture_end || size > aperture_end - iova) {
    metadata["aperture_end"] = Hex(aperture_end);
    return Error(absl::StatusCode::kOutOfRange, reason::kOutOfAperture,
                 absl::StrCat("[", Hex(iova), ", +", Hex(size), ") is outside the aperture [0, ",
                              Hex(aperture_end), ")"),
                 metadata);
  }
  if (paddr != nullptr && *paddr + size < *paddr) {
    metadata["paddr"] = Hex(*paddr);
    return Error(absl::StatusCode::kOutOfRange, reason::kPaddrOverflow,
                 "paddr + size overflows 64 bits", metadata);
  }
  return absl::OkStatus();
}

// NOT_OWNER unless `owner` owns the group.
absl::Status RequireGroupOwner(const GroupState& group, absl::string_view owner,
                               ErrorMetadata metadata) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  if (!group.owner.empty() && group.owner == owner) return absl::OkStatus();
  metadata["owner"] = std::string(owner);
  return Error(absl::StatusCode::kPermissionDenied, reason::kNotOwner,
               group.owner.empty()
                   ? absl::StrCat("group ", group.id, " is not owned: claim it first")
                   : absl::StrCat("group ", group.id, " is owned by another client"),
               metadata);
}

// What AttachGroup and ReplaceDomain ask of the domain a group goes to: a user domain of the
// group's unit (DOMAIN_INCOMPATIBLE) that `owner` owns (NOT_OWNER).
absl::Status RequireAttachable(const GroupState& group, const DomainState& domain,
                               absl::string_view owner, ErrorMetadata metadata)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  if (domain.unit != group.unit || domain.core_owned) {
    metadata["unit"] = group.unit->name;
    metadata["domain_unit"] = domain.unit->name;
    return Error(absl::StatusCode::kInvalidArgument, reason::kDomainIncompatible,
                 domain.core_owned
                     ? absl::StrCat("domain ", domain.id, " is core-owned")
                     : absl::StrCat("domain ", domain.id, " is on unit '", domain.unit->name,
                                    "', group ", group.id, " on '", group.unit->name, "'"),
                 metadata);
  }
  return RequireDomainOwner(domain, owner);
}

void EmitAttachEvent(const Registry::State& state, RegistryEvent::Kind kind,
                     const GroupState& group, DomainId domain, absl::string_view owner,
                     absl::string_view device, std::string detail) {
  RegistryEvent event;
  event.kind = kind;
  event.unit = group.unit->name;
  event.group = group.id;
  event.domain = domain;
  event.device = std::string(device);
  event.owner = std::string(owner);
  event.detail = std::move(detail);
  state.Emit(event);
}

// AttachGroup once the group is locked and found live: every device of the group is attached.
absl::StatusOr<GroupInfo> AttachLocked(Registry::State& state, CallContext& call, GroupState& group,
                                       const std::shared_ptr<DomainState>& domain,
                                       absl::string_view owner)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  ErrorMetadata metadata = {{"group_id", absl::StrCat(group.id)},
                            {"domain_id", absl::StrCat(domain->id)}};
  RETURN_IF_ERROR(RequireGroupOwner(group, owner, metadata));
  RETURN_IF_ERROR(RequireNotHandedOver(group, "attached to a domain of iommud"));
  RETURN_IF_ERROR(RequireAttachable(group, *domain, owner, metadata));
  std::set<std::string> all_devices;
  for (const auto& device : group.devices) all_devices.insert(device->name);
  const GroupUndo undo = Registry::State::SaveGroup(group);
  if (group.domain == domain) {
    // Already there: nothing changes, except that devices AttachDevice had not attached yet now are.
    if (group.attached_devices == all_devices) return Registry::State::SnapshotGroup(group);
    group.attached_devices = std::move(all_devices);
    RETURN_IF_ERROR(state.CommitGroup(call, group, undo));
    EmitAttachEvent(state, RegistryEvent::Kind::kAttached, group, domain->id, owner, "",
                    "every device of the group attached");
    return Registry::State::SnapshotGroup(group);
  }
  if (group.domain != group.default_domain && group.domain != group.blocking_domain) {
    metadata["current_domain_id"] = absl::StrCat(group.domain->id);
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupBusy,
                 absl::StrCat("group ", group.id, " is attached to domain ", group.domain->id,
                              ": detach it first"),
                 metadata);
  }
  RETURN_IF_ERROR(state.SwitchGroupDomain(call, group, domain));
  group.attached_devices = std::move(all_devices);
  RETURN_IF_ERROR(state.CommitGroup(call, group, undo));
  EmitAttachEvent(state, RegistryEvent::Kind::kAttached, group, domain->id, owner, "", "");
  return Registry::State::SnapshotGroup(group);
}

}  // namespace

absl::StatusOr<DomainInfo> Registry::AllocDomain(absl::string_view unit_name, DomainType type,
                                                 absl::string_view owner, CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  ASSIGN_OR_RETURN(std::shared_ptr<UnitState> unit, state_->FindUnit(unit_name));
  ErrorMetadata metadata = {{"unit", unit->name},
                            {"domain_type", std::string(DomainTypeName(type))}};
  if (owner.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kMissingOwner,
                 "an owner cookie is required to allocate a domain", metadata);
  }
  if (!IsUserDomainType(type)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kDomainTypeNotAllowed,
                 absl::StrCat(DomainTypeName(type),
                              " domains belong to the host's DMA API; allocate UNMANAGED, "
                              "IDENTITY or BLOCKED"),
                 metadata);
  }
  if (!unit->caps.Supports(type)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kDomainTypeUnsupported,
                 absl::StrCat("unit '", unit->name, "' has no ", DomainTypeName(type), " domains"),
                 metadata);
  }
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> domain,
                   state_->CreateDomain(call, unit, type, owner, /*core_owned=*/false));
  StoreBatch batch;
  batch.put_domains.push_back(State::DomainRecordOf(*domain));
  if (absl::Status committed = state_->Commit(call, std::move(batch), domain->id);
      !committed.ok()) {
    (void)state_->DestroyDomain(call, domain);
    return committed;
  }
  return State::SnapshotDomain(*domain);
}

absl::StatusOr<DomainInfo> Registry::FreeDomain(DomainId id, absl::string_view owner,
                                                CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> domain, state_->FindDomain(id));
  if (domain->core_owned) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kCoreDomain,
                 absl::StrCat("domain ", id, " is a default, blocking or release domain"),
                 DomainMetadata(*domain));
  }
  RETURN_IF_ERROR(RequireDomainOwner(*domain, owner));
  DomainInfo info = State::SnapshotDomain(*domain);
  state_->SyncPoint(kSyncFreeDomainChecked);
  RETURN_IF_ERROR(state_->DestroyDomain(call, domain, /*durable=*/true));
  return info;
}

// iommufd's per-device attach (drivers/iommu/iommufd/device.c, iommufd_hw_pagetable_attach): the
// first device attaches the whole group (iommu_attach_group), later ones to the same domain only
// join the group's device list; another domain is refused (-EINVAL there).
absl::StatusOr<GroupInfo> Registry::AttachDevice(absl::string_view name, DomainId domain_id,
                                                 absl::string_view owner, CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  ASSIGN_OR_RETURN(std::shared_ptr<DeviceState> device, state_->FindDevice(name));
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> domain, state_->FindDomain(domain_id));
  GroupState& group = *device->group;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  FaultScopeGuard fault_scope(call, group.id, device->name);
  RETURN_IF_ERROR(State::LiveDevice(group, *device));
  ErrorMetadata metadata = {{"device", device->name},
                            {"group_id", absl::StrCat(group.id)},
                            {"domain_id", absl::StrCat(domain_id)}};
  RETURN_IF_ERROR(RequireGroupOwner(group, owner, metadata));
  RETURN_IF_ERROR(RequireNotHandedOver(group, "attached to a domain of iommud"));
  RETURN_IF_ERROR(RequireAttachable(group, *domain, owner, metadata));
  const GroupUndo undo = State::SaveGroup(group);
  if (group.domain == domain) {
    // The group is attached there already: the device joins (a device attached twice: no-op).
    if (!group.attached_devices.insert(device->name).second) return State::SnapshotGroup(group);
    RETURN_IF_ERROR(state_->CommitGroup(call, group, undo));
    EmitAttachEvent(*state_, RegistryEvent::Kind::kAttached, group, domain_id, owner,
                    device->name, "device joined the group's attachment");
    return State::SnapshotGroup(group);
  }
  if (!group.domain->core_owned) {
    metadata["current_domain_id"] = absl::StrCat(group.domain->id);
    metadata["attached_devices"] = absl::StrJoin(group.attached_devices, ",");
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupAttachedElsewhere,
                 absl::StrCat("group ", group.id, " of '", device->name,
                              "' is attached to domain ", group.domain->id, " (devices ",
                              absl::StrJoin(group.attached_devices, ", "),
                              "): a group's devices share one domain"),
                 metadata);
  }
  RETURN_IF_ERROR(state_->SwitchGroupDomain(call, group, domain));
  group.attached_devices = {device->name};
  RETURN_IF_ERROR(state_->CommitGroup(call, group, undo));
  EmitAttachEvent(*state_, RegistryEvent::Kind::kAttached, group, domain_id, owner, device->name,
                  group.devices.size() > 1 ? "first device: group attached" : "");
  return State::SnapshotGroup(group);
}

// iommufd_hw_pagetable_detach: the device leaves the group's device list; the last one detaches
// the group (iommu_detach_group, which returns an owned group to its blocking domain).
absl::StatusOr<GroupInfo> Registry::DetachDevice(absl::string_view name, DomainId domain_id,
                                                 absl::string_view owner, CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  ASSIGN_OR_RETURN(std::shared_ptr<DeviceState> device, state_->FindDevice(name));
  GroupState& group = *device->group;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  FaultScopeGuard fault_scope(call, group.id, device->name);
  RETURN_IF_ERROR(State::LiveDevice(group, *device));
  ErrorMetadata metadata = {{"device", device->name},
                            {"group_id", absl::StrCat(group.id)},
                            {"domain_id", absl::StrCat(domain_id)}};
  RETURN_IF_ERROR(RequireGroupOwner(group, owner, metadata));
  if (group.domain->id != domain_id || group.domain->core_owned) {
    metadata["current_domain_id"] = absl::StrCat(group.domain->id);
    return Error(absl::StatusCode::kFailedPrecondition, reason::kDomainNotAttached,
                 absl::StrCat("group ", group.id, " of '", device->name,
                              "' is not attached to domain ", domain_id),
                 metadata);
  }
  if (group.attached_devices.count(device->name) == 0) {
    metadata["attached_devices"] = absl::StrJoin(group.attached_devices, ",");
    return Error(absl::StatusCode::kFailedPrecondition, reason::kDeviceNotAttached,
                 absl::StrCat("'", device->name, "' is not attached to domain ", domain_id,
                              " (its group is, through ",
                              absl::StrJoin(group.attached_devices, ", "), ")"),
                 metadata);
  }
  const GroupUndo undo = State::SaveGroup(group);
  group.attached_devices.erase(device->name);
  const bool last = group.attached_devices.empty();
  if (last) {
    if (absl::Status detached = state_->SwitchGroupDomain(call, group, group.blocking_domain);
        !detached.ok()) {
      group.attached_devices = undo.attached_devices;
      return detached;
    }
  }
  RETURN_IF_ERROR(state_->CommitGroup(call, group, undo));
  EmitAttachEvent(*state_, RegistryEvent::Kind::kDetached, group, domain_id, owner, device->name,
                  last ? "last device: group detached" : "device left; the group stays attached");
  return State::SnapshotGroup(group);
}

absl::StatusOr<GroupInfo> Registry::AttachGroup(GroupId id, DomainId domain_id,
                                                absl::string_view owner, CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  ASSIGN_OR_RETURN(std::shared_ptr<GroupState> group_ptr, state_->FindGroup(id));
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> domain, state_->FindDomain(domain_id));
  GroupState& group = *group_ptr;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  FaultScopeGuard fault_scope(call, group.id, "");
  RETURN_IF_ERROR(State::LiveGroup(group));
  return AttachLocked(*state_, call, group, domain, owner);
}

absl::StatusOr<GroupInfo> Registry::DetachGroup(GroupId id, DomainId domain_id,
                                                absl::string_view owner, CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  ASSIGN_OR_RETURN(std::shared_ptr<GroupState> group_ptr, state_->FindGroup(id));
  GroupState& group = *group_ptr;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  FaultScopeGuard fault_scope(call, group.id, "");
  RETURN_IF_ERROR(State::LiveGroup(group));
  ErrorMetadata metadata = {{"group_id", absl::StrCat(id)}, {"domain_id", absl::StrCat(domain_id)}};
  if (group.owner.empty() || group.owner != owner) {
    metadata["owner"] = std::string(owner);
    return Error(absl::StatusCode::kPermissionDenied, reason::kNotOwner,
                 absl::StrCat("group ", id, " is not owned by this client"), metadata);
  }
  if (group.domain->id != domain_id || group.domain->core_owned) {
    metadata["current_domain_id"] = absl::StrCat(group.domain->id);
    return Error(absl::StatusCode::kFailedPrecondition, reason::kDomainNotAttached,
                 absl::StrCat("group ", id, " is not attached to domain ", domain_id), metadata);
  }
  const GroupUndo undo = State::SaveGroup(group);
  RETURN_IF_ERROR(state_->SwitchGroupDomain(call, group, group.blocking_domain));
  RETURN_IF_ERROR(state_->CommitGroup(call, group, undo));
  RegistryEvent event;
  event.kind = RegistryEvent::Kind::kDetached;
  event.unit = group.unit->name;
  event.group = id;
  event.domain = domain_id;
  event.owner = std::string(owner);
  state_->Emit(event);
  return State::SnapshotGroup(group);
}

absl::StatusOr<GroupInfo> Registry::ReplaceDomain(GroupId id, DomainId from_id, DomainId to_id,
                                                  absl::string_view owner, CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  ASSIGN_OR_RETURN(std::shared_ptr<GroupState> group_ptr, state_->FindGroup(id));
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> to, state_->FindDomain(to_id));
  GroupState& group = *group_ptr;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  FaultScopeGuard fault_scope(call, group.id, "");
  RETURN_IF_ERROR(State::LiveGroup(group));
  ErrorMetadata metadata = {{"group_id", absl::StrCat(id)},
                            {"from_domain_id", absl::StrCat(from_id)},
                            {"domain_id", absl::StrCat(to_id)}};
  RETURN_IF_ERROR(RequireGroupOwner(group, owner, metadata));
  RETURN_IF_ERROR(RequireNotHandedOver(group, "attached to a domain of iommud"));
  // As iommufd's replace: only an attached group is replaced (the device must already be on a
  // paging domain of the user; a group on its default or blocking domain is attached instead).
  if (group.domain->id != from_id || group.domain->core_owned) {
    metadata["current_domain_id"] = absl::StrCat(group.domain->id);
    return Error(absl::StatusCode::kFailedPrecondition, reason::kDomainNotAttached,
                 group.domain->core_owned
                     ? absl::StrCat("group ", id, " is on its ",
                                    group.domain == group.default_domain ? "default" : "blocking",
                                    " domain: attach it instead of replacing")
                     : absl::StrCat("group ", id, " is attached to domain ", group.domain->id,
                                    ", not ", from_id),
                 metadata);
  }
  RETURN_IF_ERROR(RequireAttachable(group, *to, owner, metadata));
  if (group.domain == to) return State::SnapshotGroup(group);  // kernel: already there, 0
  const std::vector<Rid> rids = state_->GroupRids(group);
  if (!rids.empty()) {
    RETURN_IF_ERROR(options_.backend->CanReplaceDomain(group.unit->name, rids.front()));
  }
  const GroupUndo undo = State::SaveGroup(group);
  // SwitchGroupDomain points each RID at `to` in turn (no RID passes through a blocked or default
  // domain) and, if the backend refuses one, points the RIDs already moved back at `from`.
  RETURN_IF_ERROR(state_->SwitchGroupDomain(call, group, to));
  RETURN_IF_ERROR(state_->CommitGroup(call, group, undo));
  RegistryEvent event;
  event.kind = RegistryEvent::Kind::kAttached;
  event.unit = group.unit->name;
  event.group = id;
  event.domain = to_id;
  event.owner = std::string(owner);
  event.detail = absl::StrCat("replaced domain ", from_id);
  state_->Emit(event);
  return State::SnapshotGroup(group);
}

absl::StatusOr<std::vector<IovaRange>> Registry::IovaRanges(DomainId id) const {
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> domain, state_->FindDomain(id));
  RETURN_IF_ERROR(RequirePaging(*domain));
  const UnitCaps& caps = domain->unit->caps;
  std::vector<IovaRange> reserved = caps.reserved_regions;
  {
    // Every attached device's regions, of every type: for a user domain direct-relaxable ones too
    // (never identity-mapped there), for a default domain the direct ones it maps 1:1.
    MutexLock lock(&domain->mu);
    for (GroupId group : domain->attached_groups) {
      auto it = domain->device_reserved.find(group);
      if (it == domain->device_reserved.end()) continue;
      for (const ReservedRegion& region : it->second) {
        reserved.push_back({region.start, region.length});
      }
    }
  }
  std::vector<IovaRange> ranges = UsableIovaRanges(caps.aperture_end(), reserved);
  ASSIGN_OR_RETURN(std::optional<std::vector<IovaRange>> kernel,
                   options_.backend->KernelIovaRanges(id));
  if (kernel.has_value()) ranges = IntersectIovaRanges(ranges, *kernel);
  return ranges;
}

namespace {

// PADDR_IN_REGION_SPACE for a raw paddr range in the region address space.
absl::Status PaddrInRegionSpaceError(DomainId id, uint64_t paddr, uint64_t size) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kPaddrInRegionSpace,
               absl::StrCat("[", Hex(paddr), ", +", Hex(size),
                            ") overlaps the region address space: map a memory region"),
               {{"domain_id", absl::StrCat(id)},
                {"paddr", Hex(paddr)},
                {"size", Hex(size)},
                {"region_space_base", Hex(kRegionSpaceBase)},
                {"region_space_end", Hex(kRegionSpaceEnd)}});
}

// `status` with the index of the batch entry it is about (metadata "entry").
absl::Status WithEntryIndex(const absl::Status& status, size_t entry) {
  if (status.ok()) return status;
  ErrorMetadata metadata = GetErrorMetadata(status);
  metadata["entry"] = absl::StrCat(entry);
  return Error(status.code(), ErrorReason(status),
               absl::StrCat("entry ", entry, ": ", status.message()), metadata);
}

// INVALID_ARGUMENT RESERVED_REGION: `mapping` overlaps `reserved`, a `what` ("reserved region",
// "msi region", ...) described further by `extra` metadata and the message's `whose` suffix.
absl::Status ReservedRegionError(const DomainState& domain, const Mapping& mapping,
                                 const IovaRange& reserved, absl::string_view what,
                                 const ErrorMetadata& extra, absl::string_view whose = "") {
  ErrorMetadata metadata = DomainMetadata(domain);
  metadata["iova"] = Hex(mapping.iova);
  metadata["size"] = Hex(mapping.size);
  metadata["reserved_start"] = Hex(reserved.start);
  metadata["reserved_size"] = Hex(reserved.size);
  for (const auto& [key, value] : extra) metadata[key] = value;
  return Error(absl::StatusCode::kInvalidArgument, reason::kReservedRegion,
               absl::StrCat("[", Hex(mapping.iova), ", +", Hex(mapping.size), ") overlaps the ",
                            what, " [", Hex(reserved.start), ", +", Hex(reserved.size), ")",
                            whose),
               metadata);
}

// The checks of one mapping that need no lock: prot, range, the unit's reserved regions.
absl::Status CheckNewMapping(const DomainState& domain, const Mapping& mapping) {
  if (mapping.prot == 0 || (mapping.prot & ~uint32_t{kProtRead | kProtWrite}) != 0) {
    ErrorMetadata metadata = DomainMetadata(domain);
    metadata["prot"] = absl::StrCat(mapping.prot);
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidProt,
                 "prot must be a non-empty set of READ|WRITE", metadata);
  }
  uint64_t paddr = mapping.paddr;
  RETURN_IF_ERROR(CheckRange(domain, mapping.iova, mapping.size, &paddr));
  const IovaRange range{mapping.iova, mapping.size};
  for (const IovaRange& reserved : domain.unit->caps.reserved_regions) {
    if (!range.Overlaps(reserved.start, reserved.size)) continue;
    return ReservedRegionError(domain, mapping, reserved, "reserved region", ErrorMetadata{});
  }
  return absl::OkStatus();
}

// RESERVED_REGION for a mapping over a reserved region of a device of a group attached to
// `domain` (iommufd's iopt_check_iova against the reserved ranges the attached devices added).
absl::Status CheckDeviceReserved(const DomainState& domain, const Mapping& mapping)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(domain.mu) {
  const IovaRange range{mapping.iova, mapping.size};
  for (GroupId group : domain.attached_groups) {
    auto it = domain.device_reserved.find(group);
    if (it == domain.device_reserved.end()) continue;
    for (const ReservedRegion& reserved : it->second) {
      if (!range.Overlaps(reserved.start, reserved.length)) continue;
      return ReservedRegionError(
          domain, mapping, IovaRange{reserved.start, reserved.length},
          absl::StrCat(ReservedRegionTypeName(reserved.type), " region"),
          {{"region_type", std::string(ReservedRegionTypeName(reserved.type))},
           {"group_id", absl::StrCat(group)}},
          absl::StrCat(" of a device of attached group ", group));
    }
  }
  return absl::OkStatus();
}

// MAPPING_EXISTS: `mapping` overlaps `existing`.
absl::Status MappingExistsError(const DomainState& domain, const Mapping& mapping,
                                const Mapping& existing) {
  ErrorMetadata metadata = DomainMetadata(domain);
  metadata["iova"] = Hex(mapping.iova);
  metadata["size"] = Hex(mapping.size);
  metadata["existing_iova"] = Hex(existing.iova);
  metadata["existing_size"] = Hex(existing.size);
  return Error(absl::StatusCode::kAlreadyExists, reason::kMappingExists,
               absl::StrCat("[", Hex(mapping.iova), ", +", Hex(mapping.size),
                            ") overlaps the mapping [", Hex(existing.iova), ", +",
                            Hex(existing.size), ")"),
               metadata);
}

}  // namespace

absl::StatusOr<Mapping> Registry::Map(DomainId id, uint64_t iova, uint64_t paddr, uint64_t size,
                                      uint32_t prot, absl::string_view owner,
                                      CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  if (OverlapsRegionSpace(paddr, size)) return PaddrInRegionSpaceError(id, paddr, size);
  ASSIGN_OR_RETURN(std::vector<Mapping> mapped,
                   MapPaddrs(call, id, {Mapping{iova, paddr, size, prot}}, owner,
                             /*name_entries=*/false));
  return mapped.front();
}

absl::StatusOr<std::vector<Mapping>> Registry::MapPaddrs(CallContext& call, DomainId id,
                                                         absl::Span<const Mapping> mappings,
                                                         absl::string_view owner,
                                                         bool name_entries) {
  auto entry_error = [name_entries](const absl::Status& status, size_t entry) {
    return name_entries ? WithEntryIndex(status, entry) : status;
  };
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> domain, state_->FindDomain(id));
  RETURN_IF_ERROR(RequirePaging(*domain));
  RETURN_IF_ERROR(RequireDomainOwner(*domain, owner));
  for (size_t i = 0; i < mappings.size(); ++i) {
    RETURN_IF_ERROR(entry_error(CheckNewMapping(*domain, mappings[i]), i));
  }
  // The entries must not overlap each other: in IOVA order, each ends before the next starts.
  std::vector<size_t> by_iova(mappings.size());
  for (size_t i = 0; i < by_iova.size(); ++i) by_iova[i] = i;
  std::sort(by_iova.begin(), by_iova.end(),
            [&](size_t a, size_t b) { return mappings[a].iova < mappings[b].iova; });
  for (size_t k = 1; k < by_iova.size(); ++k) {
    const Mapping& before = mappings[by_iova[k - 1]];
    const Mapping& after = mappings[by_iova[k]];
    if (after.iova - before.iova < before.size) {
      const size_t later = std::max(by_iova[k - 1], by_iova[k]);
      const Mapping& earlier = mappings[std::min(by_iova[k - 1], by_iova[k])];
      return entry_error(MappingExistsError(*domain, mappings[later], earlier), later);
    }
  }
  {
    MutexLock lock(&domain->mu);
    if (domain->freed) return state_->FindDomain(id).status();
    for (size_t i = 0; i < mappings.size(); ++i) {
      RETURN_IF_ERROR(entry_error(CheckDeviceReserved(*domain, mappings[i]), i));
      if (std::optional<Mapping> existing =
              domain->mappings.FindOverlap(mappings[i].iova, mappings[i].size)) {
        return entry_error(MappingExistsError(*domain, mappings[i], *existing), i);
      }
    }
    // Takes the first `count` mappings of this call off the backend again.
    auto take_back = [&](size_t count) {
      for (size_t j = 0; j < count; ++j) {
        (void)TwiceIfNeeded([&] {
          return state_->Backend(call).Unmap(id, mappings[j].iova, mappings[j].size).status();
        });
        (void)TwiceIfNeeded([&] {
          return state_->Backend(call).InvalidateIotlb(id, mappings[j].iova, mappings[j].size);
        });
      }
    };
    StoreBatch batch;
    for (size_t i = 0; i < mappings.size(); ++i) {
      const Mapping& mapping = mappings[i];
      absl::Status mapped =
          state_->Backend(call).Map(id, mapping.iova, mapping.paddr, mapping.size, mapping.prot);
      if (!mapped.ok()) {
        take_back(i);
        return entry_error(BackendError(mapped, "map",
                                        {{"domain_id", absl::StrCat(id)},
                                         {"iova", Hex(mapping.iova)},
                                         {"size", Hex(mapping.size)}}),
                           i);
      }
      batch.put_mappings.push_back({id, mapping});
    }
    if (absl::Status committed = state_->Commit(call, std::move(batch)); !committed.ok()) {
      take_back(mappings.size());
      return committed;
    }
    for (const Mapping& mapping : mappings) domain->mappings.Insert(mapping);
  }
  for (const Mapping& mapping : mappings) {
    RegistryEvent event;
    event.kind = RegistryEvent::Kind::kMapped;
    event.unit = domain->unit->name;
    event.domain = id;
    event.owner = std::string(owner);
    event.iova = mapping.iova;
    event.size = mapping.size;
    state_->Emit(event);
  }
  return std::vector<Mapping>(mappings.begin(), mappings.end());
}

absl::StatusOr<std::vector<Mapping>> Registry::MapBatch(DomainId id,
                                                        absl::Span<const MapSpec> entries,
                                                        absl::string_view owner,
                                                        CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  if (entries.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kEmptyBatch,
                 "a MapBatch needs at least one entry", {{"domain_id", absl::StrCat(id)}});
  }
  std::vector<Mapping> mappings;
  mappings.reserve(entries.size());
  // Region bytes are charged before the mappings exist (as MapRegion does) and given back if the
  // call fails.
  auto discharge = [&] {
    for (size_t i = 0; i < mappings.size(); ++i) {
      if (entries[i].region_id != 0) {
        state_->regions->Discharge(mappings[i].paddr, mappings[i].size);
      }
    }
  };
  for (size_t i = 0; i < entries.size(); ++i) {
    const MapSpec& entry = entries[i];
    uint64_t paddr = entry.paddr;
    if (entry.region_id != 0) {
      absl::StatusOr<uint64_t> charged =
          state_->regions->Charge(entry.region_id, entry.region_offset, entry.size, owner,
                                  options_.max_pinned_bytes_per_owner);
      if (!charged.ok()) {
        discharge();
        return WithEntryIndex(charged.status(), i);
      }
      paddr = *charged;
    } else if (OverlapsRegionSpace(paddr, entry.size)) {
      discharge();
      return WithEntryIndex(PaddrInRegionSpaceError(id, paddr, entry.size), i);
    }
    mappings.push_back(Mapping{entry.iova, paddr, entry.size, entry.prot});
  }
  absl::StatusOr<std::vector<Mapping>> mapped =
      MapPaddrs(call, id, mappings, owner, /*name_entries=*/true);
  if (!mapped.ok()) discharge();
  return mapped;
}

absl::StatusOr<uint64_t> Registry::Unmap(DomainId id, uint64_t iova, uint64_t size,
                                         absl::string_view owner, CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> domain, state_->FindDomain(id));
  RETURN_IF_ERROR(RequirePaging(*domain));
  RETURN_IF_ERROR(RequireDomainOwner(*domain, owner));
  // Unmap all (iommufd's iopt_unmap_all): the whole aperture, no alignment check.
  const bool all = iova == 0 && size == kUnmapAll;
  if (all) {
    size = domain->unit->caps.aperture_end();
  } else {
    RETURN_IF_ERROR(CheckRange(*domain, iova, size, nullptr));
  }
  // What the IOTLB invalidation covers: the range, or (size 0) the whole domain.
  const uint64_t flush_size = all ? 0 : size;
  uint64_t unmapped = 0;
  {
    MutexLock lock(&domain->mu);
    if (domain->freed) return state_->FindDomain(id).status();
    bool splits = false;
    const std::vector<Mapping> covered = domain->mappings.Covered(iova, size, &splits);
    if (splits) {
      ErrorMetadata metadata = DomainMetadata(*domain);
      metadata["iova"] = Hex(iova);
      metadata["size"] = Hex(size);
      return Error(absl::StatusCode::kInvalidArgument, reason::kUnmapSplit,
                   absl::StrCat("[", Hex(iova), ", +", Hex(size),
                                ") cuts through a mapping; unmap whole mappings"),
                   metadata);
    }
    // Puts back the first `count` mappings this call removed, so that nothing changed.
    auto put_back = [&](size_t count) {
      for (size_t j = 0; j < count; ++j) {
        (void)TwiceIfNeeded([&] {
          return state_->Backend(call).Map(id, covered[j].iova, covered[j].paddr, covered[j].size,
                                           covered[j].prot);
        });
      }
      (void)TwiceIfNeeded(
          [&] { return state_->Backend(call).InvalidateIotlb(id, iova, flush_size); });
    };
    StoreBatch batch;
    for (size_t i = 0; i < covered.size(); ++i) {
      absl::StatusOr<uint64_t> bytes =
          state_->Backend(call).Unmap(id, covered[i].iova, covered[i].size);
      if (bytes.ok()) {
        batch.delete_mappings.push_back({id, covered[i].iova});
        unmapped += covered[i].size;
        continue;
      }
      put_back(i);
      return BackendError(bytes.status(), "unmap",
                          {{"domain_id", absl::StrCat(id)}, {"iova", Hex(covered[i].iova)},
                           {"size", Hex(covered[i].size)}});
    }
    if (!batch.empty()) {
      if (absl::Status committed = state_->Commit(call, std::move(batch), unmapped);
          !committed.ok()) {
        put_back(covered.size());
        return committed;
      }
    }
    for (const Mapping& mapping : covered) {
      domain->mappings.Erase(mapping.iova);
      state_->regions->Discharge(mapping.paddr, mapping.size);
    }
    // No device may translate an unmapped IOVA once this call returns.
    if (!covered.empty()) {
      absl::Status invalidated = state_->Backend(call).InvalidateIotlb(id, iova, flush_size);
      if (!invalidated.ok()) {
        (void)TwiceIfNeeded([&] { return state_->Backend(call).InvalidateIotlb(id, 0, 0); });
      }
    }
  }
  if (unmapped != 0) {
    RegistryEvent event;
    event.kind = RegistryEvent::Kind::kUnmapped;
    event.unit = domain->unit->name;
    event.domain = id;
    event.owner = std::string(owner);
    event.iova = iova;
    event.size = unmapped;
    state_->Emit(event);
  }
  return unmapped;
}

}  // namespace iommud
