// CrashPoints: a test hook that ends the process at an exact durable step, as `kill -9` would.
//
// A durable step is a write that outlives the process: every state-store write (a commit, a stored
// reply, an expiry of request records), every write the emulated backend makes to its memory file,
// and the start-up's topology-pending marker. The crash-point sweep (tests/server/
// crash_point_sweep_test.cc) runs a path once per step N with `crash_before_step = N`, so the
// daemon dies with steps 1..N-1 done and step N not, then restarts it and checks that it comes back.
//
// Counting starts when the armed phase is reached: kStart counts from the daemon's construction
// (the first start's or a recovery's steps), kServing from the moment the daemon reports SERVING
// (a call's steps). The daemon's flags --test_crash_before_step / --test_crash_phase set it; with
// crash_before_step = 0 it only counts.
//
// Thread-safe: steps may be reported from any thread; the count is one sequence.
#ifndef IOMMUD_CORE_CRASH_POINTS_H_
#define IOMMUD_CORE_CRASH_POINTS_H_

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace iommud {

// Called just before a durable step; `what` names it ("store commit", "emulated memory write").
using DurableStepHook = std::function<void(absl::string_view what)>;

class CrashPoints {
 public:
  enum class Phase { kStart, kServing };

  // `crash_before_step` 0: never crash, only count.
  CrashPoints(uint64_t crash_before_step, Phase phase);
  CrashPoints(const CrashPoints&) = delete;
  CrashPoints& operator=(const CrashPoints&) = delete;

  // The daemon reached `phase`: from now on steps count if it is the armed phase.
  void Reached(Phase phase);

  // Counts a durable step when armed; at step `crash_before_step` writes
  // "iommud: crash point N: <what>" to stderr and kills the process with SIGKILL (never returns).
  void BeforeDurableStep(absl::string_view what);

  // A hook calling BeforeDurableStep (this must outlive it).
  DurableStepHook Hook();

  // Steps counted so far.
  uint64_t steps() const { return steps_.load(); }

 private:
  const uint64_t crash_before_step_;
  const Phase phase_;
  std::atomic<bool> armed_;
  std::atomic<uint64_t> steps_{0};
};

// "start" / "serving"; INVALID_ARGUMENT (INVALID_FLAG) otherwise.
absl::StatusOr<CrashPoints::Phase> ParseCrashPhase(absl::string_view value);

}  // namespace iommud

#endif  // IOMMUD_CORE_CRASH_POINTS_H_
