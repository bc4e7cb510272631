// Helpers shared by the Registry's operations (see core/registry_state.h).
#include "core/registry_state.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/status_macros.h"
#include "core/sync.h"

namespace iommud {

absl::Status TwiceIfNeeded(const std::function<absl::Status()>& call) {
  absl::Status status = call();
  return status.ok() ? status : call();
}

absl::Status BackendError(const absl::Status& status, absl::string_view op,
                          const ErrorMetadata& metadata) {
  if (!ErrorReason(status).empty()) return status;
  ErrorMetadata with_op = metadata;
  with_op["backend_op"] = std::string(op);
  return Error(status.code(), reason::kBackendFailed,
               absl::StrCat("backend ", op, " failed: ", status.message()), with_op);
}

void Registry::State::RecordLeak(const LeakRecord& leak) const {
  if (options.observer == nullptr) return;
  options.observer->OnLeak(leak);
  EmitLeak(RegistryEvent::Kind::kLeakFound, leak);
}

void Registry::State::EmitLeak(RegistryEvent::Kind kind, const LeakRecord& leak) const {
  RegistryEvent event;
  event.kind = kind;
  event.unit = leak.unit;
  event.group = leak.group;
  event.domain = leak.domain;
  event.device = leak.device;
  event.owner = leak.owner;
  event.detail = std::string(LeakReasonName(leak.reason));
  Emit(event);
}

absl::StatusOr<std::shared_ptr<UnitState>> Registry::State::FindUnit(absl::string_view name) const {
  MapReaderLock lock(&map_mu, observer());
  auto it = units.find(std::string(name));
  if (it == units.end()) {
    return Error(absl::StatusCode::kNotFound, reason::kUnitNotFound,
                 absl::StrCat("no IOMMU unit '", name, "'"), {{"unit", std::string(name)}});
  }
  return it->second;
}

absl::StatusOr<std::shared_ptr<DeviceState>> Registry::State::FindDevice(
    absl::string_view name) const {
  {
    MapReaderLock lock(&map_mu, observer());
    auto it = devices.find(std::string(name));
    if (it != devices.end() && it->second->live.load(std::memory_order_acquire)) return it->second;
  }
  return Error(absl::StatusCode::kNotFound, reason::kDeviceNotFound,
               absl::StrCat("no device '", name, "'"), {{"device", std::string(name)}});
}

absl::StatusOr<std::shared_ptr<GroupState>> Registry::State::FindGroup(GroupId id) const {
  {
    MapReaderLock lock(&map_mu, observer());
    auto it = groups.find(id);
    if (it != groups.end() && !it->second->dead.load(std::memory_order_acquire)) return it->second;
  }
  return Error(absl::StatusCode::kNotFound, reason::kGroupNotFound, absl::StrCat("no group ", id),
               {{"group_id", absl::StrCat(id)}});
}

absl::StatusOr<std::shared_ptr<DomainState>> Registry::State::FindDomain(DomainId id) const {
  {
    MapReaderLock lock(&map_mu, observer());
    auto it = domains.find(id);
    if (it != domains.end()) return it->second;
  }
  return Error(absl::StatusCode::kNotFound, reason::kDomainNotFound, absl::StrCat("no domain ", id),
               {{"domain_id", absl::StrCat(id)}});
}

absl::Status Registry::State::LiveDevice(const GroupState& group, const DeviceState& device) {
  if (device.live.load(std::memory_order_acquire) && !group.dead.load()) return absl::OkStatus();
  return Error(absl::StatusCode::kNotFound, reason::kDeviceNotFound,
               absl::StrCat("no device '", device.name, "' (released)"), {{"device", device.name}});
}

absl::Status Registry::State::LiveGroup(const GroupState& group) {
  if (!group.dead.load(std::memory_order_acquire) && group.initialized) return absl::OkStatus();
  return Error(absl::StatusCode::kNotFound, reason::kGroupNotFound,
               absl::StrCat("no group ", group.id, " (released)"),
               {{"group_id", absl::StrCat(group.id)}});
}

std::vector<Rid> Registry::State::GroupRids(const GroupState& group) {
  std::vector<Rid> rids;
  for (const auto& device : group.devices) {
    rids.insert(rids.end(), device->all_rids.begin(), device->all_rids.end());
  }
  std::sort(rids.begin(), rids.end());
  rids.erase(std::unique(rids.begin(), rids.end()), rids.end());
  return rids;
}

absl::Status Registry::State::SwitchGroupDomain(CallContext& call, GroupState& group,
                                                const std::shared_ptr<DomainState>& to) {
  const std::shared_ptr<DomainState> from = group.domain;
  if (from == to) return absl::OkStatus();
  {
    MutexLock lock(&to->mu);
    if (to->freed) {
      return Error(absl::StatusCode::kNotFound, reason::kDomainNotFound,
                   absl::StrCat("domain ", to->id, " was freed"),
                   {{"domain_id", absl::StrCat(to->id)}});
    }
    to->attached_groups.insert(group.id);
  }
  const std::vector<Rid> rids = GroupRids(group);
  const std::string& unit = group.unit->name;
  for (size_t i = 0; i < rids.size(); ++i) {
    if (i > 0) SyncPoint(kSyncAttachBetweenRids);
    absl::Status status = Backend(call).AttachRid(unit, rids[i], to->id);
    if (status.ok()) continue;
    // Roll back: the RIDs already switched go back to the old domain (or are released if there
    // is none, which only happens while a group is being set up).
    for (size_t j = 0; j < i; ++j) {
      absl::Status undo = TwiceIfNeeded([&] {
        return from != nullptr ? Backend(call).AttachRid(unit, rids[j], from->id)
                               : Backend(call).ReleaseRid(unit, rids[j]);
      });
      if (!undo.ok()) (void)Backend(call).ReleaseRid(unit, rids[j]);
    }
    {
      MutexLock lock(&to->mu);
      to->attached_groups.erase(group.id);
    }
    return BackendError(status, "attach_rid",
                       {{"group_id", absl::StrCat(group.id)},
                        {"domain_id", absl::StrCat(to->id)},
                        {"rid", absl::StrCat(rids[i])},
                        {"unit", unit}});
  }
  if (from != nullptr) {
    MutexLock lock(&from->mu);
    from->attached_groups.erase(group.id);
  }
  group.domain = to;
  if (to->core_owned) group.attached_devices.clear();
  return absl::OkStatus();
}

void Registry::State::ForceGroupBlocked(CallContext& call, GroupState& group) {
  if (SwitchGroupDomain(call, group, group.blocking_domain).ok()) return;
  // The backend refuses even the blocking domain: make the RIDs invalid (DMA faults) instead.
  for (Rid rid : GroupRids(group)) {
    (void)TwiceIfNeeded([&] { return Backend(call).ReleaseRid(group.unit->name, rid); });
  }
  if (group.domain != nullptr) {
    MutexLock lock(&group.domain->mu);
    group.domain->attached_groups.erase(group.id);
  }
  {
    MutexLock lock(&group.blocking_domain->mu);
    group.blocking_domain->attached_groups.insert(group.id);
  }
  group.domain = group.blocking_domain;
  group.attached_devices.clear();
}

void Registry::State::EndOwnership(CallContext& call, GroupState& group) {
  const std::string owner = group.owner;
  const DomainId owner_domain = group.domain != nullptr ? group.domain->id : 0;
  // Must succeed: a transient backend failure is retried before the group is forced to blocked.
  absl::Status restored = SwitchGroupDomain(call, group, group.default_domain);
  if (!restored.ok()) restored = SwitchGroupDomain(call, group, group.default_domain);
  if (!restored.ok()) {
    ForceGroupBlocked(call, group);
    RecordLeak({LeakReason::kRestoreDefaultFailed, group.unit->name, group.id, owner_domain, 0,
                "", owner});
  }
  group.owner.clear();
  group.owner_cnt = 0;
  group.group_claimed = false;
  group.claimed_devices.clear();
  SetLease(group, absl::InfinitePast(), absl::ZeroDuration());
  group.bound_stream = 0;
  for (const auto& device : group.devices) {
    if (device->binding == DriverBinding::kUserOwned) device->binding = DriverBinding::kNone;
  }
}

void Registry::State::SetLease(GroupState& group, absl::Time expiry, absl::Duration ttl) {
  const bool leased = ttl != absl::ZeroDuration();
  group.lease_ttl = ttl;
  group.lease_expiry = leased ? expiry : absl::InfinitePast();
  // A lease that expires at the epoch or before is still a lease: the hint is at least 1.
  group.lease_expiry_hint.store(leased ? std::max<int64_t>(absl::ToUnixNanos(expiry), 1) : 0,
                                std::memory_order_release);
}

DomainType Registry::State::BlockingType(const UnitCaps& caps) {
  return caps.Supports(DomainType::kBlocked) ? DomainType::kBlocked : DomainType::kUnmanaged;
}

absl::StatusOr<std::shared_ptr<DomainState>> Registry::State::CreateDomain(
    CallContext& call, const std::shared_ptr<UnitState>& unit, DomainType type,
    absl::string_view owner, bool core_owned) {
  auto domain = std::make_shared<DomainState>();
  domain->id = next_domain_id.fetch_add(1);
  domain->unit = unit;
  domain->type = type;
  domain->owner = std::string(owner);
  domain->core_owned = core_owned;
  absl::Status status =
      Backend(call).AllocDomain(unit->name, domain->id, type);  // may fail: caller
  if (!status.ok()) {
    return BackendError(status, "alloc_domain",
                       {{"unit", unit->name}, {"domain_type", std::string(DomainTypeName(type))}});
  }
  {
    MapWriterLock lock(&map_mu, observer());
    domains[domain->id] = domain;
  }
  RegistryEvent event;
  event.kind = RegistryEvent::Kind::kDomainAllocated;
  event.unit = unit->name;
  event.domain = domain->id;
  event.owner = domain->owner;
  event.detail = std::string(DomainTypeName(type));
  Emit(event);
  return domain;
}

absl::Status Registry::State::DestroyDomain(CallContext& call,
                                            const std::shared_ptr<DomainState>& domain,
                                            bool durable) {
  {
    MutexLock lock(&domain->mu);
    if (!domain->attached_groups.empty()) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kDomainInUse,
                   absl::StrCat("domain ", domain->id, " is attached to ",
                                domain->attached_groups.size(), " group(s)"),
                   {{"domain_id", absl::StrCat(domain->id)}});
    }
    if (durable) {
      StoreBatch batch;
      batch.delete_domains.push_back(domain->id);
      RETURN_IF_ERROR(Commit(call, std::move(batch)));
    }
    absl::Status status = TwiceIfNeeded([&] { return Backend(call).FreeDomain(domain->id); });
    if (!status.ok()) {
      if (durable) {  // put the domain and its mappings back in the store
        StoreBatch batch;
        batch.put_domains.push_back(DomainRecordOf(*domain));
        for (const Mapping& mapping : domain->mappings.All()) {
          batch.put_mappings.push_back({domain->id, mapping});
        }
        CommitOrCount(call, std::move(batch));
      }
      return BackendError(status, "free_domain", {{"domain_id", absl::StrCat(domain->id)}});
    }
    domain->freed = true;
    for (const Mapping& mapping : domain->mappings.All()) {
      regions->Discharge(mapping.paddr, mapping.size);
    }
  }
  {
    MapWriterLock lock(&map_mu, observer());
    domains.erase(domain->id);
  }
  RegistryEvent event;
  event.kind = RegistryEvent::Kind::kDomainFreed;
  event.unit = domain->unit->name;
  event.domain = domain->id;
  event.owner = domain->owner;
  Emit(event);
  return absl::OkStatus();
}

