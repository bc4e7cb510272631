// LinuxBackend (`--backend=linux`): iommud's IommuBackend on a real Linux host, through VFIO's
// group/container API (type1v2).
//
// The registry speaks requester ids (RIDs) and domains; the kernel lets userspace act only on whole
// IOMMU groups. This backend keeps one state per kernel group and moves it when the registry points
// any RID of the group at a domain of another kind (the registry always moves all RIDs of a group
// together, under the group's lock):
//
//   registry domain type       kernel state of the group
//   DMA, DMA_FQ, IDENTITY      kKernel:   its devices on their own drivers, iommud holds nothing (the
//                                         kernel's default domain; iommud never programs it)
//   BLOCKED                    kClaimed:  every device bound to vfio-pci (the previous driver
//                                         remembered), /dev/vfio/N open in iommud: the kernel's DMA
//                                         ownership, DMA blocked
//   UNMANAGED (user domains)   kAttached: claimed, and the group set into the domain's VFIO
//                                         container (type1v2); mappings are VFIO_IOMMU_MAP_DMA of
//                                         registered process memory (core/memory_resolver.h)
//   (HandOverGroup; the RIDs   kHandedOver: every device bound to vfio-pci and /dev/vfio/N
//    stay on DMA/DMA_FQ)                    chown'ed to a VMM's uid:gid (GroupHandover), iommud NOT
//                                         holding it open: the VMM opens it (VFIO group open is
//                                         exclusive) and sets its own container. AttachRid to any
//                                         but a kernel-managed domain is refused (GROUP_HANDED_OVER)
//                                         until TakeBackGroup returns the group to kKernel.
//
// Hand-overs are audited (AuditHandovers): a handed-over group held open by a process whose uid is
// not the VMM's, or a group taken back that some process still holds open, is a leak. Handed-over
// groups are left as they are when the backend is destroyed (a VMM outlives iommud, as libvirt's
// do libvirtd) and are not persisted: a restarted daemon does not know them.
//
// Every transition is all or nothing: a failed bind, open or attach puts back what it changed.
// Leaving kAttached needs VFIO_GROUP_UNSET_CONTAINER, which the kernel refuses (EBUSY) while a device
// fd of the group is open: then the group stays where it is and the call fails (DEVICE_FD_OPEN), so
// the registry records the leak instead of a driver unbind hanging until the fd is closed.
// The kernel drops a container's mappings when its last group leaves; the backend keeps a shadow of
// each user domain's mappings and replays it when a group enters the empty container again.
//
// Inventory comes from sysfs once, at creation (HostTopology): the units of /sys/class/iommu, the
// groups of /sys/kernel/iommu_groups and their PCI devices. A device's RIDs are its own and the DMA
// alias the kernel derives (a conventional PCI bridge's); devices of one kernel group that share no
// RID (a multi-function device without ACS) are given the group's first RID as an alias, so the
// registry puts them in one group too.
//
// Translate is a model (what the group's domain would do with the access); real faults are the
// kernel's DMAR fault reports, read from /dev/kmsg by DrainFaults (DmarFaultReader).
//
// Thread safety: all methods are thread-safe. Lock order: a group's mutex, then a domain's mutex,
// then tables_mu_ (a leaf). Calls for different groups never wait for each other except on the
// shared domain they attach to.
#ifndef IOMMUD_CORE_HOST_LINUX_BACKEND_H_
#define IOMMUD_CORE_HOST_LINUX_BACKEND_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/backend/backend_factory.h"
#include "core/backend/iommu_backend.h"
#include "core/host/device_fd_provider.h"
#include "core/host/dmar_fault_reader.h"
#include "core/host/fd_keeper.h"
#include "core/host/group_handover.h"
#include "core/host/host_journal.h"
#include "core/host/host_recovery.h"
#include "core/host/pci_driver_binder.h"
#include "core/host/sysfs_inventory.h"
#include "core/host/vfio_container.h"
#include "core/host/vfio_group.h"
#include "core/fault_injector.h"
#include "core/memory_resolver.h"

