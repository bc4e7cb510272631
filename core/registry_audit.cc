// Registry: the auditor's view (Audit, Reconcile) and per-group lock contention.
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/group_lock.h"
#include "core/registry.h"
#include "core/registry_state.h"
#include "core/sync.h"

namespace iommud {

namespace {

struct Snapshot {
  std::vector<std::shared_ptr<UnitState>> units;
  std::vector<std::shared_ptr<GroupState>> groups;
  std::set<DomainId> domains;
};

Snapshot TakeSnapshot(const Registry::State& state) {
  Snapshot snapshot;
  MapReaderLock lock(&state.map_mu, state.observer());
  for (const auto& [name, unit] : state.units) snapshot.units.push_back(unit);
  for (const auto& [id, group] : state.groups) snapshot.groups.push_back(group);
  for (const auto& [id, domain] : state.domains) snapshot.domains.insert(id);
  return snapshot;
}

// Bound kernel drivers, device claims and a group claim: what owner_cnt must equal.
uint32_t AccountedOwners(const GroupState& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  uint32_t accounted = group.group_claimed ? 1 : 0;
  for (const auto& device : group.devices) {
    if (device->binding == DriverBinding::kKernelDriver) ++accounted;
  }
  return accounted + static_cast<uint32_t>(group.claimed_devices.size());
}

// The device of `group` using `rid` (first in probe order), for the leak record.
std::string DeviceOfRid(const GroupState& group, Rid rid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  for (const auto& device : group.devices) {
    if (std::binary_search(device->all_rids.begin(), device->all_rids.end(), rid)) {
      return device->name;
    }
  }
  return "";
}

// The leaks of one locked group, and the RIDs it accounts for.
void AuditGroup(const Registry::State& state, const GroupState& group,
                const std::set<DomainId>& known_domains, std::vector<LeakRecord>* leaks,
                std::set<std::pair<std::string, Rid>>* live_rids)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  const std::string& unit = group.unit->name;
  const DomainId domain = group.domain->id;
  if (AccountedOwners(group) != group.owner_cnt) {
    leaks->push_back({LeakReason::kUnaccountedOwnerCount, unit, group.id, domain, 0, "",
                      group.owner});
  }
  if (group.owner.empty() && group.domain != group.default_domain) {
    leaks->push_back({LeakReason::kOwnerGone, unit, group.id, domain, 0, "", ""});
  }
  for (Rid rid : Registry::State::GroupRids(group)) {
    live_rids->insert({unit, rid});
    absl::StatusOr<RidEntry> entry = state.backend()->ReadRid(unit, rid);
    const DomainId hardware = entry.ok() ? entry->domain : 0;
    if (hardware == domain) continue;
    const LeakReason reason = hardware != 0 && known_domains.count(hardware) == 0
                                  ? LeakReason::kRidOnUnknownDomain
                                  : LeakReason::kRidOnWrongDomain;
    leaks->push_back({reason, unit, group.id, hardware, rid, DeviceOfRid(group, rid), group.owner});
  }
}

}  // namespace

std::vector<LeakRecord> Registry::Audit() const {
  const Snapshot snapshot = TakeSnapshot(*state_);
  std::vector<LeakRecord> leaks;
  std::set<std::pair<std::string, Rid>> live_rids;
  for (const auto& group : snapshot.groups) {
    GroupLock lock(&group->mu, &group->lock_stats, state_->observer());
    if (!State::LiveGroup(*group).ok()) continue;
    AuditGroup(*state_, *group, snapshot.domains, &leaks, &live_rids);
  }
  for (const auto& unit : snapshot.units) {
    absl::StatusOr<std::vector<RidEntry>> entries = backend()->ReadRids(unit->name);
    if (!entries.ok()) continue;
    for (const RidEntry& entry : *entries) {
      if (live_rids.count({unit->name, entry.rid}) != 0) continue;
      leaks.push_back({snapshot.domains.count(entry.domain) == 0
                           ? LeakReason::kRidOnUnknownDomain
                           : LeakReason::kReleasedRidTranslates,
                       unit->name, 0, entry.domain, entry.rid, "", ""});
    }
  }
  for (DomainId id : backend()->ReadDomains()) {
    if (snapshot.domains.count(id) == 0) {
      leaks.push_back({LeakReason::kOrphanDomain, "", 0, id, 0, "", ""});
    }
  }
  AppendHandoverLeaks(*state_, &leaks);
  return leaks;
}

