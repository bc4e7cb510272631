#include "core/fault_injector.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/sync.h"

namespace iommud {

const std::vector<std::string>& FaultPoints() {
  static const std::vector<std::string> points = {
      "backend.add_unit", "backend.alloc_domain", "backend.free_domain", "backend.attach",
      "backend.release",  "backend.map",          "backend.unmap",       "backend.invalidate",
      "pgtable.alloc",    "cmdq.sync_timeout",    "store.write",
      // The linux backend's kernel steps (core/host/linux_backend.h).
      "host.bind", "host.open_group", "host.set_container", "host.unset_container",
      "host.map_dma", "host.unmap_dma", "host.restore", "host.handover", "host.take_back"};
  return points;
}

bool IsScopedFaultPoint(absl::string_view point) {
  return absl::StartsWith(point, "backend.") || point == "store.write";
}

absl::StatusOr<uint64_t> FaultInjector::Add(const FaultSpec& spec) {
  auto invalid = [&](absl::string_view why) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFault,
                 absl::StrCat("fault at '", spec.point, "': ", why), {{"point", spec.point}});
  };
  const std::vector<std::string>& points = FaultPoints();
  if (spec.point != "*" && std::find(points.begin(), points.end(), spec.point) == points.end()) {
    return invalid("unknown injection point");
  }
  if (spec.mode != FaultSpec::Mode::kProbability && spec.n == 0) return invalid("n must be >= 1");
  if (spec.mode == FaultSpec::Mode::kProbability &&
      !(spec.probability > 0 && spec.probability <= 1)) {
    return invalid("probability must be in (0, 1]");
  }
  if (spec.fail && spec.code == absl::StatusCode::kOk) return invalid("a failure needs a code");
  if (!spec.fail && spec.latency <= absl::ZeroDuration()) {
    return invalid("a fault that does not fail must add latency");
  }
  if (spec.latency < absl::ZeroDuration()) return invalid("negative latency");
  if ((spec.group != 0 || !spec.device.empty()) && spec.point != "*" &&
      !IsScopedFaultPoint(spec.point)) {
    return invalid(
        "only backend.* and store.write hits carry a group and device: this point "
        "cannot be scoped");
  }
  MutexLock lock(&mu_);
  FaultState state;
  state.id = next_id_++;
  state.spec = spec;
  faults_.push_back(state);
  rngs_.emplace_back(spec.seed);
  armed_.store(true);
  return state.id;
}

std::vector<FaultState> FaultInjector::List() const {
  MutexLock lock(&mu_);
  return faults_;
}

size_t FaultInjector::Clear() {
  MutexLock lock(&mu_);
  const size_t count = faults_.size();
  faults_.clear();
  rngs_.clear();
  armed_.store(false);
  return count;
}

void FaultInjector::SetOnInjected(std::function<void(absl::string_view)> on_injected) {
  on_injected_ = std::move(on_injected);
}

absl::Status FaultInjector::Hit(absl::string_view point, const FaultScope& scope) {
  if (!armed_.load(std::memory_order_relaxed)) return absl::OkStatus();
  const GroupId group = scope.group;
  const std::string& device = scope.device;
  absl::Duration latency = absl::ZeroDuration();
  absl::Status error;
  {
    MutexLock lock(&mu_);
    for (size_t i = 0; i < faults_.size(); ++i) {
      FaultState& fault = faults_[i];
      const FaultSpec& spec = fault.spec;
      if (spec.point != "*" && spec.point != point) continue;
      if (spec.group != 0 && spec.group != group) continue;
      if (!spec.device.empty() && spec.device != device) continue;
      ++fault.hits;
      bool fires = false;
      switch (spec.mode) {
        case FaultSpec::Mode::kNth: fires = fault.hits == spec.n; break;
        case FaultSpec::Mode::kEveryKth: fires = fault.hits % spec.n == 0; break;
        case FaultSpec::Mode::kProbability:
          fires = std::uniform_real_distribution<double>(0, 1)(rngs_[i]) < spec.probability;
          break;
      }
      if (!fires) continue;
      ++fault.injected;
      latency += spec.latency;
      if (spec.fail && error.ok()) {
        error = Error(spec.code, reason::kInjectedFault,
                      absl::StrCat("fault injected at ", point, " (fault ", fault.id, ")"),
                      {{"point", std::string(point)}, {"fault_id", absl::StrCat(fault.id)}});
      }
      if (on_injected_) on_injected_(point);
    }
  }
  if (latency > absl::ZeroDuration()) absl::SleepFor(latency);
  return error;
}

}  // namespace iommud