GroupInfo Registry::State::SnapshotGroup(const GroupState& group) {
  GroupInfo info;
  info.id = group.id;
  info.unit = group.unit->name;
  for (const auto& device : group.devices) info.devices.push_back(device->name);
  info.domain = group.domain != nullptr ? group.domain->id : 0;
  info.default_domain = group.default_domain != nullptr ? group.default_domain->id : 0;
  info.blocking_domain = group.blocking_domain != nullptr ? group.blocking_domain->id : 0;
  info.owner = group.owner;
  info.owner_cnt = group.owner_cnt;
  info.claimed_devices.assign(group.claimed_devices.begin(), group.claimed_devices.end());
  info.attached_devices.assign(group.attached_devices.begin(), group.attached_devices.end());
  info.lease_ttl = group.lease_ttl;
  info.lease_expiry = group.lease_expiry;
  info.lease_bound = group.bound_stream != 0;
  info.handed_over = group.handed_over;
  info.handover_uid = group.handover_uid;
  info.handover_gid = group.handover_gid;
  return info;
}

DeviceInfo Registry::State::SnapshotDevice(const GroupState& group, const DeviceState& device) {
  DeviceInfo info;
  info.name = device.name;
  info.unit = device.unit->name;
  info.rid = device.rid;
  info.alias_rids = device.alias_rids;
  info.group = group.id;
  info.binding = device.binding;
  info.domain = group.domain != nullptr ? group.domain->id : 0;
  info.attached = group.attached_devices.count(device.name) != 0;
  return info;
}

