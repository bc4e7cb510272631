// Registry: domains, attachment and mappings, docs/semantics.md "Attach / detach" and
// "Domains and mappings".
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/fault_injector.h"
#include "core/group_lock.h"
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

// AttachGroup once the group is locked and found live (AttachDevice shares it).
absl::StatusOr<GroupInfo> AttachLocked(Registry::State& state, GroupState& group,
                                       const std::shared_ptr<DomainState>& domain,
                                       absl::string_view owner)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  ErrorMetadata metadata = {{"group_id", absl::StrCat(group.id)},
                            {"domain_id", absl::StrCat(domain->id)}};
  if (group.owner.empty() || group.owner != owner) {
    metadata["owner"] = std::string(owner);
    return Error(absl::StatusCode::kPermissionDenied, reason::kNotOwner,
                 group.owner.empty()
                     ? absl::StrCat("group ", group.id, " is not owned: claim it first")
                     : absl::StrCat("group ", group.id, " is owned by another client"),
                 metadata);
  }
  RETURN_IF_ERROR(RequireNotHandedOver(group, "attached to a domain of iommud"));
  if (domain->unit != group.unit || domain->core_owned) {
    metadata["unit"] = group.unit->name;
    metadata["domain_unit"] = domain->unit->name;
    return Error(absl::StatusCode::kInvalidArgument, reason::kDomainIncompatible,
                 domain->core_owned
                     ? absl::StrCat("domain ", domain->id, " is core-owned")
                     : absl::StrCat("domain ", domain->id, " is on unit '", domain->unit->name,
                                    "', group ", group.id, " on '", group.unit->name, "'"),
                 metadata);
  }
  RETURN_IF_ERROR(RequireDomainOwner(*domain, owner));
  if (group.domain == domain) return Registry::State::SnapshotGroup(group);  // already: no-op
  if (group.domain != group.default_domain && group.domain != group.blocking_domain) {
    metadata["current_domain_id"] = absl::StrCat(group.domain->id);
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupBusy,
                 absl::StrCat("group ", group.id, " is attached to domain ", group.domain->id,
                              ": detach it first"),
                 metadata);
  }
  const GroupUndo undo = Registry::State::SaveGroup(group);
  RETURN_IF_ERROR(state.SwitchGroupDomain(group, domain));
  RETURN_IF_ERROR(state.CommitGroup(group, undo));
  RegistryEvent event;
  event.kind = RegistryEvent::Kind::kAttached;
  event.unit = group.unit->name;
  event.group = group.id;
  event.domain = domain->id;
  event.owner = std::string(owner);
  state.Emit(event);
  return Registry::State::SnapshotGroup(group);
}

}  // namespace

absl::StatusOr<DomainInfo> Registry::AllocDomain(absl::string_view unit_name, DomainType type,
                                                 absl::string_view owner) {
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
                   state_->CreateDomain(unit, type, owner, /*core_owned=*/false));
  StoreBatch batch;
  batch.put_domains.push_back(State::DomainRecordOf(*domain));
  if (absl::Status committed = state_->Commit(std::move(batch), domain->id); !committed.ok()) {
    (void)state_->DestroyDomain(domain);
    return committed;
  }
  return State::SnapshotDomain(*domain);
}

absl::StatusOr<DomainInfo> Registry::FreeDomain(DomainId id, absl::string_view owner) {
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> domain, state_->FindDomain(id));
  if (domain->core_owned) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kCoreDomain,
                 absl::StrCat("domain ", id, " is a default, blocking or release domain"),
                 DomainMetadata(*domain));
  }
  RETURN_IF_ERROR(RequireDomainOwner(*domain, owner));
  DomainInfo info = State::SnapshotDomain(*domain);
  state_->SyncPoint(kSyncFreeDomainChecked);
  RETURN_IF_ERROR(state_->DestroyDomain(domain, /*durable=*/true));
  return info;
}

absl::StatusOr<GroupInfo> Registry::AttachDevice(absl::string_view name, DomainId domain_id,
                                                 absl::string_view owner) {
  ASSIGN_OR_RETURN(std::shared_ptr<DeviceState> device, state_->FindDevice(name));
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> domain, state_->FindDomain(domain_id));
  GroupState& group = *device->group;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  ScopedFaultScope fault_scope(group.id, device->name);
  RETURN_IF_ERROR(State::LiveDevice(group, *device));
  if (group.devices.size() != 1) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupHasMultipleDevices,
                 absl::StrCat("group ", group.id, " of '", name, "' has ", group.devices.size(),
                              " devices: attach the group"),
                 {{"device", device->name}, {"group_id", absl::StrCat(group.id)}});
  }
  return AttachLocked(*state_, group, domain, owner);
}

absl::StatusOr<GroupInfo> Registry::AttachGroup(GroupId id, DomainId domain_id,
                                                absl::string_view owner) {
  ASSIGN_OR_RETURN(std::shared_ptr<GroupState> group_ptr, state_->FindGroup(id));
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> domain, state_->FindDomain(domain_id));
  GroupState& group = *group_ptr;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  ScopedFaultScope fault_scope(group.id, "");
  RETURN_IF_ERROR(State::LiveGroup(group));
  return AttachLocked(*state_, group, domain, owner);
}

absl::StatusOr<GroupInfo> Registry::DetachGroup(GroupId id, DomainId domain_id,
                                                absl::string_view owner) {
  ASSIGN_OR_RETURN(std::shared_ptr<GroupState> group_ptr, state_->FindGroup(id));
  GroupState& group = *group_ptr;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  ScopedFaultScope fault_scope(group.id, "");
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
  RETURN_IF_ERROR(state_->SwitchGroupDomain(group, group.blocking_domain));
  RETURN_IF_ERROR(state_->CommitGroup(group, undo));
  RegistryEvent event;
  event.kind = RegistryEvent::Kind::kDetached;
  event.unit = group.unit->name;
  event.group = id;
  event.domain = domain_id;
  event.owner = std::string(owner);
  state_->Emit(event);
  return State::SnapshotGroup(group);
}

