// Internal state of the Registry (not part of its API; included only by core/registry*.cc).
//
// Lock order: GroupState::mu -> DomainState::mu -> State::map_mu.
//   - map_mu is a leaf: held only to read or change the id maps, never while waiting for another
//     lock. (The one exception is the try-lock of a group created under it, which cannot wait.)
//   - A group's mu is held for the whole of every operation on its devices or its domain, including
//     the backend's release of a device. Two group mutexes are never held at once.
//   - A domain's mu guards its attachments and mappings, and serializes the backend's mutating
//     calls for that domain.
#ifndef IOMMUD_CORE_REGISTRY_STATE_H_
#define IOMMUD_CORE_REGISTRY_STATE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "core/backend/fault_injecting_backend.h"
#include "core/backend/iommu_backend.h"
#include "core/error.h"
#include "core/group_lock.h"
#include "core/mapping_index.h"
#include "core/memory_regions.h"
#include "core/registry.h"
#include "core/registry_observer.h"
#include "core/store/call_context.h"
#include "core/store/state_records.h"
#include "core/store/state_store.h"
#include "core/types.h"

namespace iommud {

struct DomainState;

// Runs a backend call that must not be left undone (a rollback, a release during hot-unplug, a
// cleanup) and retries it once if it fails; returns the last status.
absl::Status TwiceIfNeeded(const std::function<absl::Status()>& call);

// A backend failure as the registry reports it: the backend's own reason if it set one, else
// BACKEND_FAILED with `op` and `metadata`.
absl::Status BackendError(const absl::Status& status, absl::string_view op,
                          const ErrorMetadata& metadata);

struct UnitState {
  std::string name;
  UnitCaps caps;
  std::shared_ptr<DomainState> release_domain;  // blocked; where released RIDs go first
};

struct DomainState {
  DomainId id = 0;
  std::shared_ptr<UnitState> unit;
  DomainType type = DomainType::kUnmanaged;
  std::string owner;         // empty for core-owned domains
  bool core_owned = false;

  mutable absl::Mutex mu;
  bool freed ABSL_GUARDED_BY(mu) = false;
  std::set<GroupId> attached_groups ABSL_GUARDED_BY(mu);
  MappingIndex mappings ABSL_GUARDED_BY(mu);
};

struct GroupState;

struct DeviceState {
  std::string name;
  std::shared_ptr<UnitState> unit;
  Rid rid = 0;
  std::vector<Rid> alias_rids;
  std::vector<Rid> all_rids;  // rid + aliases, sorted, distinct
  std::shared_ptr<GroupState> group;  // fixed for the device's life
  uint64_t probe_seq = 0;  // orders the devices of a group across restarts (DeviceRecord)

  // Set under group->mu; read without it by listings (a hint) and under it by operations.
  std::atomic<bool> live{false};
  // Guarded by group->mu (not expressible as an annotation across objects).
  DriverBinding binding = DriverBinding::kNone;
};

struct GroupState {
  GroupId id = 0;
  std::shared_ptr<UnitState> unit;

