// ClientLimiter (server/security/limits.h) with a ManualClock: the per-principal token bucket,
// calls in flight, watcher slots, the bounded table of principals, request checks, the metric, and
// Limits::Validate. No test waits on real time.
#include "server/security/limits.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

class ClientLimiterTest : public ::testing::Test {
 protected:
  // A limiter with `limits` on the manual clock and the test's metrics registry.
  void Make(const Limits& limits) {
    limiter_ = std::make_unique<ClientLimiter>(limits, &clock_, metrics_.get());
  }

  double Limited(const std::string& reason) const {
    for (const auto& family : metrics_->Collect()) {
      if (family.name != "iommud_limited_total") continue;
      for (const auto& metric : family.metric) {
        for (const auto& label : metric.label) {
          if (label.name == "reason" && label.value == reason) return metric.counter.value;
        }
      }
    }
    return -1;  // not registered
  }

  static Limits Unlimited() {
    Limits limits;
    limits.rate_per_client = 0;
    return limits;
  }

  ManualClock clock_;
  std::shared_ptr<prometheus::Registry> metrics_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<ClientLimiter> limiter_;
};

TEST_F(ClientLimiterTest, TokenBucketAllowsTheBurstThenTheRate) {
  Limits limits;
  limits.rate_per_client = 10;  // one token per 100 ms
  limits.burst_per_client = 3;
  Make(limits);
  for (int i = 0; i < 3; ++i) EXPECT_OK(limiter_->AdmitCall("uid:1"));
  absl::StatusOr<ClientLimiter::Permit> refused = limiter_->AdmitCall("uid:1");
  EXPECT_ERROR(refused, kResourceExhausted, "RATE_LIMITED");
  const ErrorMetadata metadata = GetErrorMetadata(refused.status());
  EXPECT_EQ(metadata.at("principal"), "uid:1");
  EXPECT_EQ(metadata.at("limit"), "10");
  EXPECT_EQ(metadata.at("burst"), "3");
  EXPECT_EQ(metadata.at("retry_after_ms"), "100");

  clock_.Advance(absl::Milliseconds(99));
  EXPECT_ERROR(limiter_->AdmitCall("uid:1"), kResourceExhausted, "RATE_LIMITED");
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_OK(limiter_->AdmitCall("uid:1"));
  EXPECT_ERROR(limiter_->AdmitCall("uid:1"), kResourceExhausted, "RATE_LIMITED");

  // A long pause refills up to the burst, not beyond.
  clock_.Advance(absl::Hours(1));
  for (int i = 0; i < 3; ++i) EXPECT_OK(limiter_->AdmitCall("uid:1"));
  EXPECT_ERROR(limiter_->AdmitCall("uid:1"), kResourceExhausted, "RATE_LIMITED");
  EXPECT_EQ(Limited("RATE_LIMITED"), 4);
}

TEST_F(ClientLimiterTest, EachPrincipalHasItsOwnBucket) {
  Limits limits;
  limits.rate_per_client = 1;
  limits.burst_per_client = 2;
  Make(limits);
  EXPECT_OK(limiter_->AdmitCall("uid:1"));
  EXPECT_OK(limiter_->AdmitCall("uid:1"));
  EXPECT_ERROR(limiter_->AdmitCall("uid:1"), kResourceExhausted, "RATE_LIMITED");
  EXPECT_OK(limiter_->AdmitCall("uid:2"));
  EXPECT_OK(limiter_->AdmitWatcher("insecure:127.0.0.1"));
  EXPECT_OK(limiter_->AdmitCall("insecure:127.0.0.1"));
  EXPECT_ERROR(limiter_->AdmitCall("insecure:127.0.0.1"), kResourceExhausted, "RATE_LIMITED");
  EXPECT_ERROR(limiter_->AdmitCall("uid:1"), kResourceExhausted, "RATE_LIMITED");
}

TEST_F(ClientLimiterTest, ZeroRateIsUnlimited) {
  Make(Unlimited());
  for (int i = 0; i < 10000; ++i) ASSERT_OK(limiter_->AdmitCall("uid:1"));
  EXPECT_EQ(Limited("RATE_LIMITED"), 0);
}

