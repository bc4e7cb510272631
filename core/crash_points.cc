#include "core/crash_points.h"

#include <signal.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {

CrashPoints::CrashPoints(uint64_t crash_before_step, Phase phase)
    : crash_before_step_(crash_before_step), phase_(phase), armed_(phase == Phase::kStart) {}

void CrashPoints::Reached(Phase phase) {
  if (phase == phase_) armed_.store(true);
}

void CrashPoints::BeforeDurableStep(absl::string_view what) {
  if (!armed_.load()) return;
  const uint64_t step = steps_.fetch_add(1) + 1;
  if (step != crash_before_step_) return;
  const std::string line = absl::StrCat("iommud: crash point ", step, ": ", what, "\n");
  (void)!write(STDERR_FILENO, line.data(), line.size());
  kill(getpid(), SIGKILL);
  for (;;) pause();  // SIGKILL cannot be blocked: never reached
}

DurableStepHook CrashPoints::Hook() {
  return [this](absl::string_view what) { BeforeDurableStep(what); };
}

absl::StatusOr<CrashPoints::Phase> ParseCrashPhase(absl::string_view value) {
  if (value == "start") return CrashPoints::Phase::kStart;
  if (value == "serving") return CrashPoints::Phase::kServing;
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFlag,
               absl::StrCat("--test_crash_phase=", value, ": expected start or serving"),
               {{"flag", "test_crash_phase"}, {"value", std::string(value)}});
}

}  // namespace iommud