  mutable absl::Mutex mu;
  mutable LockStats lock_stats;
  // Set under mu when the group's last device is released; monotonic, read as a hint without mu.
  std::atomic<bool> dead{false};
  bool initialized ABSL_GUARDED_BY(mu) = false;
  absl::CondVar set_up;  // signalled when `initialized` or `dead` is set by the group's creator
  std::vector<std::shared_ptr<DeviceState>> devices ABSL_GUARDED_BY(mu);  // probe order, live only
  std::shared_ptr<DomainState> domain ABSL_GUARDED_BY(mu);
  std::shared_ptr<DomainState> default_domain ABSL_GUARDED_BY(mu);
  std::shared_ptr<DomainState> blocking_domain ABSL_GUARDED_BY(mu);
  std::string owner ABSL_GUARDED_BY(mu);
  uint32_t owner_cnt ABSL_GUARDED_BY(mu) = 0;
  bool group_claimed ABSL_GUARDED_BY(mu) = false;  // ClaimOwnership (counts 1 in owner_cnt)
  std::set<std::string> claimed_devices ABSL_GUARDED_BY(mu);  // ClaimDevice by `owner`
  // The devices attached to `domain` (AttachDevice one by one, or all of them by AttachGroup):
  // empty whenever `domain` is core-owned (SwitchGroupDomain and ForceGroupBlocked clear it when
  // they move the group onto one); non-empty whenever `domain` is a user domain.
  std::set<std::string> attached_devices ABSL_GUARDED_BY(mu);
  // Ownership lease (zero TTL: none); set only through Registry::State::SetLease.
  absl::Duration lease_ttl ABSL_GUARDED_BY(mu) = absl::ZeroDuration();
  absl::Time lease_expiry ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  // lease_expiry in unix nanos, 0 without a lease: read without mu by ExpireLeases to skip groups.
  std::atomic<int64_t> lease_expiry_hint{0};
  // The liveness stream the leased ownership is bound to (Registry::BindLease), 0 = none. In memory
  // only: a restart unbinds (the lease's TTL then decides). Cleared when the ownership ends.
  uint64_t bound_stream ABSL_GUARDED_BY(mu) = 0;
  // HandOverGroup: the backend handed the group's kernel group to this uid:gid (owner_cnt 1,
  // group_claimed, on its default domain). Not persisted (docs/semantics.md "Hand-over to a VMM").
  bool handed_over ABSL_GUARDED_BY(mu) = false;
  uint32_t handover_uid ABSL_GUARDED_BY(mu) = 0;
  uint32_t handover_gid ABSL_GUARDED_BY(mu) = 0;
};

// The mutable fields of a group (and its devices' bindings), saved before an operation so that a
// mutation the store refuses can be undone (Registry::State::RestoreGroup).
struct GroupUndo {
  std::shared_ptr<DomainState> domain;
  std::string owner;
  uint32_t owner_cnt = 0;
  bool group_claimed = false;
  std::set<std::string> claimed_devices;
  std::set<std::string> attached_devices;
  absl::Duration lease_ttl = absl::ZeroDuration();
  absl::Time lease_expiry = absl::InfinitePast();
  uint64_t bound_stream = 0;
  bool handed_over = false;
  uint32_t handover_uid = 0;
  uint32_t handover_gid = 0;
  std::vector<std::pair<std::shared_ptr<DeviceState>, DriverBinding>> bindings;
};
// FAILED_PRECONDITION (GROUP_HANDED_OVER) while the group is handed over to a VMM, for `doing`
// ("attached", ...) (core/registry_handover.cc).
absl::Status RequireNotHandedOver(const GroupState& group, absl::string_view doing)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
// HandOverGroup once the group is checked free and on its default domain: the backend's hand-over,
// then the registry's record of it (owner, owner_cnt 1, the uid:gid), committed; a refused commit
// takes the hand-over back. All or nothing.
absl::StatusOr<GroupInfo> HandOverLocked(Registry::State& state, CallContext& call,
                                         GroupState& group, absl::string_view owner, uint32_t uid,
                                         uint32_t gid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
// ReleaseOwnership of a handed-over group: the backend takes it back (GROUP_STILL_OPEN unless
// `force`: nothing changed), then the ownership ends and is committed (the host already moved on:
// a refused commit is counted, not undone).
// Appends the backend's hand-over leaks (IommuBackend::AuditHandovers) as LeakRecords, each with
// the registry group of its RID (0 if none).
void AppendHandoverLeaks(const Registry::State& state, std::vector<LeakRecord>* leaks);
absl::StatusOr<GroupInfo> TakeBackLocked(Registry::State& state, CallContext& call,
                                         GroupState& group, bool force)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);

// The caller must be the group's owner: FAILED_PRECONDITION (GROUP_NOT_OWNED) if nobody owns it,
// PERMISSION_DENIED (NOT_OWNER) otherwise (core/registry_ownership.cc).
absl::Status RequireGroupOwner(const GroupState& group, absl::string_view owner)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);

// INVALID_ARGUMENT (LEASE_TTL_OUT_OF_RANGE) unless kMinLeaseTtl <= ttl <= kMaxLeaseTtl
// (core/registry_leases.cc).
absl::Status CheckLeaseTtl(absl::Duration ttl, ErrorMetadata metadata);

