// RegistryObserver: how the core reports what happens, without depending on any metrics or RPC
// library. server/ implements it (Prometheus metrics, the event stream); tests use recording doubles.
//
// Contract: callbacks may run on any thread, with a group mutex held (so they must be fast, must not
// block, and must never call back into the Registry). The default implementations do nothing.
#ifndef IOMMUD_CORE_REGISTRY_OBSERVER_H_
#define IOMMUD_CORE_REGISTRY_OBSERVER_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "core/types.h"

namespace iommud {

// Why an attachment leaked (label values of iommud_leaked_attachments{reason}).
enum class LeakReason {
  kReleasedWhileOwned,       // the group emptied while owned (owner_cnt != 0)
  kReleasedWhileAttached,    // the group emptied while on a non-default domain
  kRestoreDefaultFailed,     // ReleaseOwnership could not return the group to its default domain
  kRidOnUnknownDomain,       // hardware: a RID points at a domain the registry does not know
  kRidOnWrongDomain,         // hardware: a RID points at another domain than the registry says
  kReleasedRidTranslates,    // hardware: a RID of no device still has a valid entry
  kOwnerGone,                // an owner domain is still attached after its owner went away
  kUnaccountedOwnerCount,    // owner_cnt that no bound driver or owner accounts for
  kOrphanDomain,             // hardware: a domain the registry does not know
  kHandoverHeldByOtherUid,   // host: a handed-over group held open by a process of another uid
  kHeldAfterTakeBack,        // host: a group taken back from its VMM still held open
};
absl::string_view LeakReasonName(LeakReason reason);  // "released_while_owned", ...

struct LeakRecord {
  LeakReason reason;
  std::string unit;
  GroupId group = 0;
  DomainId domain = 0;
  Rid rid = 0;
  std::string device;
  std::string owner;
  std::string detail = {};  // what the backend saw (hand-over leaks: the holders, pids and uids)
};

// One state change, for the event stream.
struct RegistryEvent {
  enum class Kind {
    kDeviceProbed, kDeviceReleased, kOwnershipClaimed, kOwnershipReleased, kDomainAllocated,
    kDomainFreed, kAttached, kDetached, kMapped, kUnmapped, kFault, kLeakFound, kLeakRepaired,
    kLeaseExpired,  // an ownership lease lapsed; a kOwnershipReleased for the group follows
    // The kernel asks for an owned device back (its removal waits for the owner's device fds):
    // `device`, `owner`; a kReleaseResolved follows with the outcome in `detail`.
    kReleaseRequested,
    kReleaseResolved,  // detail: "released", "revoked" or "revoke_failed: <why>"
  };
  Kind kind;
  std::string unit;
  GroupId group = 0;
  DomainId domain = 0;
  std::string device;
  std::string owner;
  uint64_t iova = 0;
  uint64_t size = 0;
  std::string detail;  // human-readable summary
  int64_t lease_expiry_unix_nanos = 0;  // kLeaseExpired: when the lease lapsed
  int64_t time_unix_nanos = 0;  // when it happened (set by the registry)
};

class RegistryObserver {
 public:
  virtual ~RegistryObserver() = default;

  // A group mutex was acquired after `wait` (contended: the first try-lock failed).
  virtual void OnGroupLockAcquired(absl::Duration wait, bool contended) {}
  // A group mutex was released after being held for `hold`.
  virtual void OnGroupLockReleased(absl::Duration hold) {}
  // The registry's id-map lock had to wait `wait` (called only when contended: the first try-lock
  // failed; uncontended acquisitions are not timed).
  virtual void OnRegistryLockAcquired(absl::Duration wait, bool contended) {}
  virtual void OnEvent(const RegistryEvent& event) {}
  virtual void OnLeak(const LeakRecord& leak) {}
  virtual void OnFault(const FaultRecord& fault) {}
};

}  // namespace iommud

#endif  // IOMMUD_CORE_REGISTRY_OBSERVER_H_
