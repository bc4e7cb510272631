// Registry: durability. How the registry's state becomes StoreBatch-es (committed under the lock
// of what they describe, undone if the store refuses them) and how Recover rebuilds a registry and
// its hardware from a StoreSnapshot.
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/group_lock.h"
#include "core/registry.h"
#include "core/registry_state.h"
#include "core/status_macros.h"
#include "core/sync.h"

namespace iommud {

GroupRecord Registry::State::GroupRecordOf(const GroupState& group) {
  GroupRecord record;
  record.id = group.id;
  record.unit = group.unit->name;
  record.domain = group.domain != nullptr ? group.domain->id : 0;
  record.default_domain = group.default_domain != nullptr ? group.default_domain->id : 0;
  record.blocking_domain = group.blocking_domain != nullptr ? group.blocking_domain->id : 0;
  record.owner = group.owner;
  record.owner_cnt = group.owner_cnt;
  record.group_claimed = group.group_claimed;
  record.claimed_devices.assign(group.claimed_devices.begin(), group.claimed_devices.end());
  record.attached_devices.assign(group.attached_devices.begin(), group.attached_devices.end());
  if (group.lease_ttl != absl::ZeroDuration()) {
    record.lease_expiry_unix_nanos = absl::ToUnixNanos(group.lease_expiry);
    record.lease_ttl_nanos = absl::ToInt64Nanoseconds(group.lease_ttl);
  }
  return record;
}

DeviceRecord Registry::State::DeviceRecordOf(const GroupState& group, const DeviceState& device) {
  DeviceRecord record;
  record.name = device.name;
  record.unit = device.unit->name;
  record.rid = device.rid;
  record.alias_rids = device.alias_rids;
  record.group = group.id;
  record.probe_seq = device.probe_seq;
  record.binding = device.binding;
  return record;
}

DomainRecord Registry::State::DomainRecordOf(const DomainState& domain) {
  return DomainRecord{domain.id, domain.unit->name, domain.type, domain.owner, domain.core_owned};
}

UnitRecord Registry::State::UnitRecordOf(const UnitState& unit) {
  return UnitRecord{unit.name, unit.caps,
                    unit.release_domain != nullptr ? unit.release_domain->id : 0};
}

void Registry::State::AddGroup(const GroupState& group, StoreBatch* batch) {
  batch->put_groups.push_back(GroupRecordOf(group));
  for (const auto& device : group.devices) {
    batch->put_devices.push_back(DeviceRecordOf(group, *device));
  }
}

absl::Status Registry::State::Commit(CallContext& call, StoreBatch batch, uint64_t result_ref) {
  if (store() == nullptr) return absl::OkStatus();
  batch.fault_scope = call.fault_scope();
  if (RequestRecord* request = call.pending_record()) {
    batch.request = *request;
    batch.request->result_ref = result_ref;
    if (batch.request->time_unix_nanos == 0) {
      batch.request->time_unix_nanos = absl::ToUnixNanos(clock()->Now());
    }
  }
  batch.next_group_id = next_group_id.load();
  batch.next_domain_id = next_domain_id.load();
  absl::Status status = store()->Commit(batch);
  if (status.ok()) {
    if (batch.request.has_value()) call.MarkRecordCommitted();
    return status;
  }
  if (!ErrorReason(status).empty()) return status;
  return Error(absl::StatusCode::kUnavailable, reason::kStoreWriteFailed,
               absl::StrCat("the state store refused the change: ", status.message()));
}

void Registry::State::CommitOrCount(CallContext& call, StoreBatch batch, uint64_t result_ref) {
  if (Commit(call, batch, result_ref).ok() || Commit(call, batch, result_ref).ok()) return;
  unrecorded_changes.fetch_add(1);
}

GroupUndo Registry::State::SaveGroup(const GroupState& group) {
  GroupUndo undo;
  undo.domain = group.domain;
  undo.owner = group.owner;
  undo.owner_cnt = group.owner_cnt;
  undo.group_claimed = group.group_claimed;
  undo.claimed_devices = group.claimed_devices;
  undo.attached_devices = group.attached_devices;
  undo.lease_ttl = group.lease_ttl;
  undo.lease_expiry = group.lease_expiry;
  undo.bound_stream = group.bound_stream;
  undo.handed_over = group.handed_over;
  undo.handover_uid = group.handover_uid;
  undo.handover_gid = group.handover_gid;
  for (const auto& device : group.devices) undo.bindings.push_back({device, device->binding});
  return undo;
}

void Registry::State::RestoreGroup(CallContext& call, GroupState& group, const GroupUndo& undo) {
  if (undo.domain != nullptr && group.domain != undo.domain) {
    absl::Status back = SwitchGroupDomain(call, group, undo.domain);
    if (!back.ok()) back = SwitchGroupDomain(call, group, undo.domain);
    if (!back.ok()) {
      ForceGroupBlocked(call, group);
      RecordLeak({LeakReason::kRestoreDefaultFailed, group.unit->name, group.id,
                  undo.domain->id, 0, "", undo.owner});
    }
  }
  group.owner = undo.owner;
  group.owner_cnt = undo.owner_cnt;
  group.group_claimed = undo.group_claimed;
  group.claimed_devices = undo.claimed_devices;
  group.attached_devices = undo.attached_devices;
  SetLease(group, undo.lease_expiry, undo.lease_ttl);
  group.bound_stream = undo.bound_stream;
  group.handed_over = undo.handed_over;
  group.handover_uid = undo.handover_uid;
  group.handover_gid = undo.handover_gid;
  for (const auto& [device, binding] : undo.bindings) device->binding = binding;
}

absl::Status Registry::State::CommitGroup(CallContext& call, GroupState& group,
                                          const GroupUndo& undo, StoreBatch extra,
                                          uint64_t result_ref) {
  AddGroup(group, &extra);
  absl::Status status = Commit(call, std::move(extra), result_ref);
  if (!status.ok()) RestoreGroup(call, group, undo);
  return status;
}

uint64_t Registry::unrecorded_changes() const { return state_->unrecorded_changes.load(); }

// --- Recover ---

namespace {

absl::Status Corrupt(absl::string_view what) {
  return Error(absl::StatusCode::kDataLoss, reason::kStateCorrupt,
               absl::StrCat("the state store is inconsistent: ", what));
}

// Makes the backend hold `domain` with exactly `mappings`: allocates it if the hardware does not
// have it, else adopts it, rewriting a page table that disagrees.
absl::Status ProgramDomain(IommuBackend* backend, const DomainState& domain,
                           const std::vector<Mapping>& mappings, bool in_hardware,
                           RecoveryReport* report) {
  if (in_hardware) {
    bool agrees = true;
    if (IsPaging(domain.type)) {
      absl::StatusOr<std::vector<Mapping>> leaves = backend->ReadMappings(domain.id);
      std::vector<InvariantViolation> differences;
      if (leaves.ok()) CheckMappings(domain.id, mappings, *leaves, &differences);
      agrees = leaves.ok() && differences.empty();
    }
    if (agrees) {
      ++report->domains_adopted;
      return absl::OkStatus();
    }
    // Unmap whatever the page table holds, then map what the store says (below).
    ++report->domains_rewritten;
    const uint64_t end = domain.unit->caps.aperture_end();
    absl::StatusOr<std::vector<Mapping>> leaves = backend->ReadMappings(domain.id);
    if (leaves.ok()) {
      for (const Mapping& leaf : *leaves) (void)backend->Unmap(domain.id, leaf.iova, leaf.size);
    }
    (void)backend->InvalidateIotlb(domain.id, 0, end);
  } else {
    absl::Status allocated = backend->AllocDomain(domain.unit->name, domain.id, domain.type);
    if (!allocated.ok()) {
      return BackendError(allocated, "alloc_domain", {{"domain_id", absl::StrCat(domain.id)}});
    }
  }
  for (const Mapping& mapping : mappings) {
    absl::Status mapped =
        backend->Map(domain.id, mapping.iova, mapping.paddr, mapping.size, mapping.prot);
    if (!mapped.ok()) {
      return BackendError(mapped, "map", {{"domain_id", absl::StrCat(domain.id)}});
    }
  }
  return absl::OkStatus();
}

// What Recover rebuilds from a snapshot, checked, before anything is published or programmed.
struct RecoveredObjects {
  RecoveredObjects() = default;
  RecoveredObjects(const RecoveredObjects&) = delete;
  RecoveredObjects& operator=(const RecoveredObjects&) = delete;
  // A unit and its release domain point at each other, and so do a group and its devices: objects
  // never published (a start that fails) must break those cycles, as ~Registry does for published
  // ones (publishing moves `units` and `groups` out and clears them, so this does nothing then).
  ~RecoveredObjects() {
    for (auto& [name, unit] : units) unit->release_domain.reset();
    for (auto& [id, group] : groups) {
      MutexLock lock(&group->mu);
      group->devices.clear();
    }
  }

