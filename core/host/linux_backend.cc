#include "core/host/linux_backend.h"

#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "core/backend/leaf_mapping.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/sysfs_io.h"
#include "core/status_macros.h"
#include "core/sync.h"

namespace iommud {
namespace host {
namespace {

constexpr uint32_t kDefaultIovaBits = 39;  // QEMU's and many CPUs' VT-d MGAW

std::string Hex(uint64_t value) { return absl::StrCat("0x", absl::Hex(value)); }

// The VT-d capability register's maximum guest address width, or kDefaultIovaBits.
uint32_t IovaBitsOf(const std::string& sysfs_root, const std::string& unit) {
  absl::StatusOr<std::string> cap =
      ReadSysfsAttribute(absl::StrCat(sysfs_root, "/class/iommu/", unit, "/intel-iommu/cap"));
  uint64_t value = 0;
  if (!cap.ok() || !absl::SimpleHexAtoi(absl::StripAsciiWhitespace(*cap), &value)) {
    return kDefaultIovaBits;
  }
  const uint32_t mgaw = static_cast<uint32_t>((value >> 16) & 0x3f) + 1;
  return mgaw >= 32 && mgaw <= 64 ? mgaw : kDefaultIovaBits;
}

bool IsReservedForUsers(const ReservedRegion& region) {
  return region.type == "msi" || region.type == "reserved";
}

// The registry's domain id a group's RIDs show when the kernel disagrees with what was programmed.
constexpr DomainId kNoEntry = 0;

GroupHandoverOptions HandoverOptionsOf(const LinuxBackendOptions& options) {
  GroupHandoverOptions handover;
  handover.sysfs_root = options.sysfs_root;
  handover.dev_root = std::filesystem::path(options.vfio_dir).parent_path().string();
  handover.proc_root = options.proc_root;
  handover.sysfs_writer = options.sysfs_writer;
  handover.bind = options.bind;
  handover.node_timeout = options.handover_node_timeout;
  return handover;
}

ErrorMetadata GroupMetadataOf(int group_id, absl::string_view unit, Rid rid) {
  return {{"group_id", absl::StrCat(group_id)}, {"unit", std::string(unit)},
          {"rid", absl::StrCat(rid)}};
}

std::string DescribeHolders(int group_id, const std::vector<GroupHolder>& holders) {
  std::string detail = absl::StrCat("kernel group ", group_id, ":");
  for (const GroupHolder& holder : holders) {
    absl::StrAppend(&detail, " pid ", holder.pid, " (", holder.comm, ") uid ", holder.uid, ";");
  }
  return detail;
}

}  // namespace

// Whether `fd` (handed back by an FdKeeper) is an open `path`: a kept fd is adopted only for what
// its name says it is.
bool IsOpenFileOf(const UniqueFd& fd, const std::string& path) {
  char target[PATH_MAX];
  const std::string link = absl::StrCat("/proc/self/fd/", fd.get());
  const ssize_t n = ::readlink(link.c_str(), target, sizeof(target) - 1);
  return n > 0 && std::string(target, static_cast<size_t>(n)) == path;
}

absl::StatusOr<HostTopology> ReadHostTopology(const SysfsInventory& inventory) {
  HostTopology topology;
  ASSIGN_OR_RETURN(std::vector<IommuUnit> units, inventory.IommuUnits());
  std::map<std::string, size_t> unit_index;
  for (const IommuUnit& unit : units) {
    HostUnit host_unit;
    host_unit.name = unit.name;
    host_unit.caps.pgsize_bitmap = kPage4K | kPage2M | kPage1G;
    host_unit.caps.iova_bits = IovaBitsOf(inventory.root(), unit.name);
    host_unit.caps.reserved_regions.clear();
    unit_index[unit.name] = topology.units.size();
    topology.units.push_back(std::move(host_unit));
  }
  ASSIGN_OR_RETURN(std::vector<PciDeviceInfo> devices, inventory.PciDevices());
  std::map<int, std::vector<size_t>> members;  // kernel group -> indexes into topology.devices
  for (const PciDeviceInfo& pci : devices) {
    if (!pci.iommu_group.has_value() || unit_index.count(pci.iommu) == 0) continue;
    HostDevice device;
    device.unit = pci.iommu;
    device.name = pci.name;
    device.rid = pci.address.RequesterId();
    if (pci.dma_requester_id.has_value() && *pci.dma_requester_id != device.rid) {
      device.alias_rids.push_back(*pci.dma_requester_id);
    }
    device.kernel_group = *pci.iommu_group;
    device.driver = pci.driver;
    device.bridge = pci.IsBridge();
    members[device.kernel_group].push_back(topology.devices.size());
    topology.devices.push_back(std::move(device));
  }
  for (const auto& [group_id, indexes] : members) {
    // One RID every device of the kernel group carries, so the registry groups them as the kernel
    // does (DMA aliases already do it behind a bridge; a multi-function device without ACS needs it).
    Rid anchor = ~Rid{0};
    for (size_t i : indexes) {
      anchor = std::min(anchor, topology.devices[i].rid);
      for (Rid alias : topology.devices[i].alias_rids) anchor = std::min(anchor, alias);
    }
    for (size_t i : indexes) {
      HostDevice& device = topology.devices[i];
      if (device.rid != anchor && std::find(device.alias_rids.begin(), device.alias_rids.end(),
                                            anchor) == device.alias_rids.end()) {
        device.alias_rids.push_back(anchor);
      }
    }
    ASSIGN_OR_RETURN(IommuGroupInfo group, inventory.Group(group_id));
    UnitCaps& caps = topology.units[unit_index[topology.devices[indexes.front()].unit]].caps;
    for (const ReservedRegion& region : group.reserved_regions) {
      if (!IsReservedForUsers(region)) continue;
      const ::iommud::IovaRange range{region.start, region.end - region.start + 1};
      bool known = false;
      for (const ::iommud::IovaRange& have : caps.reserved_regions) {
        known = known || (have.start == range.start && have.size == range.size);
      }
      if (!known) caps.reserved_regions.push_back(range);
    }
  }
  for (HostUnit& unit : topology.units) {
    std::sort(unit.caps.reserved_regions.begin(), unit.caps.reserved_regions.end(),
              [](const ::iommud::IovaRange& a, const ::iommud::IovaRange& b) { return a.start < b.start; });
  }
  return topology;
}

absl::StatusOr<LinuxBackendOptions> ParseLinuxBackendOptions(const BackendOptions& options) {
  LinuxBackendOptions parsed;
  for (const auto& [key, value] : options) {
    if (key == "sysfs_root") {
      parsed.sysfs_root = value;
    } else if (key == "vfio_dir") {
      parsed.vfio_dir = value;
    } else if (key == "proc_root") {
      parsed.proc_root = value;
    } else if (key == "kmsg") {
      parsed.kmsg_path = value;
    } else if (key == "host_state_dir") {
      parsed.host_state_dir = value;
    } else if (key == "replaceable_drivers") {
      for (absl::string_view driver : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        parsed.bind.replaceable_drivers.insert(std::string(driver));
      }
    } else {
      return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidBackendOption,
                   absl::StrCat("unknown option '", key,
                                "' of the linux backend (known: sysfs_root, vfio_dir, proc_root, kmsg, "
                                "replaceable_drivers, host_state_dir)"),
                   {{"option", key}});
    }
  }
  return parsed;
}

absl::StatusOr<std::unique_ptr<LinuxBackend>> LinuxBackend::Create(
    const LinuxBackendOptions& options, const MemoryResolver* memory, FaultInjector* faults) {
  if (memory == nullptr) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kMissingMemoryResolver,
                 "the linux backend needs the registry's memory regions to map from");
  }
  // What a previous process left first: restored drivers are then what the inventory reads.
  std::unique_ptr<HostJournal> journal;
  std::vector<RecoveredGroup> recovered;
  // What a previous process kept in the FdKeeper: its groups' fds (only journaled groups: the
  // journal has the drivers to give back) and its containers.
  std::map<int, UniqueFd> kept_groups;
  std::map<DomainId, std::pair<ContainerName, UniqueFd>> kept_containers;
  if (options.fd_keeper != nullptr) {
    for (const std::string& name : options.fd_keeper->Untaken()) {
      std::optional<ContainerName> container = ParseContainerFdName(name);
      if (!container.has_value()) continue;
      UniqueFd fd = options.fd_keeper->TakeBack(name);
      // Not a container: closed here; the daemon drops what nobody adopted by name.
      if (!IsOpenFileOf(fd, absl::StrCat(options.vfio_dir, "/vfio"))) {
        (void)options.fd_keeper->Drop(name);
        continue;
      }
      kept_containers[container->domain] = {*container, std::move(fd)};
    }
  }
  if (!options.host_state_dir.empty()) {
    ASSIGN_OR_RETURN(journal, HostJournal::Open(options.host_state_dir));
    PciDriverBinder binder(options.sysfs_root);
    for (const auto& [id, record] : journal->previous()) {
      if (options.fd_keeper != nullptr) {
        UniqueFd kept = options.fd_keeper->TakeBack(GroupFdName(id));
        if (IsOpenFileOf(kept, absl::StrCat(options.vfio_dir, "/", id))) {
          kept_groups[id] = std::move(kept);  // still ours: adopted below, not restored
          continue;
        }
        // Another file under the group's name: not adopted, closed and dropped (the journal's
        // recovery below decides about the group as without the store).
        if (kept.valid()) (void)options.fd_keeper->Drop(GroupFdName(id));
      }
      RecoveredGroup outcome = RecoverJournaledGroup(record, binder, options.vfio_dir);
      if (outcome.outcome == RecoveredGroup::Outcome::kRestored ||
          outcome.outcome == RecoveredGroup::Outcome::kGone) {
        RETURN_IF_ERROR(journal->Remove(id));
      }  // held or not restored: the record stays, for the next check
      recovered.push_back(std::move(outcome));
    }
  }
  SysfsInventory inventory(options.sysfs_root);
  ASSIGN_OR_RETURN(HostTopology topology, ReadHostTopology(inventory));
  std::unique_ptr<LinuxBackend> backend(new LinuxBackend(options, memory, faults, std::move(topology)));
  backend->journal_ = std::move(journal);
  for (const RecoveredGroup& outcome : recovered) {
    if (outcome.outcome != RecoveredGroup::Outcome::kHeld) continue;
    auto group = backend->groups_.find(outcome.group);
    if (group == backend->groups_.end()) continue;
    MutexLock lock(&group->second->mu);
    group->second->held_elsewhere = true;
    group->second->held_record = backend->journal_->previous().at(outcome.group);
  }
  backend->recovered_ = std::move(recovered);
  for (auto& [id, kept] : kept_groups) {
    auto group = backend->groups_.find(id);
    if (group == backend->groups_.end()) {  // not on this host any more: closed and dropped
      (void)options.fd_keeper->Drop(GroupFdName(id));
      continue;
    }
    MutexLock lock(&group->second->mu);
    group->second->vfio = VfioGroup::Adopt(id, std::move(kept));
    group->second->bindings = backend->journal_->previous().at(id).bindings;
    group->second->state = GroupState::kClaimed;
    group->second->adopting = true;
  }
  for (auto& [id, kept] : kept_containers) {
    auto domain = std::make_shared<DomainRecord>(id, kept.first.unit, DomainType::kUnmanaged);
    {
      MutexLock lock(&domain->mu);
      domain->container = VfioContainer::Adopt(std::move(kept.second));
      domain->adopted = true;
    }
    MutexLock lock(&backend->tables_mu_);
    backend->domains_.emplace(id, std::move(domain));
  }
  if (!options.kmsg_path.empty()) {
    ASSIGN_OR_RETURN(backend->faults_, DmarFaultReader::Open(options.kmsg_path));
  }
  return backend;
}

