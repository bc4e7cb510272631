// Registry: device probe (group formation) and release (hot-unplug), docs/semantics.md
// "Device lifecycle".
#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

bool IsDefaultDomainType(DomainType type) {
  return type == DomainType::kDma || type == DomainType::kDmaFq || type == DomainType::kIdentity;
}

// Checks a device's reserved regions against its unit (INVALID_RESERVED_REGION) and sorts them.
absl::Status ValidateReservedRegions(absl::string_view device, const UnitState& unit,
                                     std::vector<ReservedRegion>* regions) {
  const uint64_t page = unit.caps.min_page_size();
  for (size_t i = 0; i < regions->size(); ++i) {
    const ReservedRegion& region = (*regions)[i];
    auto invalid = [&](absl::string_view why) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidReservedRegion,
                   absl::StrCat("reserved region ", i, " [0x", absl::Hex(region.start), ", +0x",
                                absl::Hex(region.length), ") of '", device, "': ", why),
                   {{"device", std::string(device)},
                    {"unit", unit.name},
                    {"region", absl::StrCat(i)},
                    {"reserved_start", absl::StrCat("0x", absl::Hex(region.start))},
                    {"reserved_size", absl::StrCat("0x", absl::Hex(region.length))}});
    };
    if (region.length == 0) return invalid("empty");
    if (region.start % page != 0 || region.length % page != 0) {
      return invalid(absl::StrCat("not aligned to the unit's smallest page size 0x",
                                  absl::Hex(page)));
    }
    if (region.start >= unit.caps.aperture_end() ||
        region.length > unit.caps.aperture_end() - region.start) {
      return invalid(absl::StrCat("outside the unit's aperture [0, 0x",
                                  absl::Hex(unit.caps.aperture_end()), ")"));
    }
  }
  std::sort(regions->begin(), regions->end(),
            [](const ReservedRegion& a, const ReservedRegion& b) { return a.start < b.start; });
  return absl::OkStatus();
}

// Waits (releasing group.mu meanwhile) until the group's creator finished setting it up or gave up.
void AwaitSetUp(GroupState& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  while (!group.initialized && !group.dead.load()) {
    WaitWithDeadline(&group.set_up, &group.mu, absl::InfiniteFuture());
  }
}

// Drops the reservations ProbeDevice made for `device` in the maps. map_mu held.
void DropReservations(Registry::State& state, const DeviceState& device)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.map_mu) {
  auto it = state.devices.find(device.name);
  if (it != state.devices.end() && it->second.get() == &device) state.devices.erase(it);
  for (Rid rid : device.all_rids) {
    auto owner = state.rid_owners.find({device.unit->name, rid});
    if (owner == state.rid_owners.end() || owner->second.group != device.group) continue;
    if (--owner->second.users == 0) state.rid_owners.erase(owner);
  }
}

// Sets a new group up with its first device: default and blocking domains, RIDs on the default.
absl::Status SetUpGroup(Registry::State& state, CallContext& call, GroupState& group,
                        const std::shared_ptr<DeviceState>& device, DomainType default_type)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  const std::shared_ptr<UnitState>& unit = group.unit;
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> default_domain,
                   state.CreateDomain(call, unit, default_type, "", /*core_owned=*/true));
  absl::StatusOr<std::shared_ptr<DomainState>> blocking_domain = state.CreateDomain(
      call, unit, Registry::State::BlockingType(unit->caps), "", /*core_owned=*/true);
  if (!blocking_domain.ok()) {
    (void)state.DestroyDomain(call, default_domain);
    return blocking_domain.status();
  }
  group.devices.push_back(device);
  absl::Status attached = state.SwitchGroupDomain(call, group, default_domain);
  if (!attached.ok()) {
    group.devices.clear();
    (void)state.DestroyDomain(call, default_domain);
    (void)state.DestroyDomain(call, *blocking_domain);
    return attached;
  }
  group.default_domain = std::move(default_domain);
  group.blocking_domain = *std::move(blocking_domain);
  group.initialized = true;
  return absl::OkStatus();
}

