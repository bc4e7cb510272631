// LeaseReaper: its passes release lapsed leases through Registry::ExpireLeases and export
// iommud_leases_expired_total / iommud_leases_active; its thread runs passes until stopped.
#include "server/state/lease_reaper.h"

#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "core/backend/backend_factory.h"
#include "core/clock.h"
#include "core/registry.h"
#include "gtest/gtest.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

// Notifies once a LEASE_EXPIRED event is seen.
class ExpiryObserver : public RegistryObserver {
 public:
  void OnEvent(const RegistryEvent& event) override {
    if (event.kind == RegistryEvent::Kind::kLeaseExpired && !expired_.HasBeenNotified()) {
      expired_.Notify();
    }
  }
  absl::Notification& expired() { return expired_; }

 private:
  absl::Notification expired_;
};

class LeaseReaperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(backend_, CreateBackend("software"));
    RegistryOptions options;
    options.backend = backend_.get();
    options.observer = &observer_;
    options.clock = &clock_;
    ASSERT_OK_AND_ASSIGN(registry_, Registry::Create(options));
    UnitCaps caps;
    caps.pgsize_bitmap = kPage4K;
    caps.iova_bits = 32;
    ASSERT_OK(registry_->AddUnit("u0", caps));
    ProbeRequest probe;
    probe.unit = "u0";
    probe.device = "d0";
    probe.rid = 0x10;
    ASSERT_OK_AND_ASSIGN(DeviceInfo device, registry_->ProbeDevice(probe));
    group_ = device.group;
  }

  double Value(const std::string& name) {
    for (const prometheus::MetricFamily& family : metrics_.Collect()) {
      if (family.name != name || family.metric.empty()) continue;
      const prometheus::ClientMetric& metric = family.metric.front();
      return family.type == prometheus::MetricType::Gauge ? metric.gauge.value
                                                          : metric.counter.value;
    }
    return -1;
  }

  std::unique_ptr<IommuBackend> backend_;
  ExpiryObserver observer_;
  ManualClock clock_;
  std::unique_ptr<Registry> registry_;
  prometheus::Registry metrics_;
  GroupId group_ = 0;
};

TEST_F(LeaseReaperTest, APassReleasesLapsedLeasesAndCountsThem) {
  LeaseReaper reaper(registry_.get(), absl::ZeroDuration(), &metrics_);
  ASSERT_OK(registry_->ClaimOwnership(group_, "vm", absl::Seconds(5)));
  EXPECT_TRUE(reaper.ReapNow().expired.empty());
  EXPECT_EQ(Value("iommud_leases_active"), 1);
  EXPECT_EQ(Value("iommud_leases_expired_total"), 0);
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(reaper.ReapNow().expired.size(), 1u);
  EXPECT_EQ(Value("iommud_leases_active"), 0);
  EXPECT_EQ(Value("iommud_leases_expired_total"), 1);
  EXPECT_EQ(Value("iommud_lease_expiry_failures_total"), 0);
  EXPECT_EQ(registry_->GetGroup(group_)->owner, "");
}

TEST_F(LeaseReaperTest, TheThreadReapsUntilStopped) {
  ASSERT_OK(registry_->ClaimOwnership(group_, "vm", absl::Seconds(5)));
  clock_.Advance(absl::Seconds(6));
  LeaseReaper reaper(registry_.get(), absl::Milliseconds(10), &metrics_);
  reaper.Start();
  ASSERT_TRUE(observer_.expired().WaitForNotificationWithTimeout(absl::Seconds(60)));
  reaper.Stop();
  reaper.Stop();  // idempotent
  EXPECT_EQ(registry_->GetGroup(group_)->owner, "");
  EXPECT_EQ(Value("iommud_leases_expired_total"), 1);
}

TEST_F(LeaseReaperTest, WithoutAnIntervalThereIsNoThread) {
  ASSERT_OK(registry_->ClaimOwnership(group_, "vm", absl::Seconds(5)));
  clock_.Advance(absl::Seconds(6));
  {
    LeaseReaper reaper(registry_.get(), absl::ZeroDuration(), nullptr);
    reaper.Start();
  }  // nothing ran
  EXPECT_EQ(registry_->GetGroup(group_)->owner, "vm");
  EXPECT_FALSE(observer_.expired().HasBeenNotified());
}

}  // namespace
}  // namespace iommud
