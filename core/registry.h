// Registry: the authoritative state of the host's IOMMU (units, groups, devices, domains) and the
// only writer of the backend. Semantics: docs/semantics.md; every rule there is implemented
// here and every failure is an Error() with the reason named there (core/error_reasons.h).
//
// Locking (the seed's lesson; details in core/registry_state.h):
//   Group::mu (held for the whole of every operation touching the group's devices or domain,
//              including the backend's release of a device)
//     -> Domain::mu (attachments, mappings, the backend's calls for that domain)
//       -> the id maps' lock (a leaf: held only for lookup/insert/erase, never while waiting)
// Two group mutexes are never held at once and no registry-wide lock is held across a backend call,
// so operations on different groups never wait for each other. Every public method is thread-safe.
#ifndef IOMMUD_CORE_REGISTRY_H_
#define IOMMUD_CORE_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/backend/iommu_backend.h"
#include "core/clock.h"
#include "core/fault_injector.h"
#include "core/memory_regions.h"
#include "core/registry_observer.h"
#include "core/store/call_context.h"
#include "core/store/state_store.h"
#include "core/types.h"

namespace iommud {

struct RegistryOptions {
  IommuBackend* backend = nullptr;         // required; not owned; must outlive the Registry
  RegistryObserver* observer = nullptr;    // optional; not owned; must outlive the Registry
  // Optional; not owned; must outlive the Registry. When set, every successful mutation is
  // committed to it (one StoreBatch, under the lock of what it changes) before the call returns;
  // a mutation the store refuses is undone and fails with UNAVAILABLE (STORE_WRITE_FAILED).
  StateStore* store = nullptr;
  Clock* clock = nullptr;                  // optional; not owned; null = Clock::Real()
  // Optional; not owned; must outlive the Registry. The registry hits its backend.* injection
  // points (core/fault_injector.h) before each mutating backend call, with the FaultScope of the
  // call's CallContext; an injected error is returned without reaching the backend. Null: none.
  // The injector is this registry's: another registry in the process never sees it.
  FaultInjector* faults = nullptr;
  DomainType default_domain_type = DomainType::kDma;  // policy for new groups' default domains
  size_t fault_log_capacity = 1024;        // most recent faults kept for ListTranslationFaults
  // The memory regions (core/memory_regions.h; not owned; must outlive the Registry): the daemon
  // shares one table with its backend (BackendHooks::memory). Null: the registry keeps its own.
  MemoryRegionTable* memory_regions = nullptr;
  // Bytes of process-memory regions one owner may have mapped at once (MapRegion refuses more with
  // PINNED_MEMORY_LIMIT). 0: unlimited.
  uint64_t max_pinned_bytes_per_owner = 0;
  // True for backends that map real process memory (linux): RegisterMemory without process memory
  // is refused (MEMORY_NEEDS_FD).
  bool regions_need_process_memory = false;
  // Test hook: called at named points inside operations (see kSyncPoint* below), with the group's
  // mutex held where the point is inside a group operation. Lets tests force interleavings.
  std::function<void(absl::string_view point)> sync_point;
};

// Named points of RegistryOptions::sync_point.
// ReleaseDevice: the device is off the group's list, its RIDs not yet released in the backend.
inline constexpr absl::string_view kSyncReleaseRemovedFromGroup = "release_device:removed_from_group";
// ReleaseDevice: the backend released the device's RIDs (group mutex still held).
inline constexpr absl::string_view kSyncReleaseBackendReleased = "release_device:backend_released";
// A group's domain switch programmed one RID and is about to program the next.
inline constexpr absl::string_view kSyncAttachBetweenRids = "attach:between_rids";
// ProbeDevice reserved the device name and RIDs and is about to lock the group.
inline constexpr absl::string_view kSyncProbeReserved = "probe_device:reserved";
// FreeDomain checked the domain is unattached and is about to free it in the backend.
inline constexpr absl::string_view kSyncFreeDomainChecked = "free_domain:checked";

// Bounds of an ownership lease's TTL (ClaimOwnership, RenewLease); others are refused with
// INVALID_ARGUMENT (LEASE_TTL_OUT_OF_RANGE).
inline constexpr absl::Duration kMinLeaseTtl = absl::Seconds(1);
inline constexpr absl::Duration kMaxLeaseTtl = absl::Hours(24);

// --- Snapshots returned by the registry (copies: safe to keep after the call). ---

struct UnitInfo {
  std::string name;
  std::string backend;
  UnitCaps caps;
  uint32_t device_count = 0;
  uint32_t group_count = 0;
  uint32_t domain_count = 0;
};

struct DeviceInfo {
  std::string name;
  std::string unit;
  Rid rid = 0;
  std::vector<Rid> alias_rids;
  GroupId group = 0;
  DriverBinding binding = DriverBinding::kNone;
  DomainId domain = 0;  // the group's current domain
  // Attached to the group's (user) domain by AttachDevice, or by AttachGroup with all its group.
  bool attached = false;
  // The device's own reserved regions (ProbeRequest::reserved_regions), sorted by start. The
  // unit's UnitCaps::reserved_regions apply to it too and are not repeated here.
  std::vector<ReservedRegion> reserved_regions;
};

struct GroupInfo {
  GroupId id = 0;
  std::string unit;
  std::vector<std::string> devices;  // in probe order
  DomainId domain = 0;
  DomainId default_domain = 0;
  DomainId blocking_domain = 0;
  std::string owner;                 // empty when not owned
  uint32_t owner_cnt = 0;
  std::vector<std::string> claimed_devices;  // device-level claims of `owner`, sorted
  // The devices attached to `domain` (AttachDevice one by one, AttachGroup all), sorted; empty
  // while the group is on its default or blocking domain.
  std::vector<std::string> attached_devices;
  // The ownership lease (ClaimOwnership with a TTL): zero TTL = none. `lease_expiry` is wall-clock
  // time (RegistryOptions::clock), meaningful only with a lease.
  absl::Duration lease_ttl = absl::ZeroDuration();
  absl::Time lease_expiry = absl::InfinitePast();
  // The lease is bound to a live KeepLease stream (Registry::BindLease): the stream's end releases
  // the ownership. Never true after a restart.
  bool lease_bound = false;
  // HandOverGroup: the group is handed to a VMM's uid:gid, which opens VFIO itself.
  bool handed_over = false;
  uint32_t handover_uid = 0;
  uint32_t handover_gid = 0;
};

// An ownership whose lease lapsed and that Registry::ExpireLeases released.
struct ExpiredLease {
  GroupId group = 0;
  std::string unit;
  std::string owner;
  absl::Time expiry;
  DomainId domain = 0;  // the group's domain when it expired (before the release)
};

// What one Registry::ExpireLeases pass did.
struct LeaseReapResult {
  std::vector<ExpiredLease> expired;
  // Lapsed leases whose release the store refused: undone, the lease stays (retried next pass).
  std::vector<std::pair<ExpiredLease, absl::Status>> failed;
  size_t active = 0;  // leases still held after the pass (failed ones included)
};

struct DomainInfo {
  DomainId id = 0;
  std::string unit;
  DomainType type = DomainType::kUnmanaged;
  std::string owner;     // empty for core-owned domains
  bool core_owned = false;  // a group's default/blocking domain or a unit's release domain
  UnitCaps caps;         // pgsize_bitmap / aperture / reserved regions in force
  std::vector<GroupId> attached_groups;  // sorted
  uint64_t mapping_count = 0;
  uint64_t mapped_bytes = 0;
};

struct ProbeRequest {
  std::string unit;
  std::string device;
  Rid rid = 0;
  std::vector<Rid> alias_rids;
  // Default-domain type of a new group: kDma, kDmaFq or kIdentity. Unset: the policy's.
  std::optional<DomainType> default_domain_type;
  // The device's typed reserved regions (docs/semantics.md "Reserved regions"), besides the
  // unit's. Each must be non-empty, aligned to the unit's smallest page size and inside its
  // aperture (INVALID_ARGUMENT INVALID_RESERVED_REGION). Fixed for the device's life.
  std::vector<ReservedRegion> reserved_regions;
};

struct ReleaseResult {
  bool leaked_attachment = false;  // see docs/semantics.md "Leaked attachments"
};

// One disagreement between the registry and the hardware, or an inconsistency inside the registry.
struct InvariantViolation {
  std::string what;
};

// What Registry::Recover found and did.
struct RecoveryReport {
  size_t units = 0;
  size_t devices = 0;
  size_t groups = 0;
  size_t domains = 0;
  size_t mappings = 0;
  // Hardware that already held the state (a backend whose memory outlived the daemon): domains
  // adopted as they were, and domains whose page tables disagreed and were rewritten.
  size_t domains_adopted = 0;
  size_t domains_rewritten = 0;
  // Units the hardware already held: those of the store, and (counted by the start-up, see
  // server/state/state_recovery.h) those a crashed first start programmed but never committed.
  size_t units_adopted = 0;
  // Domains the hardware held when the store was empty (a first start that died after programming
  // some): ids are allocated past them, and the start-up's Reconcile frees them.
  size_t hardware_domains_unknown = 0;
  // The reconcile after loading: what disagreed with the store (repaired toward it) and what an
  // audit still finds after the repair.
  std::vector<LeakRecord> repaired;
  std::vector<LeakRecord> remaining;
  // Owned groups whose hardware could not be programmed again (the linux backend with the fd
  // store: a group whose fd was not handed back cannot be claimed again, e.g. a VMM still holds
  // its device fds): their ownership is dropped instead of failing the start. The group is put on
  // its default domain and no longer owned (committed to the store); the owner's domains and
  // their mappings stay. What the kernel still holds of it is the reconcile's and the audit's.
  struct DroppedGroup {
    GroupId group = 0;
    std::string unit;
    std::string owner;
    DomainId domain = 0;               // the domain the store had it on
    std::vector<std::string> devices;  // its devices, in probe order
    absl::Status status;               // why the backend refused
  };
  std::vector<DroppedGroup> dropped_groups;
  absl::Duration elapsed;
};

// Every mutating call takes an optional CallContext (core/store/call_context.h), passed
// explicitly: the request record it commits with its first change (idempotency), and the fault
// scope the registry sets for its group operations. Null: a context of the call's own (no record).
// The context is only used during the call, on whatever thread the registry does the work.
class Registry {
 public:
  // INVALID_ARGUMENT if options.backend is null.
  static absl::StatusOr<std::unique_ptr<Registry>> Create(const RegistryOptions& options);
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // --- Durability ---
  // Rebuilds a fresh registry from options.store: units, domains (with their mappings), groups and
  // devices as last committed; programs the backend with them (hardware that already has a unit or
  // domain — memory that outlived the daemon — is adopted, and page tables that disagree are
  // rewritten); then Reconcile()s, so hardware the store does not know is blocked/released and
  // reported. Call once, before any other call. An empty store gives an empty report.
  // An owned group whose RIDs the backend refuses to program does not fail the start: its
  // ownership is dropped and reported (RecoveryReport::dropped_groups).
  // FAILED_PRECONDITION (NO_STATE_STORE) without a store, (REGISTRY_NOT_EMPTY) on a used registry;
  // the store's errors (DATA_LOSS STATE_CORRUPT...) and backend errors otherwise.
  absl::StatusOr<RecoveryReport> Recover();
  // Commits that failed where the change could not be undone (a device release, a reconcile
  // repair): the store may lag the registry until the next commit of the same records.
  uint64_t unrecorded_changes() const;

