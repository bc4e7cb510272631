#include "clients/loadgen/latency_stats.h"

#include <algorithm>
#include <cmath>

#include "core/sync.h"

namespace iommud {

int64_t Quantile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

void LatencyStats::Record(absl::Duration latency, bool ok) {
  MutexLock lock(&mu_);
  if (ok) {
    nanos_.push_back(absl::ToInt64Nanoseconds(latency));
  } else {
    ++errors_;
  }
}

LatencySummary LatencyStats::Summarize(absl::Duration elapsed) const {
  std::vector<int64_t> sorted;
  LatencySummary summary;
  {
    MutexLock lock(&mu_);
    sorted = nanos_;
    summary.errors = errors_;
  }
  std::sort(sorted.begin(), sorted.end());
  summary.ok = sorted.size();
  summary.elapsed = elapsed;
  summary.ops_per_second =
      elapsed > absl::ZeroDuration() ? summary.ok / absl::ToDoubleSeconds(elapsed) : 0;
  summary.p50 = absl::Nanoseconds(Quantile(sorted, 0.5));
  summary.p90 = absl::Nanoseconds(Quantile(sorted, 0.9));
  summary.p99 = absl::Nanoseconds(Quantile(sorted, 0.99));
  summary.p999 = absl::Nanoseconds(Quantile(sorted, 0.999));
  summary.max = absl::Nanoseconds(sorted.empty() ? 0 : sorted.back());
  return summary;
}

}  // namespace iommud
