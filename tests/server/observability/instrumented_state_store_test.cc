// InstrumentedStateStore: every failed call of the wrapped store counts in
// iommud_store_failures_total{op}; successes do not; every op's series exists from the start.
#include "server/observability/instrumented_state_store.h"

#include <prometheus/registry.h>

#include <map>
#include <string>

#include "core/error.h"
#include "core/store/forwarding_state_store.h"
#include "core/store/in_memory_state_store.h"
#include "gtest/gtest.h"

namespace iommud {
namespace {

// Commits fail while `fail` is set.
class FlakyStore : public ForwardingStateStore {
 public:
  explicit FlakyStore(StateStore* wrapped) : ForwardingStateStore(wrapped) {}
  absl::Status Commit(const StoreBatch& batch) override {
    if (fail) return absl::UnavailableError("disk full");
    return ForwardingStateStore::Commit(batch);
  }
  bool fail = false;
};

// op -> value of iommud_store_failures_total.
std::map<std::string, double> Failures(prometheus::Registry& registry) {
  std::map<std::string, double> values;
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != "iommud_store_failures_total") continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        if (label.name == "op") values[label.value] = metric.counter.value;
      }
    }
  }
  return values;
}

TEST(InstrumentedStateStoreTest, CountsFailedCallsByOp) {
  InMemoryStateStore memory;
  FlakyStore flaky(&memory);
  prometheus::Registry registry;
  InstrumentedStateStore store(&flaky, &registry);
  const std::map<std::string, double> zero = {{"commit", 0},
                                              {"expire_requests", 0},
                                              {"find_request", 0},
                                              {"load", 0},
                                              {"set_request_response", 0}};
  EXPECT_EQ(Failures(registry), zero);
  EXPECT_TRUE(store.Commit(StoreBatch{}).ok());
  EXPECT_TRUE(store.Load().ok());
  EXPECT_EQ(Failures(registry), zero);
  flaky.fail = true;
  EXPECT_EQ(store.Commit(StoreBatch{}).code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(store.Commit(StoreBatch{}).ok());
  EXPECT_EQ(Failures(registry)["commit"], 2);
  EXPECT_EQ(Failures(registry)["load"], 0);
  EXPECT_EQ(store.kind(), "memory");
}

}  // namespace
}  // namespace iommud