Registry::ReconcileResult Registry::Reconcile() {
  CallContext call;  // no request record; group operations set their fault scope
  ReconcileResult result;
  result.repaired = Audit();
  const Snapshot snapshot = TakeSnapshot(*state_);
  std::set<std::pair<std::string, Rid>> live_rids;
  // 1. Groups: owner_cnt, owner-less groups off their default, RIDs not on the group's domain.
  for (const auto& group_ptr : snapshot.groups) {
    GroupState& group = *group_ptr;
    GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
    if (!State::LiveGroup(group).ok()) continue;
    const GroupRecord before = State::GroupRecordOf(group);
    const uint32_t accounted = AccountedOwners(group);
    if (accounted != group.owner_cnt) {
      group.owner_cnt = accounted;
      if (accounted == 0 && !group.owner.empty()) state_->EndOwnership(call, group);
    }
    if (group.owner.empty() && group.domain != group.default_domain) {
      if (!state_->SwitchGroupDomain(call, group, group.default_domain).ok()) {
        state_->ForceGroupBlocked(call, group);
      }
    }
    const GroupRecord after = State::GroupRecordOf(group);
    if (after.domain != before.domain || after.owner != before.owner ||
        after.owner_cnt != before.owner_cnt) {
      StoreBatch batch;
      State::AddGroup(group, &batch);
      state_->CommitOrCount(call, std::move(batch));  // the hardware was already repaired
    }
    const std::string& unit = group.unit->name;
    for (Rid rid : State::GroupRids(group)) {
      live_rids.insert({unit, rid});
      absl::StatusOr<RidEntry> entry = backend()->ReadRid(unit, rid);
      if (entry.ok() && entry->domain == group.domain->id) continue;
      if (!state_->Backend(call).AttachRid(unit, rid, group.domain->id).ok()) {
        (void)state_->Backend(call).ReleaseRid(unit, rid);
      }
    }
  }
  // 2. RIDs no device uses: through the release (blocked) domain to released.
  for (const auto& unit : snapshot.units) {
    absl::StatusOr<std::vector<RidEntry>> entries = backend()->ReadRids(unit->name);
    if (!entries.ok()) continue;
    for (const RidEntry& entry : *entries) {
      if (live_rids.count({unit->name, entry.rid}) != 0) continue;
      (void)state_->Backend(call).AttachRid(unit->name, entry.rid, unit->release_domain->id);
      (void)state_->Backend(call).ReleaseRid(unit->name, entry.rid);
    }
  }
  // 3. Hardware domains the registry does not know (nothing points at them any more).
  for (DomainId id : backend()->ReadDomains()) {
    if (snapshot.domains.count(id) == 0) (void)state_->Backend(call).FreeDomain(id);
  }
  for (const LeakRecord& leak : result.repaired) {
    state_->EmitLeak(RegistryEvent::Kind::kLeakRepaired, leak);
  }
  result.remaining = Audit();
  return result;
}

std::vector<Registry::GroupContention> Registry::MostContendedGroups(size_t max_groups) const {
  std::vector<std::shared_ptr<GroupState>> groups;
  {
    MapReaderLock lock(&state_->map_mu, state_->observer());
    for (const auto& [id, group] : state_->groups) groups.push_back(group);
  }
  std::vector<GroupContention> contention;
  for (const auto& group : groups) {
    if (group->dead.load()) continue;
    GroupContention entry;
    entry.group = group->id;
    entry.unit = group->unit->name;
    entry.acquisitions = group->lock_stats.acquisitions.load(std::memory_order_relaxed);
    entry.contended = group->lock_stats.contended.load(std::memory_order_relaxed);
    entry.total_wait =
        absl::Nanoseconds(group->lock_stats.wait_nanos.load(std::memory_order_relaxed));
    contention.push_back(entry);
  }
  std::sort(contention.begin(), contention.end(),
            [](const GroupContention& a, const GroupContention& b) {
              if (a.total_wait != b.total_wait) return a.total_wait > b.total_wait;
              if (a.contended != b.contended) return a.contended > b.contended;
              return a.group < b.group;
            });
  if (contention.size() > max_groups) contention.resize(max_groups);
  return contention;
}

}  // namespace iommud