  // --- Units ---
  // Registers a unit with the backend and creates its release (blocked) domain. A unit the
  // hardware already holds with the same caps (one a crashed start programmed but never committed)
  // is adopted, and `*adopted` (optional) says so; Reconcile() then frees what that start left.
  // ALREADY_EXISTS (UNIT_EXISTS) for a unit the registry has; INVALID_ARGUMENT (INVALID_UNIT) for
  // an empty name or bad caps; FAILED_PRECONDITION (UNIT_CAPS_MISMATCH) for a unit the hardware
  // holds with other caps.
  absl::StatusOr<UnitInfo> AddUnit(absl::string_view name, const UnitCaps& caps,
                                   bool* adopted = nullptr);
  std::vector<UnitInfo> ListUnits() const;  // sorted by name
  absl::StatusOr<UnitInfo> GetUnit(absl::string_view name) const;  // NOT_FOUND (UNIT_NOT_FOUND)

  // --- Inventory (sorted by name / id) ---
  absl::StatusOr<DeviceInfo> GetDevice(absl::string_view device) const;  // DEVICE_NOT_FOUND
  // The group of a live `device`, nullopt for none. Takes no group mutex (only the id maps' lock,
  // a leaf): for routing a call to its group before it runs (server/api/key_strands.h). The answer
  // may be stale by the time the call runs; the call checks again under the group's mutex.
  std::optional<GroupId> GroupOfDevice(absl::string_view device) const;
  std::vector<DeviceInfo> ListDevices() const;
  absl::StatusOr<GroupInfo> GetGroup(GroupId group) const;               // GROUP_NOT_FOUND
  std::vector<GroupInfo> ListGroups() const;
  absl::StatusOr<DomainInfo> GetDomain(DomainId domain) const;           // DOMAIN_NOT_FOUND
  std::vector<DomainInfo> ListDomains() const;
  absl::StatusOr<std::vector<Mapping>> ListMappings(DomainId domain) const;  // in IOVA order