  std::map<std::string, std::shared_ptr<UnitState>> units;
  std::map<DomainId, std::shared_ptr<DomainState>> domains;
  std::map<DomainId, std::vector<Mapping>> mappings;
  std::map<GroupId, std::shared_ptr<GroupState>> groups;
  std::map<std::string, std::shared_ptr<DeviceState>> devices;
  std::map<std::pair<std::string, Rid>, RidOwner> rid_owners;
  uint64_t max_probe_seq = 0;
};

const std::vector<Mapping>& MappingsOf(const RecoveredObjects& objects, DomainId id) {
  static const std::vector<Mapping>* const kNone = new std::vector<Mapping>();
  auto it = objects.mappings.find(id);
  return it == objects.mappings.end() ? *kNone : it->second;
}

// Phase 1: the registry's objects from `snapshot`, every reference checked (DATA_LOSS
// STATE_CORRUPT for one the snapshot cannot satisfy). Touches neither the registry nor the backend.
absl::Status RebuildObjects(const StoreSnapshot& snapshot, RecoveredObjects* objects) {
  auto& units = objects->units;
  for (const UnitRecord& record : snapshot.units) {
    auto unit = std::make_shared<UnitState>();
    unit->name = record.name;
    unit->caps = record.caps;
    units[record.name] = unit;
  }
  auto& domains = objects->domains;
  for (const DomainRecord& record : snapshot.domains) {
    auto unit = units.find(record.unit);
    if (unit == units.end()) {
      return Corrupt(absl::StrCat("domain ", record.id, " is on unknown unit '", record.unit, "'"));
    }
    auto domain = std::make_shared<DomainState>();
    domain->id = record.id;
    domain->unit = unit->second;
    domain->type = record.type;
    domain->owner = record.owner;
    domain->core_owned = record.core_owned;
    domains[record.id] = domain;
  }
  auto find_domain = [&](DomainId id) -> std::shared_ptr<DomainState> {
    auto it = domains.find(id);
    return it == domains.end() ? nullptr : it->second;
  };
  auto& mappings = objects->mappings;
  for (const MappingRecord& record : snapshot.mappings) {
    if (domains.count(record.domain) == 0) {
      return Corrupt(absl::StrCat("a mapping of unknown domain ", record.domain));
    }
    mappings[record.domain].push_back(record.mapping);
  }
  for (const UnitRecord& record : snapshot.units) {
    units[record.name]->release_domain = find_domain(record.release_domain);
    if (units[record.name]->release_domain == nullptr) {
      return Corrupt(absl::StrCat("unit '", record.name, "' has no release domain"));
    }
  }
  auto& groups = objects->groups;
  for (const GroupRecord& record : snapshot.groups) {
    auto unit = units.find(record.unit);
    auto group = std::make_shared<GroupState>();
    group->id = record.id;
    if (unit == units.end()) return Corrupt(absl::StrCat("group ", record.id, " has no unit"));
    group->unit = unit->second;
    MutexLock lock(&group->mu);
    group->domain = find_domain(record.domain);
    group->default_domain = find_domain(record.default_domain);
    group->blocking_domain = find_domain(record.blocking_domain);
    if (group->domain == nullptr || group->default_domain == nullptr ||
        group->blocking_domain == nullptr) {
      return Corrupt(absl::StrCat("group ", record.id, " names a domain that is not stored"));
    }
    group->owner = record.owner;
    group->owner_cnt = record.owner_cnt;
    group->group_claimed = record.group_claimed;
    group->claimed_devices.insert(record.claimed_devices.begin(), record.claimed_devices.end());
    group->attached_devices.insert(record.attached_devices.begin(), record.attached_devices.end());
    if (record.lease_ttl_nanos != 0) {
      // A lease that lapsed while the daemon was down is kept as it was: the first ExpireLeases
      // after the start releases it.
      if (record.owner.empty() || record.lease_ttl_nanos < 0) {
        return Corrupt(absl::StrCat("group ", record.id, " has a lease without an owner or TTL"));
      }
      Registry::State::SetLease(*group, absl::FromUnixNanos(record.lease_expiry_unix_nanos),
                      absl::Nanoseconds(record.lease_ttl_nanos));
    }
    group->initialized = true;
    groups[record.id] = group;
  }
  std::vector<DeviceRecord> device_records = snapshot.devices;
  std::sort(device_records.begin(), device_records.end(),
            [](const DeviceRecord& a, const DeviceRecord& b) { return a.probe_seq < b.probe_seq; });
  auto& devices = objects->devices;
  auto& rid_owners = objects->rid_owners;
  uint64_t& max_probe_seq = objects->max_probe_seq;
  for (const DeviceRecord& record : device_records) {
    auto group = groups.find(record.group);
    if (group == groups.end() || units.count(record.unit) == 0) {
      return Corrupt(absl::StrCat("device '", record.name, "' has no group or unit"));
    }
    auto device = std::make_shared<DeviceState>();
    device->name = record.name;
    device->unit = units[record.unit];
    device->rid = record.rid;
    device->alias_rids = record.alias_rids;
    device->all_rids = record.alias_rids;
    device->all_rids.push_back(record.rid);
    std::sort(device->all_rids.begin(), device->all_rids.end());
    device->all_rids.erase(std::unique(device->all_rids.begin(), device->all_rids.end()),
                           device->all_rids.end());
    device->group = group->second;
    device->probe_seq = record.probe_seq;
    device->binding = record.binding;
    device->live.store(true);
    max_probe_seq = std::max(max_probe_seq, record.probe_seq);
    {
      MutexLock lock(&group->second->mu);
      group->second->devices.push_back(device);
    }
    for (Rid rid : device->all_rids) {
      RidOwner& owner = rid_owners[{record.unit, rid}];
      owner.group = group->second;
      ++owner.users;
    }
    devices[record.name] = device;
  }
  for (auto& [id, group] : groups) {
    MutexLock lock(&group->mu);
    if (group->devices.empty()) return Corrupt(absl::StrCat("group ", id, " has no devices"));
    // Attached devices: only the group's own, none on a core domain; a store written before
    // per-device attach (schema 1) has none for an attached group: AttachGroup attached them all.
    std::set<std::string> attached;
    for (const auto& device : group->devices) {
      if (group->attached_devices.count(device->name) != 0) attached.insert(device->name);
    }
    if (group->domain->core_owned) attached.clear();
    if (!group->domain->core_owned && attached.empty()) {
      for (const auto& device : group->devices) attached.insert(device->name);
    }
    group->attached_devices = std::move(attached);
    MutexLock domain_lock(&group->domain->mu);
    group->domain->attached_groups.insert(id);
  }
  for (auto& [id, domain] : domains) {
    MutexLock lock(&domain->mu);
    for (const Mapping& mapping : mappings[id]) domain->mappings.Insert(mapping);
  }

  return absl::OkStatus();
}

// Makes the backend hold every RID of `group` on the group's domain.
absl::Status ProgramGroupRids(IommuBackend* backend, const GroupState& group)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  for (Rid rid : Registry::State::GroupRids(group)) {
    absl::StatusOr<RidEntry> entry = backend->ReadRid(group.unit->name, rid);
    // A RID already on its domain is adopted; one the hardware lost is programmed here, and one
    // on another domain is left for the reconcile after it to find, report and repair.
    if (entry.ok() && entry->domain != 0) continue;
    absl::Status attached = backend->AttachRid(group.unit->name, rid, group.domain->id);
    if (!attached.ok()) {
      return BackendError(attached, "attach_rid",
                          {{"group_id", absl::StrCat(group.id)}, {"rid", absl::StrCat(rid)}});
    }
  }
  return absl::OkStatus();
}

// An owned group whose RIDs the backend refused (`why`): no longer owned, on its default domain,
// reported in `report->dropped_groups` (RecoveryReport). Before anything is published.
void DropRecoveredOwnership(IommuBackend* backend, GroupState& group, const absl::Status& why,
                            RecoveryReport* report) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  RecoveryReport::DroppedGroup dropped;
  dropped.group = group.id;
  dropped.unit = group.unit->name;
  dropped.owner = group.owner;
  dropped.domain = group.domain->id;
  for (const auto& device : group.devices) dropped.devices.push_back(device->name);
  dropped.status = why;
  // The registry's side, as EndOwnership leaves a group (not yet published: no event, no commit).
  if (group.domain != group.default_domain) {
    {
      MutexLock lock(&group.domain->mu);
      group.domain->attached_groups.erase(group.id);
    }
    group.domain = group.default_domain;
    MutexLock lock(&group.domain->mu);
    group.domain->attached_groups.insert(group.id);
  }
  group.owner.clear();
  group.owner_cnt = 0;
  group.group_claimed = false;
  group.claimed_devices.clear();
  group.attached_devices.clear();
  Registry::State::SetLease(group, absl::InfinitePast(), absl::ZeroDuration());
  for (const auto& device : group.devices) {
    if (device->binding == DriverBinding::kUserOwned) device->binding = DriverBinding::kNone;
  }
  // The hardware's side, best effort: every RID onto the default domain (what the kernel keeps
  // elsewhere, e.g. a group held in a dead process's container, the reconcile reports).
  for (Rid rid : Registry::State::GroupRids(group)) {
    (void)backend->AttachRid(group.unit->name, rid, group.domain->id);
  }
  report->dropped_groups.push_back(std::move(dropped));
}