DomainInfo Registry::State::SnapshotDomain(const DomainState& domain) {
  DomainInfo info;
  info.id = domain.id;
  info.unit = domain.unit->name;
  info.type = domain.type;
  info.owner = domain.owner;
  info.core_owned = domain.core_owned;
  info.caps = domain.unit->caps;
  ReaderMutexLock lock(&domain.mu);
  info.attached_groups.assign(domain.attached_groups.begin(), domain.attached_groups.end());
  info.mapping_count = domain.mappings.count();
  info.mapped_bytes = domain.mappings.bytes();
  return info;
}

void Registry::State::CollectFaults() {
  std::vector<FaultRecord> drained = backend()->DrainFaults();
  if (drained.empty()) return;
  const int64_t now = absl::ToUnixNanos(absl::Now());
  {
    MutexLock lock(&fault_mu);
    for (FaultRecord& fault : drained) {
      if (fault.time_unix_nanos == 0) fault.time_unix_nanos = now;
      faults.push_back(fault);
      ++faults_total;
      while (faults.size() > std::max<size_t>(options.fault_log_capacity, 1)) faults.pop_front();
    }
  }
  if (options.observer == nullptr) return;
  for (const FaultRecord& fault : drained) {
    options.observer->OnFault(fault);
    RegistryEvent event;
    event.kind = RegistryEvent::Kind::kFault;
    event.unit = fault.unit;
    event.iova = fault.iova;
    event.detail = absl::StrCat(FaultReasonName(fault.reason), " rid=", fault.rid);
    options.observer->OnEvent(event);
  }
}

}  // namespace iommud
