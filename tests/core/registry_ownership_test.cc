// docs/semantics.md "Ownership": default-domain users, group and device claims, owner_cnt.
#include <string>

#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/registry_fixture.h"

namespace iommud {
namespace test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

class RegistryOwnershipTest : public RegistryTest {
 protected:
  void SetUp() override {
    RegistryTest::SetUp();
    group_ = Probe("a", 0x100).group;
    Probe("b", 0x100);
  }
  GroupId group_ = 0;
};

TEST_P(RegistryOwnershipTest, KernelDriversCountInOwnerCnt) {
  ASSERT_OK_AND_ASSIGN(GroupInfo group, registry_->UseDefaultDomain("a"));
  EXPECT_EQ(group.owner_cnt, 1u);
  ASSERT_OK_AND_ASSIGN(group, registry_->UseDefaultDomain("b"));
  EXPECT_EQ(group.owner_cnt, 2u);
  ASSERT_OK_AND_ASSIGN(DeviceInfo a, registry_->GetDevice("a"));
  EXPECT_EQ(a.binding, DriverBinding::kKernelDriver);
  EXPECT_ERROR(registry_->UseDefaultDomain("a"), kFailedPrecondition, "DRIVER_ALREADY_BOUND");
  ASSERT_OK_AND_ASSIGN(group, registry_->UnuseDefaultDomain("a"));
  EXPECT_EQ(group.owner_cnt, 1u);
  EXPECT_ERROR(registry_->UnuseDefaultDomain("a"), kFailedPrecondition, "DRIVER_NOT_BOUND");
  EXPECT_EQ(Group(group_).owner_cnt, 1u);
}

TEST_P(RegistryOwnershipTest, AKernelDriverCannotBindToAnOwnedGroup) {
  ASSERT_TRUE(registry_->ClaimOwnership(group_, kOwner).ok());
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->UseDefaultDomain("a"), kFailedPrecondition, "GROUP_OWNED");
  EXPECT_EQ(Snapshot(), before);
}

TEST_P(RegistryOwnershipTest, ClaimSwitchesTheGroupToBlocking) {
  ASSERT_OK_AND_ASSIGN(GroupInfo group, registry_->ClaimOwnership(group_, kOwner));
  EXPECT_EQ(group.owner, kOwner);
  EXPECT_EQ(group.owner_cnt, 1u);
  EXPECT_EQ(group.domain, group.blocking_domain);
  EXPECT_EQ(Hw(0x100), group.blocking_domain);
  ASSERT_OK_AND_ASSIGN(Translation dma, registry_->Translate("a", 0, kProtRead));
  EXPECT_EQ(dma.fault, FaultReason::kBlocked);
  ASSERT_OK_AND_ASSIGN(DeviceInfo b, registry_->GetDevice("b"));
  EXPECT_EQ(b.binding, DriverBinding::kUserOwned);
}

// Only a host backend can hand a group to a VMM (tests/core/host/linux_backend_handover_test.cc);
// the others refuse, changing nothing, and a group in use is refused before the backend is asked.
TEST_P(RegistryOwnershipTest, HandOverNeedsAHostBackend) {
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->HandOverGroup(group_, kOwner, 4242, 4242), kFailedPrecondition,
               "HANDOVER_NEEDS_HOST_BACKEND");
  EXPECT_ERROR(registry_->HandOverGroup(group_, "", 4242, 4242), kInvalidArgument,
               "MISSING_OWNER");
  EXPECT_EQ(Snapshot(), before);
  EXPECT_FALSE(Group(group_).handed_over);
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner).status());
  EXPECT_ERROR(registry_->HandOverGroup(group_, kOwner, 4242, 4242), kFailedPrecondition,
               "GROUP_IN_USE");
  EXPECT_THAT(registry_->Audit(), ::testing::IsEmpty());
}

