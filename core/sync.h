// Scoped locks for absl::Mutex that ThreadSanitizer can see through.
//
// Debian's Abseil is not built with -fsanitize=thread, so TSan cannot see the synchronization inside
// absl::Mutex and would report every access guarded by one as a race. These wrappers lock the
// absl::Mutex as usual and, in TSan builds only, add the happens-before edges explicitly. All core
// code locks through them (never absl::MutexLock directly); annotations (ABSL_GUARDED_BY, ...) stay on
// the absl::Mutex and are checked by clang's -Wthread-safety as usual.
#ifndef IOMMUD_CORE_SYNC_H_
#define IOMMUD_CORE_SYNC_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#if defined(__SANITIZE_THREAD__)
#define IOMMUD_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IOMMUD_TSAN 1
#endif
#endif

#ifdef IOMMUD_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace iommud {

// Happens-before edges on `mu` for TSan; no-ops in other builds.
inline void TsanAcquire(absl::Mutex* mu) {
#ifdef IOMMUD_TSAN
  __tsan_acquire(mu);
#else
  (void)mu;
#endif
}
inline void TsanRelease(absl::Mutex* mu) {
#ifdef IOMMUD_TSAN
  __tsan_release(mu);
#else
  (void)mu;
#endif
}

// Exclusive lock of `mu`, like absl::MutexLock.
inline void LockMutex(absl::Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) {
  mu->Lock();
  TsanAcquire(mu);
}
// Returns true if `mu` was acquired without waiting.
inline bool TryLockMutex(absl::Mutex* mu) ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true, mu) {
  if (!mu->TryLock()) return false;
  TsanAcquire(mu);
  return true;
}
inline void UnlockMutex(absl::Mutex* mu) ABSL_UNLOCK_FUNCTION(mu) {
  TsanRelease(mu);
  mu->Unlock();
}

// Waits on `cv` until it is signalled or `deadline` passes, with `mu` held (released while
// waiting), like absl::CondVar::WaitWithDeadline plus the TSan edges. Returns true on timeout.
// Callers loop on their own condition, evaluated in their own code with `mu` held: never use
// absl::Mutex::Await with a Condition here, whose evaluation TSan cannot attribute to the lock.
inline bool WaitWithDeadline(absl::CondVar* cv, absl::Mutex* mu, absl::Time deadline)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
  TsanRelease(mu);
  const bool timed_out = cv->WaitWithDeadline(mu, deadline);
  TsanAcquire(mu);
  return timed_out;
}

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(absl::Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { LockMutex(mu_); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { UnlockMutex(mu_); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  absl::Mutex* const mu_;
};

// Shared lock of `mu`, like absl::ReaderMutexLock.
class ABSL_SCOPED_LOCKABLE ReaderMutexLock {
 public:
  explicit ReaderMutexLock(absl::Mutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->ReaderLock();
    TsanAcquire(mu_);
  }
  ~ReaderMutexLock() ABSL_UNLOCK_FUNCTION() {
    TsanRelease(mu_);
    mu_->ReaderUnlock();
  }
  ReaderMutexLock(const ReaderMutexLock&) = delete;
  ReaderMutexLock& operator=(const ReaderMutexLock&) = delete;

 private:
  absl::Mutex* const mu_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_SYNC_H_