LinuxBackend::LinuxBackend(const LinuxBackendOptions& options, const MemoryResolver* memory,
                           FaultInjector* faults, HostTopology topology)
    : options_(options), memory_(memory), injector_(faults), topology_(std::move(topology)),
      binder_(options.sysfs_root), handover_(HandoverOptionsOf(options)) {
  for (const HostDevice& device : topology_.devices) {
    std::shared_ptr<GroupRecord>& group = groups_[device.kernel_group];
    if (group == nullptr) group = std::make_shared<GroupRecord>(device.kernel_group, device.unit);
    group->devices.push_back(device.name);
    group->rids.insert(device.rid);
    group->rids.insert(device.alias_rids.begin(), device.alias_rids.end());
    groups_by_device_[device.name] = group;
  }
  for (const auto& [id, group] : groups_) {
    for (Rid rid : group->rids) groups_by_rid_[{group->unit, rid}] = group;
  }
}

LinuxBackend::~LinuxBackend() {
  // Give the host back what iommud still holds: containers and groups close with their fds; the
  // devices go back to their drivers.
  for (const auto& [id, group] : groups_) {
    MutexLock lock(&group->mu);
    // A handed-over group stays with its VMM (see the header comment).
    if (group->state != GroupState::kKernel && group->state != GroupState::kHandedOver) {
      (void)GiveBack(*group);
    }
  }
  // The containers close with this object: nothing kept of them may outlive it.
  MutexLock lock(&tables_mu_);
  for (const auto& [id, domain] : domains_) {
    if (domain->type == DomainType::kUnmanaged) DropFd(ContainerFdName(domain->unit, id));
  }
}