  // --- Device lifecycle ---
  absl::StatusOr<DeviceInfo> ProbeDevice(const ProbeRequest& request,
                                         CallContext* context = nullptr);
  // `refuse_if_in_use` (the API's ReleaseDevice without force, after its wait for the owner):
  // FAILED_PRECONDITION DEVICE_IN_USE (metadata device, group_id, owner), nothing changed, when the
  // device is bound USER_OWNED at the release itself, checked under the group mutex, so that a
  // claim that slipped in after the wait ended is refused rather than revoked. Without it an owned
  // device is released all the same, the leak recorded (the kernel's removal path).
  absl::StatusOr<ReleaseResult> ReleaseDevice(absl::string_view device,
                                              CallContext* context = nullptr,
                                              bool refuse_if_in_use = false);

  // --- DMA ownership (all return the group after the change) ---
  absl::StatusOr<GroupInfo> UseDefaultDomain(absl::string_view device,
                                             CallContext* context = nullptr);
  absl::StatusOr<GroupInfo> UnuseDefaultDomain(absl::string_view device,
                                               CallContext* context = nullptr);
  // `lease_ttl` zero: no lease; else in [kMinLeaseTtl, kMaxLeaseTtl] (LEASE_TTL_OUT_OF_RANGE):
  // the ownership lasts until now + lease_ttl unless RenewLease extends it, then ExpireLeases
  // releases it like ReleaseOwnership.
  absl::StatusOr<GroupInfo> ClaimOwnership(GroupId group, absl::string_view owner,
                                           absl::Duration lease_ttl = absl::ZeroDuration(),
                                           CallContext* context = nullptr);
  // For a handed-over group the backend takes it back first (IommuBackend::TakeBackGroup): refused
  // with GROUP_STILL_OPEN (nothing changed) while a process holds the group open, unless `force`.
  absl::StatusOr<GroupInfo> ReleaseOwnership(GroupId group, absl::string_view owner,
                                             bool force = false, CallContext* context = nullptr);
  // The libvirt-style hand-over (docs/semantics.md "Hand-over to a VMM"): `owner` takes the group
  // as ClaimOwnership does (same refusals: MISSING_OWNER, GROUP_IN_USE, GROUP_BUSY), but instead of
  // blocking it in iommud the backend hands its kernel group to `uid`:`gid`
  // (IommuBackend::HandOverGroup: HANDOVER_NEEDS_HOST_BACKEND on software/emulated, the host's
  // reasons on linux). The group stays on its default domain in the registry (the VMM's container
  // is not iommud's); attaching it, claiming its devices or taking their fds is refused
  // (GROUP_HANDED_OVER) until ReleaseOwnership takes it back. All or nothing; no lease.
  absl::StatusOr<GroupInfo> HandOverGroup(GroupId group, absl::string_view owner, uint32_t uid,
                                          uint32_t gid, CallContext* context = nullptr);
  absl::StatusOr<GroupInfo> ClaimDevice(absl::string_view device, absl::string_view owner,
                                        CallContext* context = nullptr);
  absl::StatusOr<GroupInfo> ReleaseDeviceOwnership(absl::string_view device,
                                                   absl::string_view owner,
                                                   CallContext* context = nullptr);