// Phase 2: makes the backend hold `objects`: units (adopted when the hardware has them), domains
// with their page tables (adopted, rewritten or allocated: ProgramDomain) and every group's RIDs.
absl::Status ProgramHardware(IommuBackend* backend, const RecoveredObjects& objects,
                             const std::vector<DomainId>& hardware_domains,
                             RecoveryReport* report) {
  const std::set<DomainId> in_hardware(hardware_domains.begin(), hardware_domains.end());
  for (const auto& [name, unit] : objects.units) {
    absl::Status added = backend->AddUnit(name, unit->caps);
    if (added.code() == absl::StatusCode::kAlreadyExists) {
      ++report->units_adopted;
    } else if (!added.ok()) {
      return BackendError(added, "add_unit", {{"unit", name}});
    }
  }
  for (const auto& [id, domain] : objects.domains) {
    RETURN_IF_ERROR(
        ProgramDomain(backend, *domain, MappingsOf(objects, id), in_hardware.count(id) != 0, report));
  }
  for (const auto& [id, group] : objects.groups) {
    MutexLock lock(&group->mu);
    absl::Status programmed = ProgramGroupRids(backend, *group);
    if (programmed.ok()) continue;
    if (group->owner.empty()) return programmed;  // no ownership to drop: the start fails
    DropRecoveredOwnership(backend, *group, programmed, report);
  }

  return absl::OkStatus();
}

}  // namespace