absl::Status LinuxBackend::KeepFd(const std::string& name, int fd) const {
  return options_.fd_keeper == nullptr ? absl::OkStatus() : options_.fd_keeper->Keep(name, fd);
}

void LinuxBackend::DropFd(const std::string& name) const {
  if (options_.fd_keeper != nullptr) (void)options_.fd_keeper->Drop(name);
}

absl::Status LinuxBackend::Hit(absl::string_view point) const {
  return injector_ == nullptr ? absl::OkStatus() : injector_->Hit(point);
}

absl::StatusOr<std::shared_ptr<LinuxBackend::GroupRecord>> LinuxBackend::FindGroup(
    absl::string_view unit, Rid rid) const {
  auto it = groups_by_rid_.find({std::string(unit), rid});
  if (it == groups_by_rid_.end()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kRidNotInKernelGroup,
                 absl::StrCat("no IOMMU group of ", unit, " has requester id ",
                              RequesterIdToString(static_cast<uint16_t>(rid))),
                 {{"unit", std::string(unit)}, {"rid", absl::StrCat(rid)}});
  }
  return it->second;
}

std::shared_ptr<LinuxBackend::DomainRecord> LinuxBackend::FindDomain(DomainId id) const {
  MutexLock lock(&tables_mu_);
  auto it = domains_.find(id);
  return it == domains_.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<LinuxBackend::DomainRecord>> LinuxBackend::DomainOrError(
    DomainId id) const {
  std::shared_ptr<DomainRecord> domain = FindDomain(id);
  if (domain == nullptr) {
    return Error(absl::StatusCode::kNotFound, reason::kDomainNotFound,
                 absl::StrCat("no domain ", id), {{"domain_id", absl::StrCat(id)}});
  }
  return domain;
}

absl::StatusOr<std::shared_ptr<LinuxBackend::DomainRecord>> LinuxBackend::UserDomainOrError(
    DomainId id) const {
  ASSIGN_OR_RETURN(std::shared_ptr<DomainRecord> domain, DomainOrError(id));
  if (domain->type != DomainType::kUnmanaged) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kKernelManagedDomain,
                 absl::StrCat("domain ", id, " is ", DomainTypeName(domain->type),
                              ": the kernel manages it"),
                 {{"domain_id", absl::StrCat(id)}});
  }
  return domain;
}

LinuxBackend::GroupState LinuxBackend::StateFor(const DomainRecord& domain) {
  switch (domain.type) {
    case DomainType::kUnmanaged:
      return GroupState::kAttached;
    case DomainType::kBlocked:
      return GroupState::kClaimed;
    default:
      return GroupState::kKernel;
  }
}

absl::Status LinuxBackend::AddUnit(absl::string_view unit, const UnitCaps& caps) {
  const bool on_host = std::any_of(topology_.units.begin(), topology_.units.end(),
                                   [&](const HostUnit& u) { return u.name == unit; });
  if (!on_host) {
    return Error(absl::StatusCode::kNotFound, reason::kUnitNotOnHost,
                 absl::StrCat("this host has no IOMMU unit '", unit, "' (/sys/class/iommu)"),
                 {{"unit", std::string(unit)}});
  }
  MutexLock lock(&tables_mu_);
  auto it = units_.find(unit);
  if (it != units_.end()) return UnitExists(unit, it->second, caps);
  units_.emplace(std::string(unit), caps);
  return absl::OkStatus();
}