  // Runs `fn` under the group mutex of `device` once the caller is entitled to the device itself
  // (the fd side channel hands out its VFIO device fd inside `fn`: server/host/fd_channel_ops.h),
  // and returns fn's status. Entitled: the device exists (NOT_FOUND DEVICE_NOT_FOUND), its group is
  // owned (FAILED_PRECONDITION GROUP_NOT_OWNED) by `owner` (PERMISSION_DENIED NOT_OWNER), and the
  // group is attached to a user domain, not to a core-owned default or blocking one
  // (FAILED_PRECONDITION GROUP_NOT_ATTACHED: VFIO gives device fds only for a group in a container
  // with an IOMMU). Holding the mutex keeps another owner from taking the group meanwhile; `fn`
  // must not call back into the registry for this group (it would deadlock) and should not block
  // for long (it holds up every operation on the group). Changes nothing itself.
  absl::Status WithOwnedDevice(absl::string_view device, absl::string_view owner,
                               absl::FunctionRef<absl::Status()> fn);

  // --- Ownership leases (device-level claims carry none; a group claim's lease covers the
  // owner's device claims of that group too, since its expiry ends the whole ownership) ---
  // Extends the group's lease to now + TTL (`lease_ttl` if given, which also becomes the lease's
  // TTL; else the lease's own) and commits it. Errors: GROUP_NOT_FOUND; GROUP_NOT_OWNED
  // (FAILED_PRECONDITION); NOT_OWNER (PERMISSION_DENIED); NO_LEASE (FAILED_PRECONDITION: claimed
  // without a lease); LEASE_EXPIRED (FAILED_PRECONDITION: it lapsed; the next ExpireLeases
  // releases it); LEASE_TTL_OUT_OF_RANGE; STORE_WRITE_FAILED. A failure changes nothing.
  absl::StatusOr<GroupInfo> RenewLease(GroupId group, absl::string_view owner,
                                       std::optional<absl::Duration> lease_ttl = std::nullopt,
                                       CallContext* context = nullptr);
  // Ownership bound to a client's liveness (docs/semantics.md "Ownership bound to a stream"):
  // renews the lease as RenewLease does (same errors, nothing changed on failure), then binds it to
  // the liveness stream `stream` (a nonzero id, unique per stream for the process's life), so that
  // ReleaseBoundLease(group, stream) releases it when the stream ends. Binding again from the same
  // stream is a renewal; from another stream while bound: LEASE_ALREADY_BOUND
  // (FAILED_PRECONDITION). The binding lives in memory only (not committed; a restart unbinds and
  // the lease's TTL decides); it ends with the ownership.
  absl::StatusOr<GroupInfo> BindLease(GroupId group, absl::string_view owner,
                                      std::optional<absl::Duration> lease_ttl, uint64_t stream,
                                      CallContext* context = nullptr);
  // The liveness stream `stream` ended. If the group's ownership is still bound to it, releases
  // the ownership exactly as ReleaseOwnership does (one commit) and emits kOwnershipReleased with
  // detail "bound stream ended"; returns true. False (and nothing done) if the group is gone or
  // its ownership is not bound to `stream` (released, re-claimed, or bound to another stream).
  // If the store refuses the release, the ownership stays with its lease but is unbound (the TTL
  // then decides; ExpireLeases retries) and the error is returned.
  absl::StatusOr<bool> ReleaseBoundLease(GroupId group, uint64_t stream);
  // Releases every ownership whose lease lapsed (clock now >= expiry), each exactly as
  // ReleaseOwnership does (under its group's mutex, one store commit, undone if the store
  // refuses), and emits kLeaseExpired then kOwnershipReleased for it. Takes each leased group's
  // mutex in turn (groups without a lapsed lease are skipped without locking).
  LeaseReapResult ExpireLeases();

