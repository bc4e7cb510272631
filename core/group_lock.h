// GroupLock: the scoped lock of one group's mutex, timed for the lock-contention metrics.
//
// With no observer it is a plain lock (no clock reads). With an observer it try-locks first; only a
// failed try-lock (contention) reads the clock to time the wait. The hold time is reported on unlock.
#ifndef IOMMUD_CORE_GROUP_LOCK_H_
#define IOMMUD_CORE_GROUP_LOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/registry_observer.h"
#include "core/sync.h"

namespace iommud {

class ABSL_SCOPED_LOCKABLE GroupLock {
 public:
  // Locks `mu`; `observer` (may be null, not owned) is told the wait and, later, the hold time.
  GroupLock(absl::Mutex* mu, RegistryObserver* observer) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu)
      : mu_(mu), observer_(observer) {
    if (observer_ == nullptr) {
      LockMutex(mu_);
      return;
    }
    if (TryLockMutex(mu_)) {
      acquired_at_ = absl::Now();
      observer_->OnGroupLockAcquired(absl::ZeroDuration(), /*contended=*/false);
      return;
    }
    const absl::Time wait_start = absl::Now();
    LockMutex(mu_);
    acquired_at_ = absl::Now();
    observer_->OnGroupLockAcquired(acquired_at_ - wait_start, /*contended=*/true);
  }

  ~GroupLock() ABSL_UNLOCK_FUNCTION() {
    const absl::Duration hold =
        observer_ == nullptr ? absl::ZeroDuration() : absl::Now() - acquired_at_;
    UnlockMutex(mu_);
    if (observer_ != nullptr) observer_->OnGroupLockReleased(hold);
  }

  GroupLock(const GroupLock&) = delete;
  GroupLock& operator=(const GroupLock&) = delete;

 private:
  absl::Mutex* const mu_;
  RegistryObserver* const observer_;
  absl::Time acquired_at_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_GROUP_LOCK_H_