TEST_P(RegistryOwnershipTest, ClaimErrorsChangeNothing) {
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->ClaimOwnership(group_, ""), kInvalidArgument, "MISSING_OWNER");
  EXPECT_ERROR(registry_->ClaimOwnership(999, kOwner), kNotFound, "GROUP_NOT_FOUND");
  ASSERT_TRUE(registry_->UseDefaultDomain("a").ok());
  const std::string bound = Snapshot();
  EXPECT_ERROR(registry_->ClaimOwnership(group_, kOwner), kFailedPrecondition, "GROUP_IN_USE");
  EXPECT_ERROR(registry_->ClaimDevice("b", kOwner), kFailedPrecondition, "GROUP_IN_USE");
  EXPECT_EQ(Snapshot(), bound);
  ASSERT_TRUE(registry_->UnuseDefaultDomain("a").ok());
  EXPECT_EQ(Snapshot(), before);
}

TEST_P(RegistryOwnershipTest, AnOwnedGroupCannotBeClaimedAgain) {
  ASSERT_TRUE(registry_->ClaimOwnership(group_, kOwner).ok());
  EXPECT_ERROR(registry_->ClaimOwnership(group_, kOther), kFailedPrecondition, "GROUP_IN_USE");
  EXPECT_ERROR(registry_->ClaimOwnership(group_, kOwner), kFailedPrecondition, "GROUP_IN_USE");
  EXPECT_ERROR(registry_->ClaimDevice("a", kOther), kFailedPrecondition, "GROUP_IN_USE");
  EXPECT_EQ(Group(group_).owner, kOwner);
}

TEST_P(RegistryOwnershipTest, ReleaseOwnershipReturnsTheGroupToItsDefaultDomain) {
  const DomainId owned = ClaimAndAttach("a");
  EXPECT_EQ(Hw(0x100), owned);
  EXPECT_ERROR(registry_->ReleaseOwnership(group_, kOther), kPermissionDenied, "NOT_OWNER");
  EXPECT_EQ(Group(group_).domain, owned);
  ASSERT_OK_AND_ASSIGN(GroupInfo group, registry_->ReleaseOwnership(group_, kOwner));
  EXPECT_EQ(group.owner, "");
  EXPECT_EQ(group.owner_cnt, 0u);
  EXPECT_EQ(group.domain, group.default_domain);
  EXPECT_EQ(Hw(0x100), group.default_domain);
  EXPECT_THAT(Domain(owned).attached_groups, IsEmpty());
  EXPECT_ERROR(registry_->ReleaseOwnership(group_, kOwner), kFailedPrecondition,
               "GROUP_NOT_OWNED");
  ASSERT_OK_AND_ASSIGN(DeviceInfo a, registry_->GetDevice("a"));
  EXPECT_EQ(a.binding, DriverBinding::kNone);
  EXPECT_TRUE(registry_->FreeDomain(owned, kOwner).ok());
}