  // --- Domains and attachment ---
  absl::StatusOr<DomainInfo> AllocDomain(absl::string_view unit, DomainType type,
                                         absl::string_view owner, CallContext* context = nullptr);
  // Returns the domain as it was just before it was freed.
  absl::StatusOr<DomainInfo> FreeDomain(DomainId domain, absl::string_view owner,
                                        CallContext* context = nullptr);
  // Per-device attach, iommufd style (docs/semantics.md "Attach / detach"): the caller must own the
  // group and the domain (NOT_OWNER; DOMAIN_INCOMPATIBLE, GROUP_HANDED_OVER as AttachGroup). On a
  // group on its default or blocking domain the device attaches the whole group (every RID, all
  // or nothing); on a group already attached to `domain` it only joins (recorded per device; a
  // device already attached: no-op); on a group attached to another domain it is refused with
  // FAILED_PRECONDITION GROUP_ATTACHED_ELSEWHERE. Returns the group after the change.
  absl::StatusOr<GroupInfo> AttachDevice(absl::string_view device, DomainId domain,
                                         absl::string_view owner, CallContext* context = nullptr);
  // Undoes one AttachDevice (or one device's share of an AttachGroup): the owner only
  // (NOT_OWNER); the group must be on `domain`, a user domain (DOMAIN_NOT_ATTACHED), and the
  // device attached to it (FAILED_PRECONDITION DEVICE_NOT_ATTACHED). A device that is not the
  // last attached one only leaves (no hardware change); the last one returns the group to its
  // blocking domain, as DetachGroup. Returns the group after the change.
  absl::StatusOr<GroupInfo> DetachDevice(absl::string_view device, DomainId domain,
                                         absl::string_view owner, CallContext* context = nullptr);
  absl::StatusOr<GroupInfo> AttachGroup(GroupId group, DomainId domain, absl::string_view owner,
                                        CallContext* context = nullptr);
  absl::StatusOr<GroupInfo> DetachGroup(GroupId group, DomainId domain, absl::string_view owner,
                                        CallContext* context = nullptr);
  // Moves `group` from the user domain `from` straight to the user domain `to`, with no blocking
  // window (the kernel's iommu_group_replace_domain; iommufd's replace of a device's HWPT): every
  // RID of the group is pointed at `to` in turn while the group mutex is held, and if the backend
  // fails on one, the RIDs already moved go back to `from` and the call fails with nothing changed.
  // The caller must own the group (PERMISSION_DENIED NOT_OWNER) and `to` (NOT_OWNER); `to` must
  // be a user domain on the group's unit (INVALID_ARGUMENT DOMAIN_INCOMPATIBLE); the group must be
  // attached to `from`, a user domain (FAILED_PRECONDITION DOMAIN_NOT_ATTACHED: AttachGroup
  // attaches a group that is on its default or blocking domain); a handed-over group is
  // GROUP_HANDED_OVER. `to` == `from` succeeds and changes nothing. A backend that cannot switch
  // without a blocking window refuses first (IommuBackend::CanReplaceDomain: FAILED_PRECONDITION
  // REPLACE_NOT_ATOMIC on linux). Returns the group after the change.
  absl::StatusOr<GroupInfo> ReplaceDomain(GroupId group, DomainId from, DomainId to,
                                          absl::string_view owner, CallContext* context = nullptr);