absl::StatusOr<Mapping> Registry::Map(DomainId id, uint64_t iova, uint64_t paddr, uint64_t size,
                                      uint32_t prot, absl::string_view owner) {
  if (OverlapsRegionSpace(paddr, size)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kPaddrInRegionSpace,
                 absl::StrCat("[", Hex(paddr), ", +", Hex(size),
                              ") overlaps the region address space: map a memory region"),
                 {{"domain_id", absl::StrCat(id)},
                  {"paddr", Hex(paddr)},
                  {"size", Hex(size)},
                  {"region_space_base", Hex(kRegionSpaceBase)},
                  {"region_space_end", Hex(kRegionSpaceEnd)}});
  }
  return MapPaddr(id, iova, paddr, size, prot, owner);
}

absl::StatusOr<Mapping> Registry::MapPaddr(DomainId id, uint64_t iova, uint64_t paddr,
                                           uint64_t size, uint32_t prot,
                                           absl::string_view owner) {
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> domain, state_->FindDomain(id));
  RETURN_IF_ERROR(RequirePaging(*domain));
  RETURN_IF_ERROR(RequireDomainOwner(*domain, owner));
  if (prot == 0 || (prot & ~uint32_t{kProtRead | kProtWrite}) != 0) {
    ErrorMetadata metadata = DomainMetadata(*domain);
    metadata["prot"] = absl::StrCat(prot);
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidProt,
                 "prot must be a non-empty set of READ|WRITE", metadata);
  }
  RETURN_IF_ERROR(CheckRange(*domain, iova, size, &paddr));
  const IovaRange range{iova, size};
  for (const IovaRange& reserved : domain->unit->caps.reserved_regions) {
    if (!range.Overlaps(reserved.start, reserved.size)) continue;
    ErrorMetadata metadata = DomainMetadata(*domain);
    metadata["iova"] = Hex(iova);
    metadata["size"] = Hex(size);
    metadata["reserved_start"] = Hex(reserved.start);
    metadata["reserved_size"] = Hex(reserved.size);
    return Error(absl::StatusCode::kInvalidArgument, reason::kReservedRegion,
                 absl::StrCat("[", Hex(iova), ", +", Hex(size), ") overlaps the reserved region [",
                              Hex(reserved.start), ", +", Hex(reserved.size), ")"),
                 metadata);
  }
  const Mapping mapping{iova, paddr, size, prot};
  {
    MutexLock lock(&domain->mu);
    if (domain->freed) return state_->FindDomain(id).status();
    if (std::optional<Mapping> existing = domain->mappings.FindOverlap(iova, size)) {
      ErrorMetadata metadata = DomainMetadata(*domain);
      metadata["iova"] = Hex(iova);
      metadata["size"] = Hex(size);
      metadata["existing_iova"] = Hex(existing->iova);
      metadata["existing_size"] = Hex(existing->size);
      return Error(absl::StatusCode::kAlreadyExists, reason::kMappingExists,
                   absl::StrCat("[", Hex(iova), ", +", Hex(size), ") overlaps the mapping [",
                                Hex(existing->iova), ", +", Hex(existing->size), ")"),
                   metadata);
    }
    absl::Status mapped = backend()->Map(id, iova, paddr, size, prot);
    if (!mapped.ok()) {
      return BackendError(mapped, "map",
                          {{"domain_id", absl::StrCat(id)}, {"iova", Hex(iova)},
                           {"size", Hex(size)}});
    }
    StoreBatch batch;
    batch.put_mappings.push_back({id, mapping});
    if (absl::Status committed = state_->Commit(std::move(batch)); !committed.ok()) {
      (void)TwiceIfNeeded([&] { return backend()->Unmap(id, iova, size).status(); });
      (void)TwiceIfNeeded([&] { return backend()->InvalidateIotlb(id, iova, size); });
      return committed;
    }
    domain->mappings.Insert(mapping);
  }
  RegistryEvent event;
  event.kind = RegistryEvent::Kind::kMapped;
  event.unit = domain->unit->name;
  event.domain = id;
  event.owner = std::string(owner);
  event.iova = iova;
  event.size = size;
  state_->Emit(event);
  return mapping;
}

absl::StatusOr<uint64_t> Registry::Unmap(DomainId id, uint64_t iova, uint64_t size,
                                         absl::string_view owner) {
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> domain, state_->FindDomain(id));
  RETURN_IF_ERROR(RequirePaging(*domain));
  RETURN_IF_ERROR(RequireDomainOwner(*domain, owner));
  RETURN_IF_ERROR(CheckRange(*domain, iova, size, nullptr));
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
          return backend()->Map(id, covered[j].iova, covered[j].paddr, covered[j].size,
                                covered[j].prot);
        });
      }
      (void)TwiceIfNeeded([&] { return backend()->InvalidateIotlb(id, iova, size); });
    };
    StoreBatch batch;
    for (size_t i = 0; i < covered.size(); ++i) {
      absl::StatusOr<uint64_t> bytes = backend()->Unmap(id, covered[i].iova, covered[i].size);
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
      if (absl::Status committed = state_->Commit(std::move(batch), unmapped); !committed.ok()) {
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
      absl::Status invalidated = backend()->InvalidateIotlb(id, iova, size);
      if (!invalidated.ok()) {
        (void)TwiceIfNeeded([&] { return backend()->InvalidateIotlb(id, 0, 0); });
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