absl::Status LinuxBackend::AllocDomain(absl::string_view unit, DomainId id, DomainType type) {
  {
    MutexLock lock(&tables_mu_);
    if (units_.find(unit) == units_.end()) {
      return Error(absl::StatusCode::kNotFound, reason::kUnitNotFound,
                   absl::StrCat("no unit '", unit, "'"), {{"unit", std::string(unit)}});
    }
    if (domains_.count(id) != 0) {
      return Error(absl::StatusCode::kAlreadyExists, reason::kDomainExists,
                   absl::StrCat("domain ", id, " exists"), {{"domain_id", absl::StrCat(id)}});
    }
  }
  auto domain = std::make_shared<DomainRecord>(id, std::string(unit), type);
  if (type == DomainType::kUnmanaged) {
    ASSIGN_OR_RETURN(std::unique_ptr<VfioContainer> container,
                     VfioContainer::Open(absl::StrCat(options_.vfio_dir, "/vfio")));
    // Kept before the domain exists: a domain the registry acknowledges survives a crash.
    RETURN_IF_ERROR(KeepFd(ContainerFdName(unit, id), container->fd()));
    MutexLock lock(&domain->mu);
    domain->container = std::move(container);
  }
  MutexLock lock(&tables_mu_);
  if (!domains_.emplace(id, domain).second) {
    return Error(absl::StatusCode::kAlreadyExists, reason::kDomainExists,
                 absl::StrCat("domain ", id, " exists"), {{"domain_id", absl::StrCat(id)}});
  }
  return absl::OkStatus();
}

absl::Status LinuxBackend::FreeDomain(DomainId id) {
  ASSIGN_OR_RETURN(std::shared_ptr<DomainRecord> domain, DomainOrError(id));
  for (const auto& [group_id, group] : groups_) {
    MutexLock lock(&group->mu);
    for (const auto& [rid, on] : group->rid_domains) {
      if (on == id) {
        return Error(absl::StatusCode::kFailedPrecondition, reason::kDomainInUse,
                     absl::StrCat("domain ", id, " is in use by group ", group_id),
                     {{"domain_id", absl::StrCat(id)}, {"group_id", absl::StrCat(group_id)}});
      }
    }
  }
  {
    MutexLock lock(&tables_mu_);
    domains_.erase(id);  // the container closes with the last reference
  }
  if (domain->type == DomainType::kUnmanaged) DropFd(ContainerFdName(domain->unit, id));
  return absl::OkStatus();
}

JournaledGroup LinuxBackend::IntendedBinding(const GroupRecord& group) const {
  JournaledGroup record;
  record.group = group.id;
  record.phase = JournaledGroup::Phase::kBinding;
  SysfsInventory inventory(options_.sysfs_root);
  for (const std::string& name : group.devices) {
    absl::StatusOr<PciDeviceInfo> device = inventory.PciDevice(name);
    if (!device.ok() || device->IsBridge()) continue;
    DriverBinding binding;
    binding.device = name;
    binding.previous_driver = device->driver;
    binding.previous_override = device->driver_override;
    binding.changed = device->driver != kVfioPciDriver;
    record.bindings.push_back(std::move(binding));
  }
  return record;
}

absl::Status LinuxBackend::RecheckHeld(GroupRecord& group) {
  RecoveredGroup now = RecoverJournaledGroup(group.held_record, binder_, options_.vfio_dir);
  if (now.outcome == RecoveredGroup::Outcome::kHeld) {
    return Error(absl::StatusCode::kUnavailable, reason::kGroupBusy,
                 absl::StrCat("group ", group.id, " is held outside iommud: ", now.detail),
                 {{"group_id", absl::StrCat(group.id)},
                  {"path", absl::StrCat(options_.vfio_dir, "/", group.id)}});
  }
  if (now.outcome == RecoveredGroup::Outcome::kRestoreFailed) return now.status;
  group.held_elsewhere = false;
  group.held_record = JournaledGroup();
  return journal_ != nullptr ? journal_->Remove(group.id) : absl::OkStatus();
}

absl::Status LinuxBackend::Claim(GroupRecord& group) {
  if (group.held_elsewhere) RETURN_IF_ERROR(RecheckHeld(group));
  RETURN_IF_ERROR(Hit("host.bind"));
  // Write-ahead: the journal names the drivers about to be replaced before any is.
  if (journal_ != nullptr) RETURN_IF_ERROR(journal_->Put(IntendedBinding(group)));
  absl::StatusOr<std::vector<DriverBinding>> bound =
      binder_.BindGroupToVfio(group.id, options_.bind);
  if (!bound.ok()) {
    if (journal_ != nullptr) (void)journal_->Remove(group.id);  // the binder put them back
    return bound.status();
  }
  std::vector<DriverBinding> bindings = *std::move(bound);
  absl::Status injected = Hit("host.open_group");
  absl::StatusOr<std::unique_ptr<VfioGroup>> opened =
      injected.ok() ? VfioGroup::Open(group.id, options_.vfio_dir)
                    : absl::StatusOr<std::unique_ptr<VfioGroup>>(injected);
  if (opened.ok() && journal_ != nullptr) {
    JournaledGroup claimed;
    claimed.group = group.id;
    claimed.phase = JournaledGroup::Phase::kClaimed;
    claimed.bindings = bindings;
    absl::Status recorded = journal_->Put(claimed);
    if (!recorded.ok()) opened = recorded;  // closes the group below
  }
  if (opened.ok()) {
    absl::Status kept = KeepFd(GroupFdName(group.id), (*opened)->fd());
    if (!kept.ok()) opened = kept;  // closes the group below
  }
  if (!opened.ok()) {
    const absl::Status restored = binder_.RestoreAll(bindings);
    if (journal_ != nullptr && restored.ok()) (void)journal_->Remove(group.id);
    return opened.status();
  }
  group.bindings = std::move(bindings);
  group.vfio = std::move(*opened);
  group.state = GroupState::kClaimed;
  group.taken_back = false;
  return absl::OkStatus();
}

absl::Status LinuxBackend::Unclaim(GroupRecord& group) {
  RETURN_IF_ERROR(Hit("host.restore"));  // before anything: a failed release changes nothing
  return GiveBack(group);
}