  // --- Mappings and DMA ---
  // A raw-paddr mapping: paddr ranges overlapping the region address space are refused
  // (INVALID_ARGUMENT PADDR_IN_REGION_SPACE: they belong to MapRegion).
  absl::StatusOr<Mapping> Map(DomainId domain, uint64_t iova, uint64_t paddr, uint64_t size,
                              uint32_t prot, absl::string_view owner,
                              CallContext* context = nullptr);
  // Returns the bytes unmapped (0 for a hole). `iova` 0 with `size` kUnmapAll removes every
  // mapping of the domain (iommufd's IOMMU_IOAS_UNMAP of iova 0, length U64_MAX), all or nothing,
  // with no alignment or aperture check.
  static constexpr uint64_t kUnmapAll = ~uint64_t{0};
  absl::StatusOr<uint64_t> Unmap(DomainId domain, uint64_t iova, uint64_t size,
                                 absl::string_view owner, CallContext* context = nullptr);

  // --- Memory regions (core/registry_memory.cc; docs/semantics.md "Memory regions") ---
  // Registers a region of `size` bytes for `owner` (MemoryRegionTable::Add): emulated when
  // `backing` is null, else the process memory behind it (owned by the region from now on).
  // FAILED_PRECONDITION MEMORY_NEEDS_FD for a null `backing` when
  // RegistryOptions::regions_need_process_memory; MISSING_OWNER, INVALID_REGION_SIZE,
  // REGION_SPACE_EXHAUSTED. Not persisted: regions live as long as the registry.
  absl::StatusOr<MemoryRegionInfo> RegisterMemory(absl::string_view owner, uint64_t size,
                                                  std::unique_ptr<ProcessMemory> backing);
  // Unregisters region `region_id` of `owner` and returns it as it was. REGION_NOT_FOUND;
  // NOT_OWNER (PERMISSION_DENIED); REGION_IN_USE (FAILED_PRECONDITION) while any byte is mapped.
  absl::StatusOr<MemoryRegionInfo> UnregisterMemory(uint64_t region_id, absl::string_view owner);
  std::vector<MemoryRegionInfo> ListMemoryRegions() const;  // by id
  absl::StatusOr<MemoryRegionInfo> GetMemoryRegion(uint64_t region_id) const;  // REGION_NOT_FOUND
  // Maps [offset, offset + size) of region `region_id` at `iova` of `domain`: the region's checks
  // first (MemoryRegionTable::Charge: REGION_NOT_FOUND, NOT_OWNER — `owner` must own the region
  // too —, INVALID_SIZE, UNALIGNED, REGION_RANGE_OUT_OF_BOUNDS, PINNED_MEMORY_LIMIT), then Map
  // with paddr = base + offset and its checks. The bytes stay charged to the region until the
  // mapping is removed (Unmap, FreeDomain); a failure charges nothing.
  absl::StatusOr<Mapping> MapRegion(DomainId domain, uint64_t iova, uint64_t region_id,
                                    uint64_t offset, uint64_t size, uint32_t prot,
                                    absl::string_view owner, CallContext* context = nullptr);
  MemoryRegionTable* memory_regions() const;