namespace iommud {
namespace host {

// What the host has, as the registry should see it (the daemon probes it in this order).
struct HostDevice {
  std::string unit;             // "dmar0"
  std::string name;             // "0000:00:02.0"
  Rid rid = 0;                  // its own requester id
  std::vector<Rid> alias_rids;  // see the header comment
  int kernel_group = -1;
  std::string driver;           // bound kernel driver at inventory time ("" when none)
  bool bridge = false;
};
struct HostUnit {
  std::string name;
  UnitCaps caps;
};
struct HostTopology {
  std::vector<HostUnit> units;
  std::vector<HostDevice> devices;  // in PCI address order
};

// Reads the host's topology from sysfs (only devices in an IOMMU group behind a known unit).
// UnitCaps: 4K|2M|1G pages; the IOVA width from the unit's capability register (VT-d MGAW, 39 bits
// when unreadable); reserved regions: the msi and reserved regions of its groups (direct-relaxable
// regions are the kernel's business and not reserved for userspace domains).
absl::StatusOr<HostTopology> ReadHostTopology(const SysfsInventory& inventory);

struct LinuxBackendOptions {
  std::string sysfs_root = "/sys";
  std::string vfio_dir = "/dev/vfio";
  std::string kmsg_path = "/dev/kmsg";  // "" : no fault reports
  BindOptions bind;                     // drivers a claim may take devices from
  // Hand-overs (GroupHandover): the group node is <parent of vfio_dir>/vfio/N; holders are found in
  // proc_root.
  std::string proc_root = "/proc";
  absl::Duration handover_node_timeout = absl::Seconds(5);
  // Test hook: how sysfs attributes are written by hand-overs (null: WriteSysfsAttribute).
  PciDriverBinder::AttributeWriter sysfs_writer;
  // Where the host journal lives (core/host/host_journal.h): "" keeps none, and a restart then
  // cannot tell what a dead iommud left on the host. The daemon defaults it to its state dir.
  std::string host_state_dir;
  // Where group and container fds are kept across a restart (core/host/fd_keeper.h; not owned;
  // null: nowhere). Not a --backend_opt: the daemon sets it (BackendHooks::fd_keeper). With a
  // keeper, Create takes back what a previous process kept and adopts it (see FinishAdoption).
  FdKeeper* fd_keeper = nullptr;
};

// Parses the backend's --backend_opt keys: sysfs_root, vfio_dir, proc_root, kmsg (path or ""),
// replaceable_drivers (comma separated), host_state_dir. INVALID_ARGUMENT
// (INVALID_BACKEND_OPTION) otherwise.
absl::StatusOr<LinuxBackendOptions> ParseLinuxBackendOptions(const BackendOptions& options);

class LinuxBackend final : public IommuBackend, public DeviceFdProvider {
 public:
  // Reads the inventory. `memory` is required (FAILED_PRECONDITION MISSING_MEMORY_RESOLVER).
  // `faults` (optional) is hit at the host.* points just before each kernel step, so a fail-nth
  // sweep can fail every step of a claim, attach, map, unmap and release in turn.
  static absl::StatusOr<std::unique_ptr<LinuxBackend>> Create(const LinuxBackendOptions& options,
                                                              const MemoryResolver* memory,
                                                              FaultInjector* faults = nullptr);
  ~LinuxBackend() override;

  const HostTopology& topology() const { return topology_; }
  const LinuxBackendOptions& options() const { return options_; }
  // What Create found of the groups a previous iommud process had claimed (host journal), in
  // group order: restored to their drivers, still held by a VMM's device fds, ... A held group
  // stays unclaimable (GROUP_BUSY) until its last device fd closes (re-checked at each claim), and
  // ReadRid shows its RIDs on kHeldElsewhereDomain, so the registry's audit reports it.
  const std::vector<RecoveredGroup>& recovered() const { return recovered_; }

