// FaultInjector: scripted failures at named injection points, for test engineers (the
// InjectFault RPCs) and for the fail-nth sweeps.
//
// Points are hit by the code that owns them (backend.attach, backend.map, ...; see
// FaultInjectingBackend). A fault fires on the Nth matching hit, on every Kth, or with a
// probability from a seeded generator; it can add latency, fail with a chosen code, or both; and
// it can be scoped to a group or a device (the registry names the group and device an operation
// works on with a ScopedFaultScope). Thread-safe.
#ifndef IOMMUD_CORE_FAULT_INJECTOR_H_
#define IOMMUD_CORE_FAULT_INJECTOR_H_

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/types.h"

namespace iommud {

// The injection points the core, the backends and the state store provide (store.write: see
// core/store/fault_injecting_state_store.h).
const std::vector<std::string>& FaultPoints();

class FaultInjector;
// The injector that the backends' internal points consult (pgtable.alloc in both page tables,
// cmdq.sync_timeout in the emulated backend); null, the default, disables them. Set by the daemon
// with --allow_fault_injection, and by tests (who reset it to null). Thread-safe.
void SetBackendFaultInjector(FaultInjector* injector);
// Hit `point` on the backend injector, if one is set (OK otherwise).
absl::Status HitBackendPoint(absl::string_view point);

struct FaultSpec {
  enum class Mode { kNth, kEveryKth, kProbability };
  std::string point;  // one of FaultPoints(), or "*" for every point
  Mode mode = Mode::kNth;
  uint64_t n = 1;            // kNth: the hit that fails (1-based); kEveryKth: K
  double probability = 0;    // kProbability, in (0, 1]
  uint64_t seed = 1;         // kProbability
  bool fail = true;          // false: only the latency
  absl::StatusCode code = absl::StatusCode::kInternal;
  absl::Duration latency = absl::ZeroDuration();
  GroupId group = 0;         // only hits in this group's operations (0: any)
  std::string device;        // only hits in this device's operations ("": any)
};

struct FaultState {
  uint64_t id = 0;
  FaultSpec spec;
  uint64_t hits = 0;      // matching hits seen
  uint64_t injected = 0;  // times it fired
};

// The group and device the calling thread's current operation works on (hits outside any scope
// match only unscoped faults).
class ScopedFaultScope {
 public:
  ScopedFaultScope(GroupId group, absl::string_view device);
  ~ScopedFaultScope();
  ScopedFaultScope(const ScopedFaultScope&) = delete;
  ScopedFaultScope& operator=(const ScopedFaultScope&) = delete;

 private:
  GroupId previous_group_;
  std::string previous_device_;
};

class FaultInjector {
 public:
  // INVALID_ARGUMENT (INVALID_FAULT) for an unknown point, n == 0, a probability outside (0, 1],
  // an OK code with fail set, or a negative latency. Returns the fault's id.
  absl::StatusOr<uint64_t> Add(const FaultSpec& spec);
  std::vector<FaultState> List() const;
  // Removes every fault; returns how many there were.
  size_t Clear();
  // Called when a fault fires (for iommud_faults_injected_total{point}); set before use.
  void SetOnInjected(std::function<void(absl::string_view point)> on_injected);

  // At injection point `point`: sleeps the latency of matching faults, then returns the error of
  // the first one that fires (OK when none does). Cheap when no fault is set.
  absl::Status Hit(absl::string_view point);

 private:
  mutable absl::Mutex mu_;
  std::vector<FaultState> faults_ ABSL_GUARDED_BY(mu_);
  std::vector<std::mt19937_64> rngs_ ABSL_GUARDED_BY(mu_);  // one per fault
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::atomic<bool> armed_{false};
  std::function<void(absl::string_view)> on_injected_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_FAULT_INJECTOR_H_