  // One mapping of a MapBatch: `size` bytes at `iova`, of region `region_id` from
  // `region_offset`, or (region_id 0) of the raw physical address `paddr`.
  struct MapSpec {
    uint64_t iova = 0;
    uint64_t size = 0;
    uint32_t prot = 0;
    uint64_t paddr = 0;
    uint64_t region_id = 0;
    uint64_t region_offset = 0;
  };
  // Maps every entry into `domain`, all or nothing, under one hold of the domain's mutex and in
  // one store commit: each entry is checked as MapRegion (region_id != 0) or Map would check it,
  // and against the entries before it (MAPPING_EXISTS); the backend maps them in order. A failing
  // entry's error carries its index as metadata "entry", and nothing of the call stays (the
  // backend's mappings taken back, region bytes discharged). INVALID_ARGUMENT EMPTY_BATCH for no
  // entries. Returns the mappings in the entries' order.
  absl::StatusOr<std::vector<Mapping>> MapBatch(DomainId domain, absl::Span<const MapSpec> entries,
                                                absl::string_view owner,
                                                CallContext* context = nullptr);

  // The IOVA ranges a Map into `domain` may use, sorted and disjoint (iommufd's
  // IOMMU_IOAS_IOVA_RANGES): the unit's aperture minus its reserved regions, intersected with the
  // kernel's own report where the backend has one (IommuBackend::KernelIovaRanges: a VFIO
  // container's IOVA range capability). DOMAIN_NOT_FOUND; FAILED_PRECONDITION DOMAIN_NOT_PAGING
  // for a domain without a page table. Changes nothing.
  absl::StatusOr<std::vector<IovaRange>> IovaRanges(DomainId domain) const;