  // Adoption of what a previous process kept in the FdKeeper (docs/semantics.md "Crash and restart
  // on a real host"). Create takes back every journaled group's fd (group-N: the group is then
  // claimed, NOT restored to its drivers) and every container (container-<unit>-<id>: the domain
  // exists, ReadDomains lists it, with no known mappings). The registry's Recover then replays its
  // store: Map calls fill the adopted domain's shadow (no ioctl while no group is in it), and the
  // AttachRid that moves an adopted group confirms it: still in a container and the target is an
  // adopted domain -> kept as it is, and that container is synchronized once with the shadow
  // (every IOVA range the shadow does not map is unmapped: a mapping the kernel got but the store
  // never acknowledged goes; every shadow mapping is mapped again: EEXIST means the kernel kept
  // it, success means the kernel had lost it and has it now); otherwise the group is taken out of
  // its container and follows the ordinary path. VFIO cannot tell which container a group is in:
  // a group in some container is taken to be in its domain's (iommud never puts it elsewhere).
  // After Recover, FinishAdoption gives back every adopted group the registry did not reference
  // (drivers restored, fd dropped from the keeper) and returns one outcome per group taken back
  // (kAdopted or kRestored) plus the synchronization's findings in `detail`.
  std::vector<RecoveredGroup> FinishAdoption();

  // IommuBackend.
  absl::string_view name() const override { return "linux"; }
  absl::Status AddUnit(absl::string_view unit, const UnitCaps& caps) override;
  absl::Status AllocDomain(absl::string_view unit, DomainId id, DomainType type) override;
  absl::Status FreeDomain(DomainId id) override;
  absl::Status AttachRid(absl::string_view unit, Rid rid, DomainId domain) override;
  absl::Status ReleaseRid(absl::string_view unit, Rid rid) override;
  absl::Status Map(DomainId domain, uint64_t iova, uint64_t paddr, uint64_t size,
                   uint32_t prot) override;
  absl::StatusOr<uint64_t> Unmap(DomainId domain, uint64_t iova, uint64_t size) override;
  absl::Status InvalidateIotlb(DomainId domain, uint64_t iova, uint64_t size) override;
  Translation Translate(absl::string_view unit, Rid rid, uint64_t iova, uint32_t access) override;
  std::vector<FaultRecord> DrainFaults() override;
  absl::StatusOr<RidEntry> ReadRid(absl::string_view unit, Rid rid) override;
  absl::StatusOr<std::vector<RidEntry>> ReadRids(absl::string_view unit) override;
  std::vector<DomainId> ReadDomains() override;
  absl::StatusOr<std::vector<Mapping>> ReadMappings(DomainId domain) override;
  BackendStats Stats() override;
  // VFIO type1 cannot replace: a group changes containers only by VFIO_GROUP_UNSET_CONTAINER then
  // VFIO_GROUP_SET_CONTAINER, a window where it has no IOMMU context. Always FAILED_PRECONDITION
  // REPLACE_NOT_ATOMIC (docs/semantics.md "Where iommud differs from the kernel").
  absl::Status CanReplaceDomain(absl::string_view unit, Rid rid) override;
  // A user domain whose container holds a group: the IOVA range capability of its
  // VFIO_IOMMU_GET_INFO (IOMMU_INFO_FAILED if the kernel refuses); else (no group in it yet, a
  // kernel-managed domain, an unknown id, a kernel that does not report ranges) nullopt.
  absl::StatusOr<std::optional<std::vector<::iommud::IovaRange>>> KernelIovaRanges(
      DomainId domain) override;
  // Hand-over (see the header comment). HandOverGroup refuses a group iommud holds (claimed or
  // attached: GROUP_BUSY) or has handed over (GROUP_ALREADY_HANDED_OVER), then GroupHandover's
  // refusals; TakeBackGroup refuses a group not handed over (GROUP_NOT_HANDED_OVER), then
  // GROUP_STILL_OPEN unless `force`. Fault points host.handover and host.take_back come first.
  absl::Status HandOverGroup(absl::string_view unit, Rid rid, uint32_t uid, uint32_t gid) override;
  absl::Status TakeBackGroup(absl::string_view unit, Rid rid, bool force) override;
  std::vector<HandoverLeak> AuditHandovers() override;