// Adds `device` to a set-up group: its RIDs the group does not use yet go to the group's domain.
absl::Status JoinGroup(Registry::State& state, CallContext& call, GroupState& group,
                       const std::shared_ptr<DeviceState>& device)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  // A device that needs its direct regions cannot join a group that is off its default domain
  // (the kernel's require_direct in __iommu_device_set_domain), nor one whose user domain maps
  // over one of its reserved regions (iommufd's iopt_table_enforce_dev_resv_regions).
  if (group.domain != group.default_domain) {
    RETURN_IF_ERROR(Registry::State::RequireNoDirect(*device, group.id,
                                                     "probed into a group off its default domain"));
  }
  if (!group.domain->core_owned) {
    MutexLock lock(&group.domain->mu);
    for (const ReservedRegion& region : device->reserved_regions) {
      std::optional<Mapping> existing =
          group.domain->mappings.FindOverlap(region.start, region.length);
      if (!existing.has_value()) continue;
      return Error(absl::StatusCode::kFailedPrecondition, reason::kReservedRegionMapped,
                   absl::StrCat("device '", device->name, "' reserves [0x",
                                absl::Hex(region.start), ", +0x", absl::Hex(region.length),
                                "), which domain ", group.domain->id, " of its group maps"),
                   {{"device", device->name},
                    {"group_id", absl::StrCat(group.id)},
                    {"domain_id", absl::StrCat(group.domain->id)},
                    {"reserved_start", absl::StrCat("0x", absl::Hex(region.start))},
                    {"reserved_size", absl::StrCat("0x", absl::Hex(region.length))},
                    {"existing_iova", absl::StrCat("0x", absl::Hex(existing->iova))},
                    {"existing_size", absl::StrCat("0x", absl::Hex(existing->size))}});
    }
  }
  const std::vector<Rid> in_use = Registry::State::GroupRids(group);
  std::vector<Rid> new_rids;
  for (Rid rid : device->all_rids) {
    if (!std::binary_search(in_use.begin(), in_use.end(), rid)) new_rids.push_back(rid);
  }
  const std::string& unit = group.unit->name;
  for (size_t i = 0; i < new_rids.size(); ++i) {
    if (i > 0) state.SyncPoint(kSyncAttachBetweenRids);
    absl::Status status = state.Backend(call).AttachRid(unit, new_rids[i], group.domain->id);
    if (status.ok()) continue;
    for (size_t j = 0; j < i; ++j) {
      (void)TwiceIfNeeded([&] { return state.Backend(call).ReleaseRid(unit, new_rids[j]); });
    }
    return BackendError(status, "attach_rid",
                        {{"device", device->name},
                         {"group_id", absl::StrCat(group.id)},
                         {"rid", absl::StrCat(new_rids[i])},
                         {"unit", unit}});
  }
  group.devices.push_back(device);
  return absl::OkStatus();
}

// Commits a successful probe of `device` (a new group's domains too). If the store refuses it,
// undoes the probe in the backend and the group (the caller then drops the reservations and, for
// a new group, the group) and returns the error.
absl::Status CommitProbe(Registry::State& state, CallContext& call, GroupState& group,
                         const std::shared_ptr<DeviceState>& device, bool created)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  StoreBatch batch;
  Registry::State::AddGroup(group, &batch);
  if (created) {
    batch.put_domains.push_back(Registry::State::DomainRecordOf(*group.default_domain));
    batch.put_domains.push_back(Registry::State::DomainRecordOf(*group.blocking_domain));
  }
  // Its direct regions, identity-mapped in the group's default domain (kernel:
  // iommu_create_device_direct_mappings at probe), committed with the probe.
  std::vector<Mapping> direct;
  absl::Status committed = state.MapDirectRegions(call, group, *device, &batch, &direct);
  if (committed.ok()) committed = state.Commit(call, std::move(batch));
  if (committed.ok()) {
    Registry::State::RefreshDomainReserved(group);
    return committed;
  }
  state.UnmapDirectRegions(call, group, direct);
  group.devices.erase(std::find(group.devices.begin(), group.devices.end(), device));
  const std::vector<Rid> still_used = Registry::State::GroupRids(group);
  const std::string& unit = group.unit->name;
  for (Rid rid : device->all_rids) {
    if (std::binary_search(still_used.begin(), still_used.end(), rid)) continue;
    (void)TwiceIfNeeded([&] { return state.Backend(call).ReleaseRid(unit, rid); });
  }
  if (created) {
    {
      MutexLock lock(&group.domain->mu);
      group.domain->attached_groups.erase(group.id);
    }
    group.domain = nullptr;
    (void)state.DestroyDomain(call, group.default_domain);
    (void)state.DestroyDomain(call, group.blocking_domain);
    group.default_domain = nullptr;
    group.blocking_domain = nullptr;
  }
  return committed;
}

}  // namespace