// The page table's leaves must cover exactly the registered mappings, page by page; appends one
// violation per disagreement (core/registry_invariants.cc).
void CheckMappings(DomainId id, const std::vector<Mapping>& registered,
                   const std::vector<Mapping>& leaves, std::vector<InvariantViolation>* out);

// Which group a RID of a unit belongs to, counted by the devices (live or being probed) using it.
struct RidOwner {
  std::shared_ptr<GroupState> group;
  uint32_t users = 0;
};

struct Registry::State {
  explicit State(const RegistryOptions& opts)
      : options(opts),
        own_regions(opts.memory_regions == nullptr ? std::make_unique<MemoryRegionTable>()
                                                   : nullptr),
        regions(opts.memory_regions != nullptr ? opts.memory_regions : own_regions.get()) {}

  const RegistryOptions options;
  // The memory regions: options.memory_regions, or own_regions without one. Its lock is a leaf
  // (taken under group and domain mutexes, never the other way round).
  const std::unique_ptr<MemoryRegionTable> own_regions;
  MemoryRegionTable* const regions;
  IommuBackend* backend() const { return options.backend; }
  // The backend as `call` drives it: every mutating method first hits its backend.* point on
  // options.faults with the call's fault scope (a stack object; use it within the call).
  FaultInjectingBackend Backend(const CallContext& call) const {
    return FaultInjectingBackend(options.backend, options.faults, call.fault_scope());
  }
  RegistryObserver* observer() const { return options.observer; }

  // --- Helpers shared by core/registry*.cc (core/registry_state.cc). ---
  void SyncPoint(absl::string_view point) const {
    if (options.sync_point) options.sync_point(point);
  }
  void Emit(RegistryEvent event) const {
    if (options.observer == nullptr) return;
    if (event.time_unix_nanos == 0) event.time_unix_nanos = absl::ToUnixNanos(absl::Now());
    options.observer->OnEvent(event);
  }
  // Tells the observer of a leak (OnLeak) and emits its kLeakFound event.
  void RecordLeak(const LeakRecord& leak) const;
  // The event of `leak` (kLeakFound or kLeakRepaired).
  void EmitLeak(RegistryEvent::Kind kind, const LeakRecord& leak) const;

  // Lookups under map_mu (NOT_FOUND, reasons of docs/errors.md "Lookups"). A device or group found
  // here may die before the caller locks its group: check LiveDevice / LiveGroup under the lock.
  absl::StatusOr<std::shared_ptr<UnitState>> FindUnit(absl::string_view name) const;
  absl::StatusOr<std::shared_ptr<DeviceState>> FindDevice(absl::string_view name) const;
  absl::StatusOr<std::shared_ptr<GroupState>> FindGroup(GroupId id) const;
  absl::StatusOr<std::shared_ptr<DomainState>> FindDomain(DomainId id) const;
  // `group` is device.group.
  static absl::Status LiveDevice(const GroupState& group, const DeviceState& device)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  static absl::Status LiveGroup(const GroupState& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);

  // The distinct RIDs of the group's devices, sorted.
  static std::vector<Rid> GroupRids(const GroupState& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);