absl::Status LinuxBackend::GiveBack(GroupRecord& group) {
  if (group.state == GroupState::kAttached) RETURN_IF_ERROR(Leave(group));
  if (group.vfio != nullptr) DropFd(GroupFdName(group.id));
  group.vfio.reset();  // closing the group ends the DMA ownership
  group.adopting = false;
  group.adopted = false;
  absl::Status restored = binder_.RestoreAll(group.bindings);
  // Not restored: the record stays, and the next start tries again.
  if (restored.ok() && journal_ != nullptr) restored = journal_->Remove(group.id);
  group.bindings.clear();
  group.state = GroupState::kKernel;
  return restored;
}

absl::Status LinuxBackend::Enter(GroupRecord& group, const std::shared_ptr<DomainRecord>& domain) {
  MutexLock lock(&domain->mu);
  const bool first = domain->attached_groups.empty();
  RETURN_IF_ERROR(Hit("host.set_container"));
  RETURN_IF_ERROR(domain->container->Attach(*group.vfio));
  if (domain->adopted && !domain->synced) {
    // A kept container may still hold the previous process's mappings: synchronized, not replayed.
    SyncAdopted(*domain);
  } else if (first) {  // a fresh IOMMU in the container: put the domain's mappings back
    for (const auto& [iova, mapping] : domain->mappings) {
      absl::Status mapped = MapIntoContainer(*domain, iova, mapping);
      if (!mapped.ok()) {
        (void)domain->container->Detach(*group.vfio);  // drops what was replayed
        return mapped;
      }
    }
  }
  domain->attached_groups.insert(group.id);
  group.container_domain = domain;
  group.state = GroupState::kAttached;
  return absl::OkStatus();
}

absl::Status LinuxBackend::Leave(GroupRecord& group) {
  std::shared_ptr<DomainRecord> domain = group.container_domain;
  MutexLock lock(&domain->mu);
  RETURN_IF_ERROR(Hit("host.unset_container"));
  absl::Status detached = domain->container->Detach(*group.vfio);
  // EBUSY while a device fd is open. The last copy may be closing just now (the fd channel closes
  // the daemon's own copy right after sending it, possibly after the owner already closed its
  // copy and called here): give it a moment before telling the owner to close it.
  for (int retry = 0; retry < 20 && detached.code() == absl::StatusCode::kUnavailable; ++retry) {
    absl::SleepFor(absl::Milliseconds(5));
    detached = domain->container->Detach(*group.vfio);
  }
  // EINVAL: the group is in no container any more. The kernel took it out itself when the last
  // VFIO device of the group went away (removed or unplugged: vfio_device_remove_group), and
  // dropped the container's IOMMU with it if it was the last group: only our books are left.
  if (detached.code() == absl::StatusCode::kInvalidArgument) detached = absl::OkStatus();
  if (!detached.ok()) {
    if (detached.code() == absl::StatusCode::kUnavailable) {  // EBUSY: a device fd is open
      return Error(absl::StatusCode::kFailedPrecondition, reason::kDeviceFdOpen,
                   absl::StrCat("group ", group.id, " cannot leave domain ", domain->id,
                                ": a VFIO device fd of it is still open (close it first)"),
                   {{"group_id", absl::StrCat(group.id)},
                    {"domain_id", absl::StrCat(domain->id)}});
    }
    return detached;
  }
  domain->attached_groups.erase(group.id);
  group.container_domain.reset();
  group.state = GroupState::kClaimed;
  return absl::OkStatus();
}

absl::Status LinuxBackend::MoveTo(GroupRecord& group, const std::shared_ptr<DomainRecord>& domain) {
  if (group.adopting) RETURN_IF_ERROR(ConfirmAdopted(group, domain));
  const GroupState target = StateFor(*domain);
  if (target == group.state &&
      (target != GroupState::kAttached || group.container_domain == domain)) {
    return absl::OkStatus();
  }
  if (target == GroupState::kKernel) return Unclaim(group);
  const bool was_kernel = group.state == GroupState::kKernel;
  std::shared_ptr<DomainRecord> previous = group.container_domain;
  if (was_kernel) RETURN_IF_ERROR(Claim(group));
  if (group.state == GroupState::kAttached) {
    absl::Status left = Leave(group);
    if (!left.ok()) return left;  // nothing changed (a claimed group stays attached)
  }
  if (target == GroupState::kClaimed) return absl::OkStatus();
  absl::Status entered = Enter(group, domain);
  if (entered.ok()) return entered;
  // Put the group back where it was.
  if (previous != nullptr) {
    (void)Enter(group, previous);
  } else if (was_kernel) {
    (void)GiveBack(group);
  }
  return entered;
}

absl::Status LinuxBackend::AttachRid(absl::string_view unit, Rid rid, DomainId domain_id) {
  ASSIGN_OR_RETURN(std::shared_ptr<GroupRecord> group, FindGroup(unit, rid));
  ASSIGN_OR_RETURN(std::shared_ptr<DomainRecord> domain, DomainOrError(domain_id));
  if (domain->unit != unit) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kDomainOfOtherUnit,
                 absl::StrCat("domain ", domain_id, " belongs to unit ", domain->unit),
                 {{"domain_id", absl::StrCat(domain_id)}, {"unit", std::string(unit)}});
  }
  MutexLock lock(&group->mu);
  if (group->state == GroupState::kHandedOver && StateFor(*domain) != GroupState::kKernel) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupHandedOver,
                 absl::StrCat("kernel group ", group->id,
                              " is handed over to a VMM: only kernel-managed domains until it is "
                              "taken back"),
                 GroupMetadataOf(group->id, unit, rid));
  }
  auto [it, inserted] = group->rid_domains.try_emplace(rid, domain_id);
  // A handed-over group's RIDs follow the registry between kernel-managed domains; the group
  // itself stays with its VMM.
  if (group->state == GroupState::kHandedOver) return absl::OkStatus();
  const DomainId before = inserted ? kNoEntry : it->second;
  it->second = domain_id;
  // The kernel moves whole groups: move it once every programmed RID of the group points at a
  // domain of the same kind. Until then (the registry switching a group RID by RID, or releasing
  // one device's own RIDs) the group stays where it is.
  for (const auto& [other_rid, other_id] : group->rid_domains) {
    std::shared_ptr<DomainRecord> other = FindDomain(other_id);
    if (other == nullptr || StateFor(*other) != StateFor(*domain) ||
        (StateFor(*domain) == GroupState::kAttached && other_id != domain_id)) {
      return absl::OkStatus();
    }
  }
  absl::Status moved = MoveTo(*group, domain);
  if (!moved.ok()) {
    if (inserted) {
      group->rid_domains.erase(rid);
    } else {
      group->rid_domains[rid] = before;
    }
  }
  return moved;
}