  // An emulated DMA by `device` (through its primary RID). Faults are recorded (fault log,
  // observer) and returned in the Translation, not as an error; NOT_FOUND only for an unknown device.
  absl::StatusOr<Translation> Translate(absl::string_view device, uint64_t iova, uint32_t access);
  // Most recent faults first, at most `max_records`; `total` is the count since start.
  std::vector<FaultRecord> RecentFaults(size_t max_records, uint64_t* total) const;

  // --- Audit (leaked attachments, docs/semantics.md) ---
  // Compares the registry with the backend's read-back and returns every leaked attachment found,
  // one record per leak, with its reason. Changes nothing. Takes each group mutex in turn.
  std::vector<LeakRecord> Audit() const;
  struct ReconcileResult {
    std::vector<LeakRecord> repaired;   // what the audit before the repair found
    std::vector<LeakRecord> remaining;  // what an audit after the repair still finds
  };
  // Repairs what Audit finds: the hardware is forced to what the registry says (or to blocked, or
  // released, where the registry has nothing); a group without owner goes back to its default
  // domain; owner_cnt is recomputed from bound drivers and claims; unknown hardware domains are
  // freed. Emits kLeakRepaired events.
  ReconcileResult Reconcile();

  // --- Lock contention ---
  struct GroupContention {
    GroupId group = 0;
    std::string unit;
    uint64_t acquisitions = 0;  // since the group was created
    uint64_t contended = 0;     // acquisitions that had to wait
    absl::Duration total_wait;  // summed waits of the contended ones
  };
  // The `max_groups` live groups that waited longest in total, most first.
  std::vector<GroupContention> MostContendedGroups(size_t max_groups) const;

  // --- Consistency ---
  // Compares the registry with itself and with the backend's read-back (RIDs, domains, mappings).
  // Empty at every quiescent point unless something leaked. Takes each group mutex in turn.
  std::vector<InvariantViolation> CheckInvariants() const;

  IommuBackend* backend() const { return options_.backend; }

  struct State;  // internal: defined in core/registry_state.h, used only by core/registry*.cc

 private:
  explicit Registry(const RegistryOptions& options);
  // Map, MapRegion and MapBatch once every paddr is known (core/registry_domains.cc): all of
  // `mappings` or none; `name_entries` adds each failing entry's index to its error ("entry").
  absl::StatusOr<std::vector<Mapping>> MapPaddrs(CallContext& call, DomainId domain,
                                                 absl::Span<const Mapping> mappings,
                                                 absl::string_view owner, bool name_entries);
  // RenewLease (`stream` 0) and BindLease (core/registry_leases.cc).
  absl::StatusOr<GroupInfo> RenewOrBind(GroupId id, absl::string_view owner,
                                        std::optional<absl::Duration> lease_ttl, uint64_t stream,
                                        CallContext* context);
  RegistryOptions options_;
  std::unique_ptr<State> state_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_REGISTRY_H_