  // Points every RID of `group` at `to` (attaching `group` to `to` first, so `to` cannot be freed
  // meanwhile). On a backend failure re-points the RIDs already switched back to the old domain and
  // returns the error: nothing changed. DOMAIN_NOT_FOUND if `to` was freed. A switch onto a
  // core-owned domain clears group.attached_devices; onto a user domain it leaves them to the
  // caller (AttachGroup records every device, AttachDevice the one, ReplaceDomain keeps them).
  absl::Status SwitchGroupDomain(CallContext& call, GroupState& group,
                                 const std::shared_ptr<DomainState>& to)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  // Like SwitchGroupDomain to the blocking domain, but never fails: RIDs that cannot be pointed at
  // it are released in the backend. Used where the operation must complete (leaks).
  void ForceGroupBlocked(CallContext& call, GroupState& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  // Returns the group of an owner whose ownership ends to its default domain; if the backend
  // refuses, forces it to blocked and records a kRestoreDefaultFailed leak. Clears the owner.
  void EndOwnership(CallContext& call, GroupState& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  // Sets the group's lease (zero `ttl`: none, and `expiry` is ignored) and its hint.
  static void SetLease(GroupState& group, absl::Time expiry, absl::Duration ttl)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);

  // Creates domain `id` of `type` in the backend and the registry (the maps too).
  absl::StatusOr<std::shared_ptr<DomainState>> CreateDomain(CallContext& call,
                                                            const std::shared_ptr<UnitState>& unit,
                                                            DomainType type,
                                                            absl::string_view owner,
                                                            bool core_owned);
  // Frees a domain nobody is attached to in the backend and erases it from the maps. `durable`:
  // its deletion is committed to the store first (a refusal changes nothing); callers that commit
  // the domain's end in a batch of their own pass false.
  absl::Status DestroyDomain(CallContext& call, const std::shared_ptr<DomainState>& domain,
                             bool durable = false);
  // The type of a blocking (or release) domain on `unit`: BLOCKED, else an empty UNMANAGED one.
  static DomainType BlockingType(const UnitCaps& caps);

  static GroupInfo SnapshotGroup(const GroupState& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  static DeviceInfo SnapshotDevice(const GroupState& group, const DeviceState& device)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  static DomainInfo SnapshotDomain(const DomainState& domain);

  // Appends the backend's queued faults to the fault log and tells the observer.
  void CollectFaults();

  // --- Durability (core/registry_store.cc) ---
  StateStore* store() const { return options.store; }
  Clock* clock() const { return options.clock != nullptr ? options.clock : Clock::Real(); }
  static GroupRecord GroupRecordOf(const GroupState& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  static DeviceRecord DeviceRecordOf(const GroupState& group, const DeviceState& device)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  static DomainRecord DomainRecordOf(const DomainState& domain);
  static UnitRecord UnitRecordOf(const UnitState& unit);
  // Adds the group's record and its live devices' records to `batch`.
  static void AddGroup(const GroupState& group, StoreBatch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  // Commits `batch` with the id counters, the call's fault scope and its pending request record
  // (result_ref set to `result_ref`; marked committed in `call` once durable). OK without a
  // store. UNAVAILABLE (STORE_WRITE_FAILED) if the store refuses; then nothing was written.
  // Called with the locks of what the batch describes held.
  absl::Status Commit(CallContext& call, StoreBatch batch, uint64_t result_ref = 0);
  // Commit for changes that cannot be undone (the hardware already moved on: a release, a repair):
  // retried once; a failure is counted in unrecorded_changes.
  void CommitOrCount(CallContext& call, StoreBatch batch, uint64_t result_ref = 0);
  static GroupUndo SaveGroup(const GroupState& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  // Puts the group back as `undo` says, the hardware first (if that fails the group is forced to
  // blocked and a kRestoreDefaultFailed leak recorded, as EndOwnership does).
  void RestoreGroup(CallContext& call, GroupState& group, const GroupUndo& undo)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);
  // Commits the group (plus `extra`); if the store refuses, restores `undo` and returns the error.
  absl::Status CommitGroup(CallContext& call, GroupState& group, const GroupUndo& undo,
                           StoreBatch extra = {}, uint64_t result_ref = 0)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu);

  mutable absl::Mutex map_mu;
  std::map<std::string, std::shared_ptr<UnitState>> units ABSL_GUARDED_BY(map_mu);
  std::map<std::string, std::shared_ptr<DeviceState>> devices ABSL_GUARDED_BY(map_mu);
  std::map<GroupId, std::shared_ptr<GroupState>> groups ABSL_GUARDED_BY(map_mu);
  std::map<DomainId, std::shared_ptr<DomainState>> domains ABSL_GUARDED_BY(map_mu);
  // (unit name, rid) -> group.
  std::map<std::pair<std::string, Rid>, RidOwner> rid_owners ABSL_GUARDED_BY(map_mu);

  std::atomic<uint64_t> next_group_id{1};
  std::atomic<uint64_t> next_domain_id{1};
  std::atomic<uint64_t> next_probe_seq{1};
  std::atomic<uint64_t> unrecorded_changes{0};

  mutable absl::Mutex fault_mu;
  std::deque<FaultRecord> faults ABSL_GUARDED_BY(fault_mu);  // newest at the back
  uint64_t faults_total ABSL_GUARDED_BY(fault_mu) = 0;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_REGISTRY_STATE_H_