absl::Status LinuxBackend::ReleaseRid(absl::string_view unit, Rid rid) {
  ASSIGN_OR_RETURN(std::shared_ptr<GroupRecord> group, FindGroup(unit, rid));
  MutexLock lock(&group->mu);
  group->rid_domains.erase(rid);
  // The last RID of the group released: nothing of it is programmed any more, give it back.
  if (group->rid_domains.empty() && group->state != GroupState::kKernel &&
      group->state != GroupState::kHandedOver) {
    return Unclaim(*group);
  }
  return absl::OkStatus();
}

absl::Status LinuxBackend::MapIntoContainer(DomainRecord& domain, uint64_t iova,
                                            const ShadowMapping& mapping) {
  ASSIGN_OR_RETURN(void* vaddr, memory_->Resolve(mapping.paddr, mapping.size));
  RETURN_IF_ERROR(Hit("host.map_dma"));
  uint32_t access = 0;
  if ((mapping.prot & kProtRead) != 0) access |= kDmaRead;
  if ((mapping.prot & kProtWrite) != 0) access |= kDmaWrite;
  return domain.container->Map(iova, vaddr, mapping.size, static_cast<DmaAccess>(access));
}

absl::Status LinuxBackend::Map(DomainId domain_id, uint64_t iova, uint64_t paddr, uint64_t size,
                               uint32_t prot) {
  ASSIGN_OR_RETURN(std::shared_ptr<DomainRecord> domain, UserDomainOrError(domain_id));
  // Resolve first: a range no registered memory backs is refused even while nothing is attached.
  ASSIGN_OR_RETURN(void* unused, memory_->Resolve(paddr, size));
  (void)unused;
  MutexLock lock(&domain->mu);
  auto next = domain->mappings.lower_bound(iova);
  const bool overlaps_next = next != domain->mappings.end() && next->first < iova + size;
  const bool overlaps_previous =
      next != domain->mappings.begin() && std::prev(next)->first + std::prev(next)->second.size > iova;
  if (overlaps_next || overlaps_previous) {
    return Error(absl::StatusCode::kAlreadyExists, reason::kMappingExists,
                 absl::StrCat("IOVA ", Hex(iova), "+", Hex(size), " overlaps a mapping"),
                 {{"domain_id", absl::StrCat(domain_id)}, {"iova", Hex(iova)}});
  }
  const ShadowMapping mapping{paddr, size, prot};
  if (!domain->attached_groups.empty()) {
    RETURN_IF_ERROR(MapIntoContainer(*domain, iova, mapping));
  }
  domain->mappings.emplace(iova, mapping);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> LinuxBackend::Unmap(DomainId domain_id, uint64_t iova, uint64_t size) {
  ASSIGN_OR_RETURN(std::shared_ptr<DomainRecord> domain, UserDomainOrError(domain_id));
  MutexLock lock(&domain->mu);
  // Whole mappings only (the registry never splits one; VFIO type1v2 refuses to).
  auto first = domain->mappings.lower_bound(iova);
  if (first != domain->mappings.begin() &&
      std::prev(first)->first + std::prev(first)->second.size > iova) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kUnmapSplit,
                 absl::StrCat("IOVA ", Hex(iova), " is inside a mapping"),
                 {{"domain_id", absl::StrCat(domain_id)}, {"iova", Hex(iova)}});
  }
  auto last = first;
  uint64_t bytes = 0;
  for (; last != domain->mappings.end() && last->first < iova + size; ++last) {
    if (last->first + last->second.size > iova + size) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kUnmapSplit,
                   absl::StrCat("IOVA ", Hex(iova + size), " is inside a mapping"),
                   {{"domain_id", absl::StrCat(domain_id)}, {"iova", Hex(iova)}});
    }
    bytes += last->second.size;
  }
  if (bytes == 0) return uint64_t{0};
  if (!domain->attached_groups.empty()) {
    RETURN_IF_ERROR(Hit("host.unmap_dma"));
    ASSIGN_OR_RETURN(uint64_t unmapped, domain->container->Unmap(iova, size));
    (void)unmapped;  // the kernel's count; the shadow's is the same whole mappings
  }
  domain->mappings.erase(first, last);
  return bytes;
}

absl::Status LinuxBackend::InvalidateIotlb(DomainId domain_id, uint64_t, uint64_t) {
  // VFIO_IOMMU_UNMAP_DMA returns only after the IOMMU's caches are flushed: nothing to do.
  return DomainOrError(domain_id).status();
}