TEST_F(ClientLimiterTest, CallsInFlightArePerPrincipalAndReleasedWithThePermit) {
  Limits limits = Unlimited();
  limits.max_calls_per_client = 2;
  Make(limits);
  ASSERT_OK_AND_ASSIGN(ClientLimiter::Permit first, limiter_->AdmitCall("uid:1"));
  ASSERT_OK_AND_ASSIGN(ClientLimiter::Permit second, limiter_->AdmitCall("uid:1"));
  absl::StatusOr<ClientLimiter::Permit> third = limiter_->AdmitCall("uid:1");
  EXPECT_ERROR(third, kResourceExhausted, "TOO_MANY_CALLS");
  EXPECT_EQ(GetErrorMetadata(third.status()).at("limit"), "2");
  EXPECT_EQ(GetErrorMetadata(third.status()).at("principal"), "uid:1");
  ASSERT_OK_AND_ASSIGN(ClientLimiter::Permit other, limiter_->AdmitCall("uid:2"));

  // Moving a permit moves the slot; it is given back once.
  ClientLimiter::Permit moved = std::move(first);
  EXPECT_FALSE(first.held());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_TRUE(moved.held());
  EXPECT_ERROR(limiter_->AdmitCall("uid:1"), kResourceExhausted, "TOO_MANY_CALLS");
  moved.reset();
  moved.reset();
  ASSERT_OK_AND_ASSIGN(ClientLimiter::Permit again, limiter_->AdmitCall("uid:1"));
  EXPECT_ERROR(limiter_->AdmitCall("uid:1"), kResourceExhausted, "TOO_MANY_CALLS");
  EXPECT_EQ(Limited("TOO_MANY_CALLS"), 3);
}

TEST_F(ClientLimiterTest, WatchersPerPrincipalAndOverall) {
  Limits limits = Unlimited();
  limits.max_watchers_per_client = 2;
  limits.max_watchers = 3;
  limits.max_calls_per_client = 1;
  Make(limits);
  std::vector<ClientLimiter::Permit> held;
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(ClientLimiter::Permit permit, limiter_->AdmitWatcher("uid:1"));
    held.push_back(std::move(permit));
  }
  absl::StatusOr<ClientLimiter::Permit> refused = limiter_->AdmitWatcher("uid:1");
  EXPECT_ERROR(refused, kResourceExhausted, "TOO_MANY_WATCHERS");
  EXPECT_EQ(GetErrorMetadata(refused.status()).at("scope"), "client");
  // Watchers are not calls in flight.
  EXPECT_OK(limiter_->AdmitCall("uid:1"));

  ASSERT_OK_AND_ASSIGN(ClientLimiter::Permit third, limiter_->AdmitWatcher("uid:2"));
  EXPECT_EQ(limiter_->watchers(), 3);
  refused = limiter_->AdmitWatcher("uid:3");
  EXPECT_ERROR(refused, kResourceExhausted, "TOO_MANY_WATCHERS");
  EXPECT_EQ(GetErrorMetadata(refused.status()).at("scope"), "daemon");
  EXPECT_EQ(GetErrorMetadata(refused.status()).at("limit"), "3");

  held.pop_back();
  EXPECT_EQ(limiter_->watchers(), 2);
  EXPECT_OK(limiter_->AdmitWatcher("uid:3"));
  EXPECT_EQ(Limited("TOO_MANY_WATCHERS"), 2);
}

TEST_F(ClientLimiterTest, IdlePrincipalsAreForgottenAtOnceWithoutARate) {
  Make(Unlimited());
  for (int i = 0; i < 1000; ++i) {
    ASSERT_OK(limiter_->AdmitCall("uid:" + std::to_string(i)));
  }
  EXPECT_EQ(limiter_->tracked_clients(), 0u);
  ASSERT_OK_AND_ASSIGN(ClientLimiter::Permit busy, limiter_->AdmitCall("uid:1"));
  EXPECT_EQ(limiter_->tracked_clients(), 1u);
  busy.reset();
  EXPECT_EQ(limiter_->tracked_clients(), 0u);
}

TEST_F(ClientLimiterTest, TheTableOfPrincipalsIsBounded) {
  Limits limits;
  limits.rate_per_client = 1;
  limits.burst_per_client = 1;
  limits.max_tracked_clients = 2;
  Make(limits);
  // Both spend their token: remembered (their buckets are not full) though nothing is in flight.
  EXPECT_OK(limiter_->AdmitCall("uid:1"));
  EXPECT_OK(limiter_->AdmitCall("uid:2"));
  EXPECT_EQ(limiter_->tracked_clients(), 2u);
  absl::StatusOr<ClientLimiter::Permit> refused = limiter_->AdmitCall("uid:3");
  EXPECT_ERROR(refused, kResourceExhausted, "TOO_MANY_CLIENTS");
  EXPECT_EQ(GetErrorMetadata(refused.status()).at("limit"), "2");
  // Forgetting uid:1 early would hand it a fresh bucket: it must still be limited.
  EXPECT_ERROR(limiter_->AdmitCall("uid:1"), kResourceExhausted, "RATE_LIMITED");

  // Once their buckets are full again they equal fresh entries and make room.
  clock_.Advance(absl::Seconds(1));
  EXPECT_OK(limiter_->AdmitCall("uid:3"));
  EXPECT_LE(limiter_->tracked_clients(), 2u);
  for (int i = 4; i < 100; ++i) {
    clock_.Advance(absl::Seconds(1));
    EXPECT_OK(limiter_->AdmitCall("uid:" + std::to_string(i)));
    EXPECT_LE(limiter_->tracked_clients(), 2u);
  }
  EXPECT_EQ(Limited("TOO_MANY_CLIENTS"), 1);
}