TEST_P(RegistryOwnershipTest, ReleaseOwnershipThatCannotRestoreTheDefaultGoesBlockedAndLeaks) {
  const DomainId owned = ClaimAndAttach("a");
  backend_->FailNext(FailingBackend::Op::kAttachRid, 2);  // the restore and its retry
  ASSERT_OK_AND_ASSIGN(GroupInfo group, registry_->ReleaseOwnership(group_, kOwner));
  EXPECT_EQ(group.owner, "");
  EXPECT_EQ(group.domain, group.blocking_domain);
  EXPECT_EQ(Hw(0x100), group.blocking_domain);
  ASSERT_THAT(observer_.leaks(), SizeIs(1));
  EXPECT_EQ(observer_.leaks()[0].reason, LeakReason::kRestoreDefaultFailed);
  EXPECT_EQ(observer_.leaks()[0].domain, owned);
  EXPECT_EQ(observer_.leaks()[0].owner, kOwner);
  EXPECT_TRUE(registry_->FreeDomain(owned, kOwner).ok());
  // Nobody owns the group and it is off its default domain: the auditor's case. Put it back by
  // claiming and releasing it again.
  ASSERT_TRUE(registry_->ClaimDevice("a", kOwner).status().code() ==
              absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(registry_->ReleaseDevice("a").ok());
  ASSERT_OK_AND_ASSIGN(ReleaseResult last, registry_->ReleaseDevice("b"));
  EXPECT_TRUE(last.leaked_attachment);
}

TEST_P(RegistryOwnershipTest, DeviceClaimsOfOneOwnerCountUp) {
  ASSERT_OK_AND_ASSIGN(GroupInfo group, registry_->ClaimDevice("a", kOwner));
  EXPECT_EQ(group.owner_cnt, 1u);
  EXPECT_EQ(group.domain, group.blocking_domain);
  EXPECT_ERROR(registry_->ClaimDevice("a", kOwner), kFailedPrecondition,
               "DEVICE_ALREADY_CLAIMED");
  EXPECT_ERROR(registry_->ClaimDevice("b", kOther), kFailedPrecondition, "GROUP_IN_USE");
  ASSERT_OK_AND_ASSIGN(group, registry_->ClaimDevice("b", kOwner));
  EXPECT_EQ(group.owner_cnt, 2u);
  EXPECT_THAT(group.claimed_devices, ElementsAre("a", "b"));
  EXPECT_ERROR(registry_->ReleaseDeviceOwnership("a", kOther), kPermissionDenied, "NOT_OWNER");
  ASSERT_OK_AND_ASSIGN(group, registry_->ReleaseDeviceOwnership("a", kOwner));
  EXPECT_EQ(group.owner_cnt, 1u);
  EXPECT_EQ(group.owner, kOwner);
  EXPECT_EQ(group.domain, group.blocking_domain);
  EXPECT_ERROR(registry_->ReleaseDeviceOwnership("a", kOwner), kFailedPrecondition,
               "DEVICE_NOT_CLAIMED");
  ASSERT_OK_AND_ASSIGN(group, registry_->ReleaseDeviceOwnership("b", kOwner));
  EXPECT_EQ(group.owner_cnt, 0u);
  EXPECT_EQ(group.owner, "");
  EXPECT_EQ(group.domain, group.default_domain);
  EXPECT_EQ(Hw(0x100), group.default_domain);
}

TEST_P(RegistryOwnershipTest, ClaimOnAnotherDomainIsGroupBusy) {
  // Only a group on its default domain can be claimed: after a failed restore it is not.
  ClaimAndAttach("a");
  backend_->FailNext(FailingBackend::Op::kAttachRid, 2);  // the restore and its retry
  ASSERT_TRUE(registry_->ReleaseOwnership(group_, kOwner).ok());
  backend_->Clear();
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->ClaimOwnership(group_, kOwner), kFailedPrecondition, "GROUP_BUSY");
  EXPECT_ERROR(registry_->ClaimDevice("a", kOwner), kFailedPrecondition, "GROUP_BUSY");
  EXPECT_ERROR(registry_->UseDefaultDomain("a"), kFailedPrecondition, "GROUP_OWNED");
  EXPECT_EQ(Snapshot(), before);
  ASSERT_TRUE(registry_->ReleaseDevice("a").ok());
  ASSERT_TRUE(registry_->ReleaseDevice("b").ok());
}

TEST_P(RegistryOwnershipTest, AFailedClaimChangesNothing) {
  const std::string before = Snapshot();
  backend_->FailNth(FailingBackend::Op::kAttachRid, 1);
  EXPECT_ERROR(registry_->ClaimOwnership(group_, kOwner), kInternal, "INJECTED_FAULT");
  EXPECT_EQ(Snapshot(), before);
  backend_->FailNth(FailingBackend::Op::kAttachRid, 1);
  EXPECT_ERROR(registry_->ClaimDevice("a", kOwner), kInternal, "INJECTED_FAULT");
  EXPECT_EQ(Snapshot(), before);
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RegistryOwnershipTest);
INSTANTIATE_TEST_SUITE_P(Backends, RegistryOwnershipTest,
                         ::testing::ValuesIn(BackendsUnderTest()));

}  // namespace
}  // namespace test
}  // namespace iommud