Translation LinuxBackend::Translate(absl::string_view unit, Rid rid, uint64_t iova,
                                    uint32_t access) {
  Translation translation;
  absl::StatusOr<std::shared_ptr<GroupRecord>> group = FindGroup(unit, rid);
  if (!group.ok()) {
    translation.fault = FaultReason::kUnknownRid;
    return translation;
  }
  std::shared_ptr<DomainRecord> domain;
  {
    MutexLock lock(&(*group)->mu);
    auto it = (*group)->rid_domains.find(rid);
    if (it == (*group)->rid_domains.end()) {
      translation.fault = FaultReason::kUnknownRid;
      return translation;
    }
    domain = FindDomain(it->second);
  }
  if (domain == nullptr || domain->type == DomainType::kBlocked) {
    translation.fault = FaultReason::kBlocked;
    return translation;
  }
  translation.domain = domain->id;
  if (domain->type != DomainType::kUnmanaged) {  // the kernel's own domain: identity as far as
    translation.paddr = iova;                    // iommud can tell (it cannot read it)
    return translation;
  }
  MutexLock lock(&domain->mu);
  auto next = domain->mappings.upper_bound(iova);
  if (next == domain->mappings.begin() ||
      std::prev(next)->first + std::prev(next)->second.size <= iova) {
    translation.fault = FaultReason::kNoMapping;
    return translation;
  }
  const auto& [start, mapping] = *std::prev(next);
  if ((mapping.prot & access) != access) {
    translation.fault = FaultReason::kPermission;
    return translation;
  }
  translation.paddr = mapping.paddr + (iova - start);
  return translation;
}

std::vector<FaultRecord> LinuxBackend::DrainFaults() {
  std::vector<FaultRecord> records;
  if (faults_ == nullptr) return records;
  for (const DmarFault& fault : faults_->Drain()) {
    FaultRecord record;
    record.rid = fault.rid;
    record.iova = fault.iova;
    record.access = fault.access;
    record.time_unix_nanos = fault.time_unix_nanos;
    record.reason = FaultReason::kNoMapping;
    for (const HostUnit& unit : topology_.units) {
      if (groups_by_rid_.count({unit.name, fault.rid}) != 0) record.unit = unit.name;
    }
    // What the kernel calls "PTE Read/Write access is not set" is a missing mapping unless the
    // domain maps the address without that access.
    const Translation seen = Translate(record.unit, fault.rid, fault.iova, fault.access);
    if (seen.fault == FaultReason::kPermission || seen.fault == FaultReason::kBlocked) {
      record.reason = seen.fault;
    }
    records.push_back(std::move(record));
  }
  return records;
}

absl::StatusOr<RidEntry> LinuxBackend::ReadRid(absl::string_view unit, Rid rid) {
  ASSIGN_OR_RETURN(std::shared_ptr<GroupRecord> group, FindGroup(unit, rid));
  MutexLock lock(&group->mu);
  RidEntry entry;
  entry.rid = rid;
  auto it = group->rid_domains.find(rid);
  if (it == group->rid_domains.end()) return entry;
  entry.domain = it->second;
  if (group->held_elsewhere) {  // the kernel has it in a container no one here knows
    entry.domain = kHeldElsewhereDomain;
    return entry;
  }
  // Ask the kernel where it can tell: an attached group must still be in a container.
  if (group->state == GroupState::kAttached) {
    absl::StatusOr<bool> in_container = group->vfio->HasContainer();
    if (!in_container.ok() || !*in_container) entry.domain = kNoEntry;
  }
  return entry;
}

absl::StatusOr<std::vector<RidEntry>> LinuxBackend::ReadRids(absl::string_view unit) {
  std::vector<RidEntry> entries;
  for (const auto& [key, group] : groups_by_rid_) {
    if (key.first != unit) continue;
    ASSIGN_OR_RETURN(RidEntry entry, ReadRid(unit, key.second));
    if (entry.domain != kNoEntry) entries.push_back(entry);
  }
  return entries;  // groups_by_rid_ is ordered by (unit, RID)
}

std::vector<DomainId> LinuxBackend::ReadDomains() {
  MutexLock lock(&tables_mu_);
  std::vector<DomainId> ids;
  for (const auto& [id, domain] : domains_) ids.push_back(id);
  return ids;
}

absl::StatusOr<std::vector<Mapping>> LinuxBackend::ReadMappings(DomainId domain_id) {
  ASSIGN_OR_RETURN(std::shared_ptr<DomainRecord> domain, DomainOrError(domain_id));
  UnitCaps caps;
  {
    MutexLock lock(&tables_mu_);
    auto unit = units_.find(domain->unit);
    if (unit != units_.end()) caps = unit->second;
  }
  std::vector<Mapping> leaves;
  MutexLock lock(&domain->mu);
  for (const auto& entry : domain->mappings) {
    const ShadowMapping& mapping = entry.second;
    // The leaves a page table would hold; VFIO does not show its own, so the shadow's are cut the
    // way the registry expects them.
    (void)MapAsLeaves(
        caps.pgsize_bitmap, entry.first, mapping.paddr, mapping.size,
        [&](uint64_t at, uint64_t to, int level) {
          leaves.push_back(Mapping{at, to, LeafBytes(level), mapping.prot});
          return absl::OkStatus();
        },
        [](uint64_t, int) {});
  }
  return leaves;
}

absl::Status LinuxBackend::CanReplaceDomain(absl::string_view unit, Rid rid) {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kReplaceNotAtomic,
               "VFIO type1 moves a group between containers only by VFIO_GROUP_UNSET_CONTAINER and "
               "VFIO_GROUP_SET_CONTAINER, a window where the group has no IOMMU context; a replace "
               "without it needs iommufd (IOMMU_HWPT replace), which this backend does not use: "
               "detach and attach instead",
               {{"unit", std::string(unit)}, {"rid", absl::StrCat(rid)}});
}

absl::StatusOr<std::optional<std::vector<::iommud::IovaRange>>> LinuxBackend::KernelIovaRanges(
    DomainId id) {
  std::shared_ptr<DomainRecord> domain = FindDomain(id);
  if (domain == nullptr) return std::nullopt;
  MutexLock lock(&domain->mu);
  // VFIO_IOMMU_GET_INFO works only once a group has set the container's IOMMU.
  if (domain->container == nullptr || domain->attached_groups.empty()) return std::nullopt;
  ASSIGN_OR_RETURN(DmaDomainInfo info, domain->container->Info());
  if (info.iova_ranges.empty()) return std::nullopt;
  std::vector<::iommud::IovaRange> ranges;
  for (const host::IovaRange& range : info.iova_ranges) {
    if (range.end < range.start) continue;
    // [start, end] inclusive; [0, 2^64 - 1] loses its last byte (no aperture reaches it).
    const uint64_t size = range.end - range.start + 1;
    ranges.push_back({range.start, size == 0 ? ~uint64_t{0} : size});
  }
  return ranges;
}