absl::StatusOr<RecoveryReport> Registry::Recover() {
  const absl::Time start = absl::Now();
  if (state_->store() == nullptr) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNoStateStore,
                 "Recover needs RegistryOptions.store");
  }
  {
    MapReaderLock lock(&state_->map_mu, state_->observer());
    if (!state_->units.empty() || !state_->domains.empty() || !state_->groups.empty()) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kRegistryNotEmpty,
                   "Recover runs once, on a registry nothing was added to");
    }
  }
  ASSIGN_OR_RETURN(StoreSnapshot snapshot, state_->store()->Load());
  RecoveryReport report;
  if (snapshot.empty()) {
    // The hardware may still be ahead of an empty store (a first start killed before its first
    // commit): never reuse the ids of the domains it holds.
    const std::vector<DomainId> hardware_domains = backend()->ReadDomains();
    report.hardware_domains_unknown = hardware_domains.size();
    DomainId max_domain = 0;
    for (DomainId id : hardware_domains) max_domain = std::max(max_domain, id);
    state_->next_group_id.store(std::max<uint64_t>(snapshot.next_group_id, 1));
    state_->next_domain_id.store(std::max<uint64_t>(snapshot.next_domain_id, max_domain + 1));
    report.elapsed = absl::Now() - start;
    return report;
  }

  // 1. Rebuild the registry's objects (nothing published until all of them check out).
  RecoveredObjects objects;
  RETURN_IF_ERROR(RebuildObjects(snapshot, &objects));

  // 2. Program (or adopt) the hardware: units, domains with their page tables, RIDs.
  const std::vector<DomainId> hardware_domains = backend()->ReadDomains();
  CallContext call;  // Recover answers no request and works on no one group
  FaultInjectingBackend hardware = state_->Backend(call);
  RETURN_IF_ERROR(ProgramHardware(&hardware, objects, hardware_domains, &report));

  // 3. Publish, then reconcile against what the hardware holds beyond the store.
  {
    MapWriterLock lock(&state_->map_mu, state_->observer());
    state_->units = std::move(objects.units);
    objects.units.clear();  // published: nothing for ~RecoveredObjects to break
    state_->domains = std::move(objects.domains);
    state_->groups = std::move(objects.groups);
    objects.groups.clear();
    state_->devices = std::move(objects.devices);
    state_->rid_owners = std::move(objects.rid_owners);
    report.units = state_->units.size();
    report.domains = state_->domains.size();
    report.groups = state_->groups.size();
    report.devices = state_->devices.size();
  }
  report.mappings = snapshot.mappings.size();
  // Regions are not persisted: the region-space mappings that survived keep their addresses, and
  // new regions are placed above them.
  uint64_t region_space_end = 0;
  for (const MappingRecord& record : snapshot.mappings) {
    const Mapping& mapping = record.mapping;
    if (OverlapsRegionSpace(mapping.paddr, mapping.size)) {
      region_space_end = std::max(region_space_end, mapping.paddr + mapping.size);
    }
  }
  if (region_space_end != 0) state_->regions->ReserveBelow(region_space_end);
  GroupId max_group = 0;
  DomainId max_domain = 0;
  for (const GroupRecord& record : snapshot.groups) max_group = std::max(max_group, record.id);
  for (const DomainRecord& record : snapshot.domains) max_domain = std::max(max_domain, record.id);
  for (DomainId id : hardware_domains) max_domain = std::max(max_domain, id);
  state_->next_group_id.store(std::max<uint64_t>(snapshot.next_group_id, max_group + 1));
  state_->next_domain_id.store(std::max<uint64_t>(snapshot.next_domain_id, max_domain + 1));
  state_->next_probe_seq.store(objects.max_probe_seq + 1);
  // 4. The ownerships dropped in step 2, durably (the hardware has moved on: a refused commit is
  // counted, and the next start, reading the old record, tries the claim again and drops it again).
  for (const RecoveryReport::DroppedGroup& dropped : report.dropped_groups) {
    std::shared_ptr<GroupState> group;
    {
      MapReaderLock lock(&state_->map_mu, state_->observer());
      auto it = state_->groups.find(dropped.group);
      if (it != state_->groups.end()) group = it->second;
    }
    if (group == nullptr) continue;
    MutexLock lock(&group->mu);
    StoreBatch batch;
    State::AddGroup(*group, &batch);
    state_->CommitOrCount(call, std::move(batch));
  }
  ReconcileResult reconciled = Reconcile();
  report.repaired = std::move(reconciled.repaired);
  report.remaining = std::move(reconciled.remaining);
  report.elapsed = absl::Now() - start;
  return report;
}

}  // namespace iommud
