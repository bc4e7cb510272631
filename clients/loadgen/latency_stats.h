// LatencyStats: completed-call counts and latencies of a load run, and their percentiles.
// Thread-safe (one mutex; recording is a vector push).
#ifndef IOMMUD_CLIENTS_LOADGEN_LATENCY_STATS_H_
#define IOMMUD_CLIENTS_LOADGEN_LATENCY_STATS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace iommud {

struct LatencySummary {
  uint64_t ok = 0;
  uint64_t errors = 0;
  absl::Duration elapsed;
  double ops_per_second = 0;
  absl::Duration p50, p90, p99, p999, max;
};

class LatencyStats {
 public:
  void Record(absl::Duration latency, bool ok);
  // Percentiles over every recorded call; `elapsed` is the run's wall time.
  LatencySummary Summarize(absl::Duration elapsed) const;

 private:
  mutable absl::Mutex mu_;
  std::vector<int64_t> nanos_ ABSL_GUARDED_BY(mu_);
  uint64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
};

// The value at quantile `q` (0..1) of sorted `values` (nearest rank); 0 when empty.
int64_t Quantile(const std::vector<int64_t>& sorted, double q);

}  // namespace iommud

#endif  // IOMMUD_CLIENTS_LOADGEN_LATENCY_STATS_H_