  // DeviceFdProvider.
  absl::StatusOr<UniqueFd> DeviceFd(absl::string_view device) override;

  // Whether iommud holds the IOMMU group that `device` (a device of the start-up inventory, present
  // or not) belongs to: claimed or attached, not on the kernel's default domain. Waits for the
  // group's transition in progress, if any.
  bool HoldsGroupOf(absl::string_view device) const;

 private:
  enum class GroupState { kKernel, kClaimed, kAttached, kHandedOver };
  struct ShadowMapping {
    uint64_t paddr = 0;  // region-space address
    uint64_t size = 0;
    uint32_t prot = 0;
  };
  struct DomainRecord {
    DomainRecord(DomainId id, std::string unit, DomainType type) : id(id), unit(std::move(unit)), type(type) {}
    const DomainId id;
    const std::string unit;
    const DomainType type;
    absl::Mutex mu;
    std::unique_ptr<VfioContainer> container ABSL_GUARDED_BY(mu);  // user domains only
    std::map<uint64_t, ShadowMapping> mappings ABSL_GUARDED_BY(mu);  // by IOVA
    std::set<int> attached_groups ABSL_GUARDED_BY(mu);  // kernel groups in the container
    // Taken back from the FdKeeper (see FinishAdoption); synced once a group of it is confirmed.
    bool adopted ABSL_GUARDED_BY(mu) = false;
    bool synced ABSL_GUARDED_BY(mu) = false;
    std::string sync_report ABSL_GUARDED_BY(mu);  // what the synchronization found
  };
  struct GroupRecord {
    GroupRecord(int id, std::string unit) : id(id), unit(std::move(unit)) {}
    const int id;
    const std::string unit;
    std::vector<std::string> devices;  // every PCI device of the group (bridges too)
    std::set<Rid> rids;
    absl::Mutex mu;
    GroupState state ABSL_GUARDED_BY(mu) = GroupState::kKernel;
    std::vector<DriverBinding> bindings ABSL_GUARDED_BY(mu);  // what the claim changed
    std::unique_ptr<VfioGroup> vfio ABSL_GUARDED_BY(mu);
    std::shared_ptr<DomainRecord> container_domain ABSL_GUARDED_BY(mu);  // kAttached only
    std::map<Rid, DomainId> rid_domains ABSL_GUARDED_BY(mu);  // what the registry programmed
    std::optional<HandoverRecord> handover ABSL_GUARDED_BY(mu);  // kHandedOver only
    // Taken back from a VMM and not claimed or handed over since: audited for holders.
    bool taken_back ABSL_GUARDED_BY(mu) = false;
    // Held through device fds a dead iommud handed out (its journal record, to restore later).
    bool held_elsewhere ABSL_GUARDED_BY(mu) = false;
    JournaledGroup held_record ABSL_GUARDED_BY(mu);
    // Taken back from the FdKeeper and not yet confirmed by the registry's recovery (adopting),
    // and confirmed (adopted).
    bool adopting ABSL_GUARDED_BY(mu) = false;
    bool adopted ABSL_GUARDED_BY(mu) = false;
  };

  LinuxBackend(const LinuxBackendOptions& options, const MemoryResolver* memory,
               FaultInjector* faults, HostTopology topology);
  // The scripted fault at `point`, if any (OK without an injector).
  absl::Status Hit(absl::string_view point) const;

