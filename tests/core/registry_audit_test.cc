// The auditor (docs/semantics.md "Leaked attachments"): each kind of leak, made behind the
// registry's back through the backend or by a failing backend, is found by Audit with its reason
// and repaired by Reconcile. Also the per-group lock-contention view.
#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/registry_fixture.h"

namespace iommud {
namespace test {
namespace {

using ::testing::IsEmpty;
using ::testing::SizeIs;

class RegistryAuditTest : public RegistryTest {
 protected:
  // The leaks Audit finds with `reason`.
  std::vector<LeakRecord> Found(LeakReason reason) {
    std::vector<LeakRecord> found;
    for (const LeakRecord& leak : registry_->Audit()) {
      if (leak.reason == reason) found.push_back(leak);
    }
    return found;
  }
  void ExpectReconciled(size_t expected_repairs) {
    const Registry::ReconcileResult result = registry_->Reconcile();
    EXPECT_THAT(result.repaired, SizeIs(expected_repairs));
    EXPECT_THAT(result.remaining, IsEmpty());
    EXPECT_THAT(registry_->Audit(), IsEmpty());
    ExpectConsistent();
  }
};

TEST_P(RegistryAuditTest, ACleanRegistryHasNoLeaks) {
  Probe("a", 0x100);
  Probe("b", 0x100);
  ClaimAndAttach("a");
  EXPECT_THAT(registry_->Audit(), IsEmpty());
  EXPECT_THAT(registry_->Reconcile().repaired, IsEmpty());
}

TEST_P(RegistryAuditTest, ARidReprogrammedBehindTheRegistrysBackIsFoundAndRepaired) {
  const GroupInfo group = Group(Probe("a", 0x100).group);
  ASSERT_TRUE(hardware_->AttachRid("u0", 0x100, group.blocking_domain).ok());
  const std::vector<LeakRecord> leaks = Found(LeakReason::kRidOnWrongDomain);
  ASSERT_THAT(leaks, SizeIs(1));
  EXPECT_EQ(leaks[0].rid, 0x100u);
  EXPECT_EQ(leaks[0].group, group.id);
  EXPECT_EQ(leaks[0].device, "a");
  EXPECT_EQ(leaks[0].domain, group.blocking_domain);
  ExpectReconciled(1);
  EXPECT_EQ(Hw(0x100), group.default_domain);
}

TEST_P(RegistryAuditTest, ARidOnAnUnknownDomainAndTheOrphanDomainAreFoundAndRepaired) {
  const GroupInfo group = Group(Probe("a", 0x100).group);
  constexpr DomainId kForeign = 900000;
  ASSERT_TRUE(hardware_->AllocDomain("u0", kForeign, DomainType::kUnmanaged).ok());
  ASSERT_TRUE(hardware_->AttachRid("u0", 0x100, kForeign).ok());
  EXPECT_THAT(Found(LeakReason::kRidOnUnknownDomain), SizeIs(1));
  const std::vector<LeakRecord> orphans = Found(LeakReason::kOrphanDomain);
  ASSERT_THAT(orphans, SizeIs(1));
  EXPECT_EQ(orphans[0].domain, kForeign);
  ExpectReconciled(2);
  EXPECT_EQ(Hw(0x100), group.default_domain);
  const std::vector<DomainId> domains = hardware_->ReadDomains();
  EXPECT_FALSE(std::binary_search(domains.begin(), domains.end(), kForeign));
}

TEST_P(RegistryAuditTest, ARidNoDeviceUsesThatStillTranslatesIsFoundAndReleased) {
  const GroupInfo group = Group(Probe("a", 0x100).group);
  ASSERT_TRUE(hardware_->AttachRid("u0", 0x777, group.default_domain).ok());
  const std::vector<LeakRecord> leaks = Found(LeakReason::kReleasedRidTranslates);
  ASSERT_THAT(leaks, SizeIs(1));
  EXPECT_EQ(leaks[0].rid, 0x777u);
  ExpectReconciled(1);
  EXPECT_EQ(Hw(0x777), 0u);
}

TEST_P(RegistryAuditTest, AGroupLeftOffItsDefaultAfterItsOwnerLeftIsFoundAndRepaired) {
  const GroupId group = Probe("a", 0x100).group;
  ClaimAndAttach("a");
  backend_->FailNext(FailingBackend::Op::kAttachRid, 2);  // the restore and its retry
  ASSERT_TRUE(registry_->ReleaseOwnership(group, kOwner).ok());  // restore failed: blocked
  const std::vector<LeakRecord> leaks = Found(LeakReason::kOwnerGone);
  ASSERT_THAT(leaks, SizeIs(1));
  EXPECT_EQ(leaks[0].group, group);
  EXPECT_EQ(leaks[0].domain, Group(group).blocking_domain);
  ExpectReconciled(1);
  EXPECT_EQ(Group(group).domain, Group(group).default_domain);
  EXPECT_EQ(Hw(0x100), Group(group).default_domain);
  // The group can be claimed again.
  EXPECT_TRUE(registry_->ClaimOwnership(group, kOwner).ok());
}

TEST_P(RegistryAuditTest, ReconcileEmitsLeakRepairedEvents) {
  const GroupInfo group = Group(Probe("a", 0x100).group);
  ASSERT_TRUE(hardware_->AttachRid("u0", 0x100, group.blocking_domain).ok());
  ExpectReconciled(1);
  int repaired = 0;
  for (const RegistryEvent& event : observer_.events()) {
    if (event.kind == RegistryEvent::Kind::kLeakRepaired) {
      ++repaired;
      EXPECT_EQ(event.detail, "rid_on_wrong_domain");
    }
  }
  EXPECT_EQ(repaired, 1);
}

TEST_P(RegistryAuditTest, TheMostContendedGroupIsTheOneThatWaited) {
  const GroupId busy = Probe("a", 0x100).group;
  Probe("b", 0x100);
  const GroupId quiet = Probe("c", 0x200).group;
  std::thread second;
  std::atomic<bool> fired{false};
  SetHook([&](absl::string_view point) {
    if (point != kSyncReleaseBackendReleased || fired.exchange(true)) return;
    second = std::thread([this] { EXPECT_TRUE(registry_->UseDefaultDomain("b").ok()); });
    absl::SleepFor(absl::Milliseconds(20));  // hold the group while `second` waits for it
  });
  ASSERT_TRUE(registry_->ReleaseDevice("a").ok());
  SetHook(nullptr);
  second.join();
  const std::vector<Registry::GroupContention> top = registry_->MostContendedGroups(10);
  ASSERT_THAT(top, SizeIs(2));
  EXPECT_EQ(top[0].group, busy);
  EXPECT_EQ(top[0].contended, 1u);
  EXPECT_GT(top[0].total_wait, absl::ZeroDuration());
  EXPECT_GE(top[0].acquisitions, 3u);
  EXPECT_EQ(top[1].group, quiet);
  EXPECT_EQ(top[1].contended, 0u);
  EXPECT_THAT(registry_->MostContendedGroups(1), SizeIs(1));
  EXPECT_GE(observer_.locks_contended(), 1u);
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RegistryAuditTest);
INSTANTIATE_TEST_SUITE_P(Backends, RegistryAuditTest, ::testing::ValuesIn(BackendsUnderTest()));

}  // namespace
}  // namespace test
}  // namespace iommud
