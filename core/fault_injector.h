// FaultInjector: scripted failures at named injection points, for test engineers (the
// InjectFault RPCs) and for the fail-nth sweeps.
//
// Points are hit by the code that owns them: backend.* by the registry before each backend call
// (RegistryOptions::faults), store.write by FaultInjectingStateStore, pgtable.alloc,
// cmdq.sync_timeout and host.* inside the backends (BackendHooks::faults). A fault fires on the Nth
// matching hit, on every Kth, or with a probability from a seeded generator; it can add latency,
// fail with a chosen code, or both; and it can be scoped to a group or a device: the hit then
// passes the FaultScope of the operation explicitly (the registry's CallContext, core/store/
// call_context.h). Only the points in ScopedFaultPoints() carry a scope. No injector is
// process-wide: each daemon (or test) owns its own and hands it to its registry, backend and
// store through their options. Thread-safe.
#ifndef IOMMUD_CORE_FAULT_INJECTOR_H_
#define IOMMUD_CORE_FAULT_INJECTOR_H_

#include <atomic>
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
// The points whose hits carry the operation's FaultScope (backend.*, store.write); a fault scoped
// to a group or device is refused at any other point.
bool IsScopedFaultPoint(absl::string_view point);

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

class FaultInjector {
 public:
  // INVALID_ARGUMENT (INVALID_FAULT) for an unknown point, n == 0, a probability outside (0, 1],
  // an OK code with fail set, a negative latency, or a group/device scope at a point whose hits
  // carry none (IsScopedFaultPoint). Returns the fault's id.
  absl::StatusOr<uint64_t> Add(const FaultSpec& spec);
  std::vector<FaultState> List() const;
  // Removes every fault; returns how many there were.
  size_t Clear();
  // Called when a fault fires (for iommud_faults_injected_total{point}); set before use.
  void SetOnInjected(std::function<void(absl::string_view point)> on_injected);

  // At injection point `point`, in the operation `scope` names (the empty scope: none, which only
  // unscoped faults match): sleeps the latency of matching faults, then returns the error of the
  // first one that fires (OK when none does). Cheap when no fault is set.
  absl::Status Hit(absl::string_view point, const FaultScope& scope = FaultScope());

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