BackendStats LinuxBackend::Stats() {
  BackendStats stats;
  {
    MutexLock lock(&tables_mu_);
    stats.domains = domains_.size();
  }
  for (const auto& [id, group] : groups_) {
    MutexLock lock(&group->mu);
    stats.programmed_rids += group->rid_domains.size();
  }
  return stats;
}

absl::Status LinuxBackend::HandOverGroup(absl::string_view unit, Rid rid, uint32_t uid,
                                         uint32_t gid) {
  ASSIGN_OR_RETURN(std::shared_ptr<GroupRecord> group, FindGroup(unit, rid));
  MutexLock lock(&group->mu);
  ErrorMetadata metadata = GroupMetadataOf(group->id, unit, rid);
  if (group->state == GroupState::kHandedOver) {
    metadata["uid"] = absl::StrCat(group->handover->uid);
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupAlreadyHandedOver,
                 absl::StrCat("kernel group ", group->id, " is already handed over to uid ",
                              group->handover->uid),
                 metadata);
  }
  if (group->state != GroupState::kKernel) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupBusy,
                 absl::StrCat("kernel group ", group->id,
                              " is held by iommud (claimed or attached): release it first"),
                 metadata);
  }
  RETURN_IF_ERROR(Hit("host.handover"));  // before anything: a failed hand-over changes nothing
  ASSIGN_OR_RETURN(HandoverRecord record, handover_.HandOver(group->id, uid, gid));
  group->handover = std::move(record);
  group->state = GroupState::kHandedOver;
  group->taken_back = false;
  return absl::OkStatus();
}

absl::Status LinuxBackend::TakeBackGroup(absl::string_view unit, Rid rid, bool force) {
  ASSIGN_OR_RETURN(std::shared_ptr<GroupRecord> group, FindGroup(unit, rid));
  MutexLock lock(&group->mu);
  if (group->state != GroupState::kHandedOver) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupNotHandedOver,
                 absl::StrCat("kernel group ", group->id, " is not handed over"),
                 GroupMetadataOf(group->id, unit, rid));
  }
  RETURN_IF_ERROR(Hit("host.take_back"));  // before anything: a failed take-back changes nothing
  RETURN_IF_ERROR(handover_.TakeBack(*group->handover, force));
  group->handover.reset();
  group->state = GroupState::kKernel;
  group->taken_back = true;
  return absl::OkStatus();
}

std::vector<HandoverLeak> LinuxBackend::AuditHandovers() {
  std::vector<HandoverLeak> leaks;
  for (const auto& [id, group] : groups_) {
    std::optional<uid_t> vmm_uid;
    {
      MutexLock lock(&group->mu);
      if (group->state == GroupState::kHandedOver) {
        vmm_uid = group->handover->uid;
      } else if (!group->taken_back) {
        continue;
      }
    }
    // Outside the group's lock: /proc is scanned, which may take a while.
    absl::StatusOr<std::vector<GroupHolder>> holders = handover_.GroupHolders(id);
    if (!holders.ok()) continue;  // PROC_SCAN_FAILED: nothing can be said (not root)
    std::vector<GroupHolder> leaked;
    for (const GroupHolder& holder : *holders) {
      if (!vmm_uid.has_value() || holder.uid != *vmm_uid) leaked.push_back(holder);
    }
    if (leaked.empty()) continue;
    HandoverLeak leak;
    leak.kind = vmm_uid.has_value() ? HandoverLeak::Kind::kHeldByOtherUid
                                    : HandoverLeak::Kind::kHeldAfterTakeBack;
    leak.unit = group->unit;
    leak.rid = *group->rids.begin();
    leak.detail = DescribeHolders(id, leaked);
    leaks.push_back(std::move(leak));
  }
  return leaks;
}

bool LinuxBackend::HoldsGroupOf(absl::string_view device) const {
  auto it = groups_by_device_.find(device);
  if (it == groups_by_device_.end()) return false;
  MutexLock lock(&it->second->mu);
  return it->second->state != GroupState::kKernel;
}

absl::StatusOr<UniqueFd> LinuxBackend::DeviceFd(absl::string_view device) {
  auto it = groups_by_device_.find(device);
  if (it == groups_by_device_.end()) {
    return Error(absl::StatusCode::kNotFound, reason::kDeviceNotFound,
                 absl::StrCat("no device '", device, "' on this host's IOMMU groups"),
                 {{"device", std::string(device)}});
  }
  GroupRecord& group = *it->second;
  MutexLock lock(&group.mu);
  if (group.state != GroupState::kAttached) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupNotAttached,
                 absl::StrCat("group ", group.id, " of ", device,
                              " is not attached to a domain: VFIO gives no device fd before"),
                 {{"device", std::string(device)}, {"group_id", absl::StrCat(group.id)}});
  }
  return group.vfio->GetDeviceFd(device);
}

absl::StatusOr<std::unique_ptr<IommuBackend>> NewLinuxBackend(const BackendOptions& options,
                                                              const BackendHooks& hooks) {
  ASSIGN_OR_RETURN(LinuxBackendOptions parsed, ParseLinuxBackendOptions(options));
  parsed.fd_keeper = hooks.fd_keeper;
  ASSIGN_OR_RETURN(std::unique_ptr<LinuxBackend> backend,
                   LinuxBackend::Create(parsed, hooks.memory, hooks.faults));
  return std::unique_ptr<IommuBackend>(std::move(backend));
}

}  // namespace host
}  // namespace iommud
