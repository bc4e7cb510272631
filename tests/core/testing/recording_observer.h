// RecordingObserver: a RegistryObserver that keeps what it is told, for assertions. Thread-safe.
#ifndef IOMMUD_TESTS_CORE_TESTING_RECORDING_OBSERVER_H_
#define IOMMUD_TESTS_CORE_TESTING_RECORDING_OBSERVER_H_

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/registry_observer.h"
#include "core/sync.h"

namespace iommud {

class RecordingObserver : public RegistryObserver {
 public:
  void OnGroupLockAcquired(absl::Duration wait, bool contended) override {
    MutexLock lock(&mu_);
    ++acquired_;
    if (contended) ++contended_;
  }
  void OnGroupLockReleased(absl::Duration hold) override {
    MutexLock lock(&mu_);
    ++released_;
  }
  void OnEvent(const RegistryEvent& event) override {
    MutexLock lock(&mu_);
    events_.push_back(event);
  }
  void OnLeak(const LeakRecord& leak) override {
    MutexLock lock(&mu_);
    leaks_.push_back(leak);
  }
  void OnFault(const FaultRecord& fault) override {
    MutexLock lock(&mu_);
    faults_.push_back(fault);
  }

  std::vector<LeakRecord> leaks() const {
    MutexLock lock(&mu_);
    return leaks_;
  }
  std::vector<RegistryEvent> events() const {
    MutexLock lock(&mu_);
    return events_;
  }
  std::vector<FaultRecord> faults() const {
    MutexLock lock(&mu_);
    return faults_;
  }
  uint64_t locks_acquired() const {
    MutexLock lock(&mu_);
    return acquired_;
  }
  uint64_t locks_released() const {
    MutexLock lock(&mu_);
    return released_;
  }
  uint64_t locks_contended() const {
    MutexLock lock(&mu_);
    return contended_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<RegistryEvent> events_ ABSL_GUARDED_BY(mu_);
  std::vector<LeakRecord> leaks_ ABSL_GUARDED_BY(mu_);
  std::vector<FaultRecord> faults_ ABSL_GUARDED_BY(mu_);
  uint64_t acquired_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t released_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t contended_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace iommud

#endif  // IOMMUD_TESTS_CORE_TESTING_RECORDING_OBSERVER_H_