  absl::StatusOr<std::shared_ptr<GroupRecord>> FindGroup(absl::string_view unit, Rid rid) const;
  std::shared_ptr<DomainRecord> FindDomain(DomainId id) const;
  absl::StatusOr<std::shared_ptr<DomainRecord>> DomainOrError(DomainId id) const;
  // DomainOrError, and FAILED_PRECONDITION (KERNEL_MANAGED_DOMAIN) unless it is a user domain.
  absl::StatusOr<std::shared_ptr<DomainRecord>> UserDomainOrError(DomainId id) const;
  // The state a group must be in for its RIDs to point at `domain`.
  static GroupState StateFor(const DomainRecord& domain);

  // A held group's re-check before a claim: OK once its last device fd closed and its drivers are
  // restored; GROUP_BUSY while it is still held.
  absl::Status RecheckHeld(GroupRecord& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  // The journal's record of a claim of `group` about to bind (the drivers it will replace).
  JournaledGroup IntendedBinding(const GroupRecord& group) const;

  // Transitions of `group` (its mutex held); each all or nothing.
  absl::Status Claim(GroupRecord& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  absl::Status Unclaim(GroupRecord& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  // Unclaim without the host.restore point: for rollbacks and the destructor.
  absl::Status GiveBack(GroupRecord& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  absl::Status Enter(GroupRecord& group, const std::shared_ptr<DomainRecord>& domain)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  absl::Status Leave(GroupRecord& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  absl::Status MoveTo(GroupRecord& group, const std::shared_ptr<DomainRecord>& domain)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);

  // The first move of an adopted group (see FinishAdoption): keeps it in `domain`'s adopted
  // container, or takes it out of whatever container it is in (it is then kClaimed).
  absl::Status ConfirmAdopted(GroupRecord& group, const std::shared_ptr<DomainRecord>& domain)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  // Makes an adopted container's kernel mappings those of its shadow, once (see FinishAdoption).
  void SyncAdopted(DomainRecord& domain) ABSL_EXCLUSIVE_LOCKS_REQUIRED(domain.mu);
  // Hands a copy of `fd` to the keeper (OK without one) / drops it (best effort).
  absl::Status KeepFd(const std::string& name, int fd) const;
  void DropFd(const std::string& name) const;

  // VFIO_IOMMU_MAP_DMA of one shadow mapping into `domain`'s container.
  absl::Status MapIntoContainer(DomainRecord& domain, uint64_t iova, const ShadowMapping& mapping)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(domain.mu);

  const LinuxBackendOptions options_;
  const MemoryResolver* const memory_;
  FaultInjector* const injector_;
  const HostTopology topology_;
  PciDriverBinder binder_;
  GroupHandover handover_;
  std::unique_ptr<DmarFaultReader> faults_;  // null without kmsg
  std::unique_ptr<HostJournal> journal_;     // null without host_state_dir
  std::vector<RecoveredGroup> recovered_;    // set by Create

  mutable absl::Mutex tables_mu_;
  std::map<std::string, UnitCaps, std::less<>> units_ ABSL_GUARDED_BY(tables_mu_);
  // Immutable after construction: kernel groups by id, and (unit, RID) -> kernel group.
  std::map<int, std::shared_ptr<GroupRecord>> groups_;
  std::map<std::pair<std::string, Rid>, std::shared_ptr<GroupRecord>> groups_by_rid_;
  std::map<std::string, std::shared_ptr<GroupRecord>, std::less<>> groups_by_device_;
  std::map<DomainId, std::shared_ptr<DomainRecord>> domains_ ABSL_GUARDED_BY(tables_mu_);
};

// The domain ReadRid reports for the RIDs of a group held outside iommud (see recovered()).
inline constexpr DomainId kHeldElsewhereDomain = ~DomainId{0};

// The factory CreateBackend("linux") uses (hooks.memory is required).
absl::StatusOr<std::unique_ptr<IommuBackend>> NewLinuxBackend(const BackendOptions& options,
                                                              const BackendHooks& hooks);

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_LINUX_BACKEND_H_