absl::StatusOr<DeviceInfo> Registry::ProbeDevice(const ProbeRequest& request,
                                                 CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  if (request.device.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidDeviceName,
                 "a device needs a name");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<UnitState> unit, state_->FindUnit(request.unit));
  std::vector<Rid> rids = request.alias_rids;
  rids.push_back(request.rid);
  std::sort(rids.begin(), rids.end());
  rids.erase(std::unique(rids.begin(), rids.end()), rids.end());
  for (Rid rid : rids) {
    if (rid >= unit->caps.max_rids) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kRidOutOfRange,
                   absl::StrCat("RID ", rid, " is beyond unit '", unit->name, "' max_rids ",
                                unit->caps.max_rids),
                   {{"device", request.device}, {"rid", absl::StrCat(rid)}, {"unit", unit->name}});
    }
  }
  const DomainType type = request.default_domain_type.value_or(options_.default_domain_type);
  if (!IsDefaultDomainType(type)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidDefaultDomainType,
                 absl::StrCat("a default domain is DMA, DMA_FQ or IDENTITY, not ",
                              DomainTypeName(type)),
                 {{"device", request.device}});
  }
  if (!unit->caps.Supports(type)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kDomainTypeUnsupported,
                 absl::StrCat("unit '", unit->name, "' has no ", DomainTypeName(type), " domains"),
                 {{"unit", unit->name}, {"domain_type", std::string(DomainTypeName(type))}});
  }

  std::vector<ReservedRegion> reserved = request.reserved_regions;
  RETURN_IF_ERROR(ValidateReservedRegions(request.device, *unit, &reserved));

  for (;;) {
    auto device = std::make_shared<DeviceState>();
    device->reserved_regions = reserved;
    device->name = request.device;
    device->unit = unit;
    device->rid = request.rid;
    device->alias_rids = request.alias_rids;
    device->all_rids = rids;
    device->probe_seq = state_->next_probe_seq.fetch_add(1);
    bool created = false;
    // 1. Reserve the name and the RIDs, and find (or create, unpublished) the group.
    {
      MapWriterLock lock(&state_->map_mu, state_->observer());
      if (state_->devices.count(request.device) != 0) {
        return Error(absl::StatusCode::kAlreadyExists, reason::kDeviceExists,
                     absl::StrCat("device '", request.device, "' already exists"),
                     {{"device", request.device}});
      }
      std::shared_ptr<GroupState> found;
      for (Rid rid : rids) {
        auto it = state_->rid_owners.find({unit->name, rid});
        if (it == state_->rid_owners.end() || it->second.group->dead.load()) continue;
        if (found != nullptr && found != it->second.group) {
          return Error(absl::StatusCode::kFailedPrecondition, reason::kRidsSpanGroups,
                       absl::StrCat("the RIDs of '", request.device, "' belong to groups ",
                                    found->id, " and ", it->second.group->id),
                       {{"device", request.device},
                        {"group_id", absl::StrCat(found->id)},
                        {"other_group_id", absl::StrCat(it->second.group->id)}});
        }
        found = it->second.group;
      }
      if (found == nullptr) {
        found = std::make_shared<GroupState>();
        found->id = state_->next_group_id.fetch_add(1);
        found->unit = unit;
        state_->groups[found->id] = found;
        created = true;
      }
      device->group = found;
      state_->devices[device->name] = device;
      for (Rid rid : rids) {
        RidOwner& owner = state_->rid_owners[{unit->name, rid}];
        if (owner.group != found) owner = RidOwner{found, 0};
        ++owner.users;
      }
    }
    state_->SyncPoint(kSyncProbeReserved);

    // 2. Under the group mutex: set the group up, or join it.
    GroupState& group = *device->group;
    absl::Status status;
    bool group_died = false;
    DeviceInfo info;
    {
      GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
      FaultScopeGuard fault_scope(call, group.id, device->name);
      if (!created) AwaitSetUp(group);
      if (group.dead.load()) {
        group_died = true;
      } else if (created) {
        status = SetUpGroup(*state_, call, group, device, type);
      } else {
        status = JoinGroup(*state_, call, group, device);
      }
      if (!group_died && status.ok()) status = CommitProbe(*state_, call, group, device, created);
      if (created) group.set_up.SignalAll();  // set up, or about to be marked dead below
      if (!group_died && status.ok()) {
        device->live.store(true, std::memory_order_release);
        info = State::SnapshotDevice(group, *device);
      } else if (created) {
        group.dead.store(true);
        MapWriterLock map_lock(&state_->map_mu, state_->observer());
        state_->groups.erase(group.id);
      }
      if (group_died || !status.ok()) {
        MapWriterLock map_lock(&state_->map_mu, state_->observer());
        DropReservations(*state_, *device);
      }
    }
    if (group_died) continue;  // the group emptied meanwhile: probe again into a new group
    RETURN_IF_ERROR(status);
    RegistryEvent event;
    event.kind = RegistryEvent::Kind::kDeviceProbed;
    event.unit = unit->name;
    event.group = info.group;
    event.domain = info.domain;
    event.device = info.name;
    event.detail = absl::StrCat("rids=", absl::StrJoin(rids, ","));
    state_->Emit(event);
    return info;
  }
}

