// Registry: construction, units, inventory, translation and faults. The operations that change
// groups live in registry_lifecycle.cc, registry_ownership.cc and registry_domains.cc.
#include "core/registry.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/group_lock.h"
#include "core/registry_state.h"
#include "core/status_macros.h"
#include "core/sync.h"

namespace iommud {

absl::StatusOr<std::unique_ptr<Registry>> Registry::Create(const RegistryOptions& options) {
  if (options.backend == nullptr) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kMissingBackend,
                 "RegistryOptions.backend is required");
  }
  const DomainType policy = options.default_domain_type;
  if (policy != DomainType::kDma && policy != DomainType::kDmaFq &&
      policy != DomainType::kIdentity) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidDefaultDomainType,
                 absl::StrCat("a default domain is DMA, DMA_FQ or IDENTITY, not ",
                              DomainTypeName(policy)));
  }
  return std::unique_ptr<Registry>(new Registry(options));
}

Registry::Registry(const RegistryOptions& options)
    : options_(options), state_(std::make_unique<State>(options)) {}

Registry::~Registry() {
  // Break the reference cycles: device <-> group of live groups, unit <-> its release domain.
  std::map<GroupId, std::shared_ptr<GroupState>> groups;
  std::map<std::string, std::shared_ptr<UnitState>> units;
  {
    MapWriterLock lock(&state_->map_mu, state_->observer());
    groups = state_->groups;
    units = state_->units;
  }
  for (auto& [id, group] : groups) {
    MutexLock lock(&group->mu);
    group->devices.clear();
  }
  for (auto& [name, unit] : units) unit->release_domain.reset();
}