TEST_F(ClientLimiterTest, BusyPrincipalsAreNeverForgotten) {
  Limits limits = Unlimited();
  limits.max_tracked_clients = 1;
  limits.max_calls_per_client = 1;
  Make(limits);
  ASSERT_OK_AND_ASSIGN(ClientLimiter::Permit busy, limiter_->AdmitCall("uid:1"));
  EXPECT_ERROR(limiter_->AdmitCall("uid:2"), kResourceExhausted, "TOO_MANY_CLIENTS");
  // uid:1's in-flight count survived uid:2's attempt.
  EXPECT_ERROR(limiter_->AdmitCall("uid:1"), kResourceExhausted, "TOO_MANY_CALLS");
  busy.reset();
  EXPECT_OK(limiter_->AdmitCall("uid:2"));
}

TEST_F(ClientLimiterTest, CheckRequestAddsThePrincipalAndCounts) {
  Limits limits;
  limits.request.max_map_bytes = 1 << 20;
  limits.request.max_string_bytes = 32;
  Make(limits);
  iommu::v1::MapRequest map;
  map.set_domain_id(1);
  map.set_size(1 << 20);
  EXPECT_OK(limiter_->CheckRequest("uid:1", map));
  map.set_size((1 << 20) + 1);
  absl::Status status = limiter_->CheckRequest("uid:1", map);
  EXPECT_ERROR(status, kResourceExhausted, "REQUEST_TOO_LARGE");
  EXPECT_EQ(GetErrorMetadata(status).at("principal"), "uid:1");
  EXPECT_EQ(GetErrorMetadata(status).at("limit"), "1048576");
  EXPECT_EQ(Limited("REQUEST_TOO_LARGE"), 1);

  // Unmap of a large range frees; only Map is bounded by size.
  iommu::v1::UnmapRequest unmap;
  unmap.set_size(uint64_t{1} << 40);
  EXPECT_OK(limiter_->CheckRequest("uid:1", unmap));

  iommu::v1::GetDeviceRequest get;
  get.set_device(std::string(33, 'd'));
  status = limiter_->CheckRequest("uid:1", get);
  EXPECT_ERROR(status, kInvalidArgument, "FIELD_TOO_LONG");
  EXPECT_EQ(GetErrorMetadata(status).at("principal"), "uid:1");
}

TEST(LimitsTest, DefaultsAreValid) { EXPECT_OK(Limits().Validate()); }

TEST(LimitsTest, ValidateNamesTheFlag) {
  const std::vector<std::pair<std::function<void(Limits*)>, std::string>> cases = {
      {[](Limits* l) { l->max_message_bytes = 0; }, "max_message_bytes"},
      {[](Limits* l) { l->max_concurrent_streams = -1; }, "max_concurrent_streams"},
      {[](Limits* l) { l->max_grpc_memory_bytes = 0; }, "max_grpc_memory_bytes"},
      {[](Limits* l) { l->max_calls_per_client = 0; }, "max_calls_per_client"},
      {[](Limits* l) { l->max_watchers = 0; }, "max_watchers"},
      {[](Limits* l) { l->max_tracked_clients = 0; }, "max_tracked_clients"},
      {[](Limits* l) { l->request.max_page_size = 0; }, "max_page_size"},
      {[](Limits* l) { l->request.max_map_bytes = 0; }, "max_map_bytes"},
      {[](Limits* l) { l->rate_per_client = -1; }, "rate_per_client"},
      {[](Limits* l) { l->burst_per_client = 0.5; }, "burst_per_client"},
  };
  for (const auto& [mutate, flag] : cases) {
    Limits limits;
    mutate(&limits);
    const absl::Status status = limits.Validate();
    SCOPED_TRACE(flag);
    EXPECT_ERROR(status, kInvalidArgument, "INVALID_FLAG");
    EXPECT_EQ(GetErrorMetadata(status)["flag"], flag);
  }
  Limits no_rate;
  no_rate.rate_per_client = 0;
  no_rate.burst_per_client = 0;  // irrelevant without a rate
  EXPECT_OK(no_rate.Validate());
}

}  // namespace
}  // namespace iommud
