// AddDroppedOwnerships and ReportHostRecovery: how the start-up reports the groups a previous
// iommud process had claimed, including those whose ownership Registry::Recover dropped because
// they could not be claimed again (docs/semantics.md, the fd store's restart, step 3).
#include "server/host/host_recovery_report.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "core/backend/backend_factory.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using Outcome = host::RecoveredGroup::Outcome;
using ::testing::HasSubstr;

RecoveryReport::DroppedGroup Dropped(GroupId id, std::vector<std::string> devices,
                                     absl::Status why) {
  RecoveryReport::DroppedGroup dropped;
  dropped.group = id;
  dropped.unit = "dmar0";
  dropped.owner = "uid:0/vmm-1";
  dropped.domain = 7;
  dropped.devices = std::move(devices);
  dropped.status = std::move(why);
  return dropped;
}

int KernelGroupOf(const std::string& device) { return device == "0000:00:02.0" ? 4 : -1; }

TEST(AddDroppedOwnershipsTest, AGroupTheJournalReportedKeepsItsOutcomeAndSaysTheOwnershipWent) {
  std::vector<host::RecoveredGroup> recovered(1);
  recovered[0].group = 4;
  recovered[0].outcome = Outcome::kHeld;
  recovered[0].devices = {"0000:00:02.0"};
  recovered[0].detail = "group 4 is held by pid 99";
  AddDroppedOwnerships(
      {Dropped(3, {"0000:00:02.0"},
               Error(absl::StatusCode::kUnavailable, reason::kGroupBusy, "held outside iommud"))},
      KernelGroupOf, &recovered);
  ASSERT_EQ(recovered.size(), 1u);  // not counted twice
  EXPECT_EQ(recovered[0].outcome, Outcome::kHeld);
  EXPECT_TRUE(recovered[0].ownership_dropped);
  EXPECT_THAT(recovered[0].detail, HasSubstr("group 4 is held by pid 99; group 3 (0000:00:02.0)"));
  EXPECT_THAT(recovered[0].detail, HasSubstr("ownership by uid:0/vmm-1 (domain 7) is dropped"));
}

TEST(AddDroppedOwnershipsTest, OtherGroupsAreHeldWhenBusyElseGone) {
  std::vector<host::RecoveredGroup> recovered;
  AddDroppedOwnerships(
      {Dropped(3, {"0000:00:02.0"},
               Error(absl::StatusCode::kUnavailable, reason::kGroupBusy, "held outside iommud")),
       Dropped(5, {"0000:01:01.0", "0000:01:02.0"},
               Error(absl::StatusCode::kFailedPrecondition, reason::kDriverUnsafe, "ahci"))},
      KernelGroupOf, &recovered);
  ASSERT_EQ(recovered.size(), 2u);
  EXPECT_EQ(recovered[0].outcome, Outcome::kHeld);
  EXPECT_EQ(recovered[0].group, 4);
  EXPECT_TRUE(recovered[0].ownership_dropped);
  EXPECT_EQ(recovered[1].outcome, Outcome::kGone);
  EXPECT_EQ(recovered[1].group, -1);
  EXPECT_EQ(ErrorReason(recovered[1].status), "DRIVER_UNSAFE");
  EXPECT_THAT(recovered[1].devices, ::testing::ElementsAre("0000:01:01.0", "0000:01:02.0"));
}

// A dropped ownership is a leak: LEAK_FOUND (also for "gone", which is otherwise LEAK_REPAIRED),
// counted under its outcome.
TEST(ReportHostRecoveryTest, ADroppedOwnershipIsALeakFoundAndCounted) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuBackend> backend, CreateBackend("software"));
  RegistryOptions options;
  options.backend = backend.get();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Registry> registry, Registry::Create(options));
  std::vector<host::RecoveredGroup> recovered(1);
  recovered[0].outcome = Outcome::kGone;
  recovered[0].devices = {"0000:00:03.0"};
  recovered[0].detail = "group 6: devices moved off vfio-pci";
  AddDroppedOwnerships({Dropped(9, {"0000:01:01.0"},
                                Error(absl::StatusCode::kFailedPrecondition,
                                      reason::kDriverUnsafe, "ahci"))},
                       KernelGroupOf, &recovered);
  EventBus events;
  std::shared_ptr<EventSubscription> watcher = events.Subscribe(EventFilter(), 16);
  auto metrics = std::make_shared<prometheus::Registry>();
  ReportHostRecovery(recovered, *registry, &events, metrics.get(), nullptr);
  RegistryEvent event;
  ASSERT_EQ(watcher->Poll(&event), EventSubscription::Next::kEvent);
  EXPECT_EQ(event.kind, RegistryEvent::Kind::kLeakRepaired);  // plain "gone": repaired
  ASSERT_EQ(watcher->Poll(&event), EventSubscription::Next::kEvent);
  EXPECT_EQ(event.kind, RegistryEvent::Kind::kLeakFound);  // gone with its ownership dropped
  EXPECT_EQ(event.device, "0000:01:01.0");
  EXPECT_THAT(event.detail, HasSubstr("host recovery (gone): group 9"));
  EXPECT_EQ(watcher->Poll(&event), EventSubscription::Next::kEmpty);
  double gone = -1;
  for (const auto& family : metrics->Collect()) {
    if (family.name != "iommud_host_recovered_groups_total") continue;
    for (const auto& metric : family.metric) {
      for (const auto& label : metric.label) {
        if (label.name == "outcome" && label.value == "gone") gone = metric.counter.value;
      }
    }
  }
  EXPECT_EQ(gone, 2);
}

}  // namespace
}  // namespace iommud