namespace {

absl::Status ValidateCaps(absl::string_view name, const UnitCaps& caps) {
  auto invalid = [&](absl::string_view why) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidUnit,
                 absl::StrCat("unit '", name, "': ", why), {{"unit", std::string(name)}});
  };
  if (name.empty()) return invalid("empty name");
  if (caps.pgsize_bitmap == 0) return invalid("pgsize_bitmap is empty");
  if (caps.iova_bits < 12 || caps.iova_bits > 64) return invalid("iova_bits must be in [12, 64]");
  if (caps.min_page_size() < kPage4K) return invalid("page sizes below 4K are not supported");
  if (caps.max_rids == 0) return invalid("max_rids is 0");
  if (caps.domain_types.empty()) return invalid("no domain types");
  for (const IovaRange& region : caps.reserved_regions) {
    if (region.size == 0 || region.start + region.size < region.start) {
      return invalid("reserved region is empty or wraps");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<UnitInfo> Registry::AddUnit(absl::string_view name, const UnitCaps& caps,
                                           bool* adopted) {
  CallContext call;  // no request record; group operations set their fault scope
  if (adopted != nullptr) *adopted = false;
  RETURN_IF_ERROR(ValidateCaps(name, caps));
  auto unit = std::make_shared<UnitState>();
  unit->name = std::string(name);
  unit->caps = caps;
  {
    MapWriterLock lock(&state_->map_mu, state_->observer());
    if (state_->units.count(unit->name) != 0) {
      return Error(absl::StatusCode::kAlreadyExists, reason::kUnitExists,
                   absl::StrCat("unit '", name, "' already exists"), {{"unit", unit->name}});
    }
  }
  absl::Status added = state_->Backend(call).AddUnit(name, caps);
  // The hardware already holds the unit with these caps but the registry does not: a start that
  // died between programming the unit and committing it. Adopt it; the release domain allocated
  // then is an orphan the next Reconcile frees.
  const bool adopt = added.code() == absl::StatusCode::kAlreadyExists;
  if (!added.ok() && !adopt) return BackendError(added, "add_unit", {{"unit", unit->name}});
  ASSIGN_OR_RETURN(unit->release_domain, state_->CreateDomain(call, unit, State::BlockingType(caps),
                                                              "", /*core_owned=*/true));
  StoreBatch batch;
  batch.put_units.push_back(State::UnitRecordOf(*unit));
  batch.put_domains.push_back(State::DomainRecordOf(*unit->release_domain));
  if (absl::Status committed = state_->Commit(call, std::move(batch)); !committed.ok()) {
    // The backend keeps the (empty) unit: it has no remove; a retry adopts it (above).
    (void)state_->DestroyDomain(call, unit->release_domain);
    unit->release_domain.reset();  // breaks the unit <-> release domain cycle
    return committed;
  }
  {
    MapWriterLock lock(&state_->map_mu, state_->observer());
    state_->units[unit->name] = unit;
  }
  if (adopted != nullptr) *adopted = adopt;
  return GetUnit(name);
}

std::vector<UnitInfo> Registry::ListUnits() const {
  std::vector<std::string> names;
  {
    MapReaderLock lock(&state_->map_mu, state_->observer());
    for (const auto& [name, unit] : state_->units) names.push_back(name);
  }
  std::vector<UnitInfo> units;
  for (const std::string& name : names) {
    absl::StatusOr<UnitInfo> unit = GetUnit(name);
    if (unit.ok()) units.push_back(*std::move(unit));
  }
  return units;
}

absl::StatusOr<UnitInfo> Registry::GetUnit(absl::string_view name) const {
  ASSIGN_OR_RETURN(std::shared_ptr<UnitState> unit, state_->FindUnit(name));
  UnitInfo info;
  info.name = unit->name;
  info.backend = std::string(backend()->name());
  info.caps = unit->caps;
  MapReaderLock lock(&state_->map_mu, state_->observer());
  for (const auto& [device_name, device] : state_->devices) {
    if (device->unit == unit && device->live.load(std::memory_order_acquire)) ++info.device_count;
  }
  for (const auto& [id, group] : state_->groups) {
    if (group->unit == unit && !group->dead.load(std::memory_order_acquire)) ++info.group_count;
  }
  for (const auto& [id, domain] : state_->domains) {
    if (domain->unit == unit) ++info.domain_count;
  }
  return info;
}

absl::StatusOr<DeviceInfo> Registry::GetDevice(absl::string_view name) const {
  ASSIGN_OR_RETURN(std::shared_ptr<DeviceState> device, state_->FindDevice(name));
  GroupState& group = *device->group;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  RETURN_IF_ERROR(State::LiveDevice(group, *device));
  return State::SnapshotDevice(group, *device);
}

std::optional<GroupId> Registry::GroupOfDevice(absl::string_view name) const {
  MapReaderLock lock(&state_->map_mu, state_->observer());
  auto it = state_->devices.find(std::string(name));
  if (it == state_->devices.end() || !it->second->live.load(std::memory_order_acquire)) {
    return std::nullopt;
  }
  return it->second->group->id;
}

std::vector<DeviceInfo> Registry::ListDevices() const {
  std::vector<std::shared_ptr<DeviceState>> devices;
  {
    MapReaderLock lock(&state_->map_mu, state_->observer());
    for (const auto& [name, device] : state_->devices) devices.push_back(device);
  }
  std::vector<DeviceInfo> infos;
  for (const auto& device : devices) {
    GroupState& group = *device->group;
    GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
    if (State::LiveDevice(group, *device).ok()) {
      infos.push_back(State::SnapshotDevice(group, *device));
    }
  }
  return infos;
}

absl::StatusOr<GroupInfo> Registry::GetGroup(GroupId id) const {
  ASSIGN_OR_RETURN(std::shared_ptr<GroupState> group, state_->FindGroup(id));
  GroupLock lock(&group->mu, &group->lock_stats, state_->observer());
  RETURN_IF_ERROR(State::LiveGroup(*group));
  return State::SnapshotGroup(*group);
}

std::vector<GroupInfo> Registry::ListGroups() const {
  std::vector<std::shared_ptr<GroupState>> groups;
  {
    MapReaderLock lock(&state_->map_mu, state_->observer());
    for (const auto& [id, group] : state_->groups) groups.push_back(group);
  }
  std::vector<GroupInfo> infos;
  for (const auto& group : groups) {
    GroupLock lock(&group->mu, &group->lock_stats, state_->observer());
    if (State::LiveGroup(*group).ok()) infos.push_back(State::SnapshotGroup(*group));
  }
  return infos;
}

absl::StatusOr<DomainInfo> Registry::GetDomain(DomainId id) const {
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> domain, state_->FindDomain(id));
  return State::SnapshotDomain(*domain);
}

std::vector<DomainInfo> Registry::ListDomains() const {
  std::vector<std::shared_ptr<DomainState>> domains;
  {
    MapReaderLock lock(&state_->map_mu, state_->observer());
    for (const auto& [id, domain] : state_->domains) domains.push_back(domain);
  }
  std::vector<DomainInfo> infos;
  infos.reserve(domains.size());
  for (const auto& domain : domains) infos.push_back(State::SnapshotDomain(*domain));
  return infos;
}

absl::StatusOr<std::vector<Mapping>> Registry::ListMappings(DomainId id) const {
  ASSIGN_OR_RETURN(std::shared_ptr<DomainState> domain, state_->FindDomain(id));
  ReaderMutexLock lock(&domain->mu);
  return domain->mappings.All();
}

absl::StatusOr<Translation> Registry::Translate(absl::string_view name, uint64_t iova,
                                                uint32_t access) {
  if (access == 0 || (access & ~uint32_t{kProtRead | kProtWrite}) != 0) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidAccess,
                 absl::StrCat("access must be a non-empty set of READ|WRITE, not ", access),
                 {{"device", std::string(name)}});
  }
  // An emulated DMA does not take the group lock: the hardware translates whatever the RID points
  // at, concurrently with reprogramming, as a real device would.
  ASSIGN_OR_RETURN(std::shared_ptr<DeviceState> device, state_->FindDevice(name));
  Translation translation = backend()->Translate(device->unit->name, device->rid, iova, access);
  state_->CollectFaults();
  return translation;
}

std::vector<FaultRecord> Registry::RecentFaults(size_t max_records, uint64_t* total) const {
  state_->CollectFaults();
  ReaderMutexLock lock(&state_->fault_mu);
  if (total != nullptr) *total = state_->faults_total;
  std::vector<FaultRecord> recent;
  for (auto it = state_->faults.rbegin(); it != state_->faults.rend() && recent.size() < max_records;
       ++it) {
    recent.push_back(*it);
  }
  return recent;
}

}  // namespace iommud