absl::StatusOr<ReleaseResult> Registry::ReleaseDevice(absl::string_view name,
                                                      CallContext* context,
                                                      bool refuse_if_in_use) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  ASSIGN_OR_RETURN(std::shared_ptr<DeviceState> device, state_->FindDevice(name));
  GroupState& group = *device->group;
  const std::string& unit = device->unit->name;
  ReleaseResult result;
  GroupId group_id = group.id;
  DomainId domain_id = 0;
  bool detached_group = false;  // its release detached the group (it was the last attached)
  {
    GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
    FaultScopeGuard fault_scope(call, group.id, device->name);
    RETURN_IF_ERROR(State::LiveDevice(group, *device));
    if (refuse_if_in_use && device->binding == DriverBinding::kUserOwned) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kDeviceInUse,
                   absl::StrCat("'", name, "' is in use by '", group.owner,
                                "' (claimed after the wait for its owner ended); nothing changed"),
                   {{"device", device->name},
                    {"group_id", absl::StrCat(group.id)},
                    {"owner", group.owner}});
    }
    domain_id = group.domain->id;

    // 1. Off the group's list. Its kernel driver is unbound by the unplug; a user claim is not.
    group.devices.erase(std::find(group.devices.begin(), group.devices.end(), device));
    device->live.store(false, std::memory_order_release);
    if (device->binding == DriverBinding::kKernelDriver && group.owner_cnt > 0) --group.owner_cnt;
    const bool owned_at_release = group.owner_cnt != 0;
    if (group.claimed_devices.erase(device->name) != 0 && group.owner_cnt > 0) --group.owner_cnt;
    // Its attachment ends likewise (iommufd_hw_pagetable_detach on unbind); if it was the last
    // attached device of a group that keeps devices, the group is detached below.
    const bool was_attached = group.attached_devices.erase(device->name) != 0;
    device->binding = DriverBinding::kNone;
    state_->SyncPoint(kSyncReleaseRemovedFromGroup);

    // 2. Its RIDs that no other device of the group uses go to the release (blocked) domain and
    //    are released in the backend. A RID still shared is never reprogrammed. This comes before
    //    the ownership can end (below): until then the group stays on the owner's domain in the
    //    registry, so no FreeDomain (which takes no group mutex) can pass the registry's check
    //    while one of the device's own RIDs still points at that domain in the hardware.
    const std::vector<Rid> still_used = State::GroupRids(group);
    for (Rid rid : device->all_rids) {
      if (std::binary_search(still_used.begin(), still_used.end(), rid)) continue;
      (void)state_->Backend(call).AttachRid(unit, rid, device->unit->release_domain->id);
      if (!TwiceIfNeeded([&] { return state_->Backend(call).ReleaseRid(unit, rid); }).ok()) {
        // The RID stays on the release (blocked) domain: DMA is blocked, but the hardware keeps
        // an entry the registry no longer accounts for. Recorded for the auditor.
        state_->RecordLeak({LeakReason::kReleasedRidTranslates, unit, group.id,
                            device->unit->release_domain->id, rid, device->name, group.owner});
      }
    }
    state_->SyncPoint(kSyncReleaseBackendReleased);
    // Its claim was the owner's last one but devices remain: ownership ends as on
    // ReleaseDeviceOwnership (the group goes back to its default domain).
    if (!group.devices.empty() && group.owner_cnt == 0 && !group.owner.empty()) {
      state_->EndOwnership(call, group);
    }
    // It was the last attached device and the ownership goes on: the group leaves the owner's
    // domain for its blocking domain, as DetachDevice of the last device (after the device's own
    // RIDs were released, above). Must complete: a backend refusal forces the group blocked.
    if (was_attached && group.attached_devices.empty() && !group.devices.empty() &&
        !group.domain->core_owned) {
      if (!state_->SwitchGroupDomain(call, group, group.blocking_domain).ok()) {
        state_->ForceGroupBlocked(call, group);
      }
      detached_group = true;
    }
    // Its reserved regions no longer bind the group's domain. (Its direct regions stay mapped
    // in the default domain, as the kernel leaves them, until the group ends.)
    if (!group.devices.empty()) State::RefreshDomainReserved(group);
    StoreBatch batch;  // committed below, once the group's end (if it ends) is known
    batch.delete_devices.push_back(device->name);

    // 3. The group emptied: free its domains and the group itself.
    if (group.devices.empty()) {
      if (owned_at_release || group.domain != group.default_domain) {
        result.leaked_attachment = true;
        state_->RecordLeak({owned_at_release ? LeakReason::kReleasedWhileOwned
                                             : LeakReason::kReleasedWhileAttached,
                            unit, group.id, group.domain->id, device->rid, device->name,
                            group.owner});
      }
      {
        MutexLock domain_lock(&group.domain->mu);
        group.domain->attached_groups.erase(group.id);
      }
      group.domain = nullptr;
      (void)state_->DestroyDomain(call, group.default_domain);
      (void)state_->DestroyDomain(call, group.blocking_domain);
      group.owner.clear();
      group.owner_cnt = 0;
      group.group_claimed = false;
      group.claimed_devices.clear();
      State::SetLease(group, absl::InfinitePast(), absl::ZeroDuration());
      group.bound_stream = 0;
      group.dead.store(true, std::memory_order_release);
      batch.delete_groups.push_back(group.id);
      batch.delete_domains.push_back(group.default_domain->id);
      batch.delete_domains.push_back(group.blocking_domain->id);
    } else {
      State::AddGroup(group, &batch);
    }
    // The device is gone whatever the store says: a refusal cannot be undone, only counted.
    // result_ref: whether the release leaked an attachment (the reply of a retried request id).
    state_->CommitOrCount(call, std::move(batch), result.leaked_attachment ? 1 : 0);
    MapWriterLock map_lock(&state_->map_mu, state_->observer());
    if (group.dead.load()) state_->groups.erase(group.id);
    auto it = state_->devices.find(device->name);
    if (it != state_->devices.end() && it->second == device) state_->devices.erase(it);
    for (Rid rid : device->all_rids) {
      auto owner = state_->rid_owners.find({unit, rid});
      if (owner == state_->rid_owners.end() || owner->second.group != device->group) continue;
      if (--owner->second.users == 0) state_->rid_owners.erase(owner);
    }
  }
  if (detached_group) {
    RegistryEvent detached;
    detached.kind = RegistryEvent::Kind::kDetached;
    detached.unit = unit;
    detached.group = group_id;
    detached.domain = domain_id;
    detached.device = device->name;
    detached.detail = "last attached device released: group detached";
    state_->Emit(detached);
  }
  RegistryEvent event;
  event.kind = RegistryEvent::Kind::kDeviceReleased;
  event.unit = unit;
  event.group = group_id;
  event.domain = domain_id;
  event.device = device->name;
  event.detail = result.leaked_attachment ? "leaked attachment" : "";
  state_->Emit(event);
  return result;
}

}  // namespace iommud
