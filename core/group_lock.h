// GroupLock: the scoped lock of one group's mutex, measured for the lock-contention metrics.
//
// It try-locks first. Only a failed try-lock (contention) reads the clock, to time the wait; that
// wait is added to the group's LockStats and reported to the observer. With an observer, the hold
// time is reported on unlock too. With no observer and no contention it costs one try-lock and two
// relaxed atomic increments.
#ifndef IOMMUD_CORE_GROUP_LOCK_H_
#define IOMMUD_CORE_GROUP_LOCK_H_

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/registry_observer.h"
#include "core/sync.h"

namespace iommud {

// Cumulative contention counters of one lock. Thread-safe (relaxed atomics).
struct LockStats {
  std::atomic<uint64_t> acquisitions{0};
  std::atomic<uint64_t> contended{0};
  std::atomic<int64_t> wait_nanos{0};
};

class ABSL_SCOPED_LOCKABLE GroupLock {
 public:
  // Locks `mu`. `stats` (may be null) and `observer` (may be null) are not owned.
  GroupLock(absl::Mutex* mu, LockStats* stats, RegistryObserver* observer)
      ABSL_EXCLUSIVE_LOCK_FUNCTION(mu)
      : mu_(mu), observer_(observer) {
    absl::Duration wait = absl::ZeroDuration();
    const bool contended = !TryLockMutex(mu_);
    if (contended) {
      const absl::Time wait_start = absl::Now();
      LockMutex(mu_);
      wait = absl::Now() - wait_start;
    }
    if (stats != nullptr) {
      stats->acquisitions.fetch_add(1, std::memory_order_relaxed);
      if (contended) {
        stats->contended.fetch_add(1, std::memory_order_relaxed);
        stats->wait_nanos.fetch_add(absl::ToInt64Nanoseconds(wait), std::memory_order_relaxed);
      }
    }
    if (observer_ != nullptr) {
      acquired_at_ = absl::Now();
      observer_->OnGroupLockAcquired(wait, contended);
    }
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

// Scoped shared / exclusive locks of the registry's id-map lock: try-lock first, and only on
// contention time the wait and tell the observer (may be null).
class ABSL_SCOPED_LOCKABLE MapReaderLock {
 public:
  MapReaderLock(absl::Mutex* mu, RegistryObserver* observer) ABSL_SHARED_LOCK_FUNCTION(mu)
      : mu_(mu) {
    if (mu_->ReaderTryLock()) {
      TsanAcquire(mu_);
      return;
    }
    const absl::Time start = absl::Now();
    mu_->ReaderLock();
    TsanAcquire(mu_);
    if (observer != nullptr) observer->OnRegistryLockAcquired(absl::Now() - start, true);
  }
  ~MapReaderLock() ABSL_UNLOCK_FUNCTION() {
    TsanRelease(mu_);
    mu_->ReaderUnlock();
  }
  MapReaderLock(const MapReaderLock&) = delete;
  MapReaderLock& operator=(const MapReaderLock&) = delete;

 private:
  absl::Mutex* const mu_;
};

class ABSL_SCOPED_LOCKABLE MapWriterLock {
 public:
  MapWriterLock(absl::Mutex* mu, RegistryObserver* observer) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu)
      : mu_(mu) {
    if (TryLockMutex(mu_)) return;
    const absl::Time start = absl::Now();
    LockMutex(mu_);
    if (observer != nullptr) observer->OnRegistryLockAcquired(absl::Now() - start, true);
  }
  ~MapWriterLock() ABSL_UNLOCK_FUNCTION() { UnlockMutex(mu_); }
  MapWriterLock(const MapWriterLock&) = delete;
  MapWriterLock& operator=(const MapWriterLock&) = delete;

 private:
  absl::Mutex* const mu_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_GROUP_LOCK_H_
