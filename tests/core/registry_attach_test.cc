// docs/semantics.md "Attach / detach" and domain allocation/free.
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

class RegistryAttachTest : public RegistryTest {
 protected:
  DomainId Alloc(const std::string& unit = "u0", DomainType type = DomainType::kUnmanaged,
                 const std::string& owner = kOwner) {
    absl::StatusOr<DomainInfo> domain = registry_->AllocDomain(unit, type, owner);
    EXPECT_TRUE(domain.ok()) << domain.status();
    return domain.ok() ? domain->id : 0;
  }
};

TEST_P(RegistryAttachTest, AllocAndFreeADomain) {
  const uint64_t hw_domains = hardware_->Stats().domains;
  ASSERT_OK_AND_ASSIGN(DomainInfo domain,
                       registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner));
  EXPECT_EQ(domain.owner, kOwner);
  EXPECT_FALSE(domain.core_owned);
  EXPECT_EQ(domain.caps.iova_bits, 39u);
  EXPECT_EQ(hardware_->Stats().domains, hw_domains + 1);
  EXPECT_ERROR(registry_->FreeDomain(domain.id, kOther), kPermissionDenied, "NOT_OWNER");
  ASSERT_OK_AND_ASSIGN(DomainInfo freed, registry_->FreeDomain(domain.id, kOwner));
  EXPECT_EQ(freed.id, domain.id);
  EXPECT_EQ(hardware_->Stats().domains, hw_domains);
  EXPECT_ERROR(registry_->FreeDomain(domain.id, kOwner), kNotFound, "DOMAIN_NOT_FOUND");
}

TEST_P(RegistryAttachTest, AllocErrors) {
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->AllocDomain("nope", DomainType::kUnmanaged, kOwner), kNotFound,
               "UNIT_NOT_FOUND");
  EXPECT_ERROR(registry_->AllocDomain("u0", DomainType::kUnmanaged, ""), kInvalidArgument,
               "MISSING_OWNER");
  EXPECT_ERROR(registry_->AllocDomain("u0", DomainType::kDma, kOwner), kInvalidArgument,
               "DOMAIN_TYPE_NOT_ALLOWED");
  UnitCaps caps = U0Caps();
  caps.domain_types = {DomainType::kBlocked, DomainType::kDma};
  ASSERT_TRUE(registry_->AddUnit("u9", caps).ok());
  const std::string with_u9 = Snapshot();
  EXPECT_ERROR(registry_->AllocDomain("u9", DomainType::kUnmanaged, kOwner), kInvalidArgument,
               "DOMAIN_TYPE_UNSUPPORTED");
  backend_->FailNth(FailingBackend::Op::kAllocDomain, 1,
                    absl::ResourceExhaustedError("page-table memory is full"));
  EXPECT_ERROR(registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner), kResourceExhausted,
               "INJECTED_FAULT");
  EXPECT_EQ(Snapshot(), with_u9);
}

TEST_P(RegistryAttachTest, CoreDomainsCannotBeFreed) {
  const GroupInfo group = Group(Probe("a", 0x100).group);
  EXPECT_ERROR(registry_->FreeDomain(group.default_domain, ""), kFailedPrecondition,
               "CORE_DOMAIN");
  EXPECT_ERROR(registry_->FreeDomain(group.blocking_domain, kOwner), kFailedPrecondition,
               "CORE_DOMAIN");
}

TEST_P(RegistryAttachTest, AttachGroupProgramsEveryRidAndDetachReturnsToBlocking) {
  const DeviceInfo a = Probe("0000:08:01.0", 0x808, {0x800});
  Probe("0000:08:02.0", 0x810, {0x800});
  ASSERT_TRUE(registry_->ClaimOwnership(a.group, kOwner).ok());
  const DomainId domain = Alloc();
  ASSERT_OK_AND_ASSIGN(GroupInfo group, registry_->AttachGroup(a.group, domain, kOwner));
  EXPECT_EQ(group.domain, domain);
  EXPECT_EQ(Hw(0x800), domain);
  EXPECT_EQ(Hw(0x808), domain);
  EXPECT_EQ(Hw(0x810), domain);
  EXPECT_THAT(Domain(domain).attached_groups, ElementsAre(a.group));
  // Attaching the same domain again is a no-op.
  EXPECT_TRUE(registry_->AttachGroup(a.group, domain, kOwner).ok());

  ASSERT_OK_AND_ASSIGN(group, registry_->DetachGroup(a.group, domain, kOwner));
  EXPECT_EQ(group.domain, group.blocking_domain);
  EXPECT_EQ(Hw(0x800), group.blocking_domain);
  EXPECT_EQ(Hw(0x810), group.blocking_domain);
  EXPECT_THAT(Domain(domain).attached_groups, IsEmpty());
}

TEST_P(RegistryAttachTest, ADomainMayBeAttachedToSeveralGroups) {
  const GroupId g1 = Probe("a", 0x100).group;
  const GroupId g2 = Probe("b", 0x200).group;
  ASSERT_TRUE(registry_->ClaimOwnership(g1, kOwner).ok());
  ASSERT_TRUE(registry_->ClaimOwnership(g2, kOwner).ok());
  const DomainId domain = Alloc();
  ASSERT_TRUE(registry_->AttachGroup(g1, domain, kOwner).ok());
  ASSERT_TRUE(registry_->AttachGroup(g2, domain, kOwner).ok());
  EXPECT_THAT(Domain(domain).attached_groups, ElementsAre(g1, g2));
  EXPECT_ERROR(registry_->FreeDomain(domain, kOwner), kFailedPrecondition, "DOMAIN_IN_USE");
  ASSERT_TRUE(registry_->DetachGroup(g1, domain, kOwner).ok());
  EXPECT_ERROR(registry_->FreeDomain(domain, kOwner), kFailedPrecondition, "DOMAIN_IN_USE");
  ASSERT_TRUE(registry_->DetachGroup(g2, domain, kOwner).ok());
  EXPECT_TRUE(registry_->FreeDomain(domain, kOwner).ok());
}

TEST_P(RegistryAttachTest, AttachErrorsChangeNothing) {
  const GroupId group = Probe("a", 0x100).group;
  const GroupId unowned = Probe("c", 0x300).group;
  const DomainId domain = Alloc();
  const DomainId other_unit = Alloc("u1");
  const DomainId other_owner = Alloc("u0", DomainType::kUnmanaged, kOther);
  const DomainId second = Alloc();
  ASSERT_TRUE(registry_->ClaimOwnership(group, kOwner).ok());
  const std::string before = Snapshot();

  EXPECT_ERROR(registry_->AttachGroup(unowned, domain, kOwner), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(registry_->AttachGroup(group, domain, kOther), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(registry_->AttachGroup(group, other_unit, kOwner), kInvalidArgument,
               "DOMAIN_INCOMPATIBLE");
  EXPECT_ERROR(registry_->AttachGroup(group, Group(unowned).default_domain, kOwner),
               kInvalidArgument, "DOMAIN_INCOMPATIBLE");
  EXPECT_ERROR(registry_->AttachGroup(group, other_owner, kOwner), kPermissionDenied,
               "NOT_OWNER");
  EXPECT_ERROR(registry_->AttachGroup(group, 9999, kOwner), kNotFound, "DOMAIN_NOT_FOUND");
  EXPECT_ERROR(registry_->AttachGroup(9999, domain, kOwner), kNotFound, "GROUP_NOT_FOUND");
  EXPECT_ERROR(registry_->DetachGroup(group, domain, kOwner), kFailedPrecondition,
               "DOMAIN_NOT_ATTACHED");
  EXPECT_EQ(Snapshot(), before);

  ASSERT_TRUE(registry_->AttachGroup(group, domain, kOwner).ok());
  const std::string attached = Snapshot();
  EXPECT_ERROR(registry_->AttachGroup(group, second, kOwner), kFailedPrecondition, "GROUP_BUSY");
  EXPECT_ERROR(registry_->DetachGroup(group, second, kOwner), kFailedPrecondition,
               "DOMAIN_NOT_ATTACHED");
  EXPECT_ERROR(registry_->DetachGroup(group, domain, kOther), kPermissionDenied, "NOT_OWNER");
  EXPECT_EQ(Snapshot(), attached);
}

TEST_P(RegistryAttachTest, AttachDeviceOfASingleDeviceGroupAttachesTheGroup) {
  Probe("single", 0x100);
  const DomainId domain = Alloc();
  ASSERT_TRUE(registry_->ClaimDevice("single", kOwner).ok());
  ASSERT_OK_AND_ASSIGN(GroupInfo group, registry_->AttachDevice("single", domain, kOwner));
  EXPECT_EQ(group.domain, domain);
  EXPECT_THAT(group.attached_devices, ElementsAre("single"));
  EXPECT_EQ(Hw(0x100), domain);
  EXPECT_TRUE(registry_->GetDevice("single")->attached);
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->AttachDevice("nope", domain, kOwner), kNotFound, "DEVICE_NOT_FOUND");
  // Attached already: no change.
  EXPECT_OK(registry_->AttachDevice("single", domain, kOwner));
  EXPECT_EQ(Snapshot(), before);
  ASSERT_OK_AND_ASSIGN(group, registry_->DetachDevice("single", domain, kOwner));
  EXPECT_EQ(group.domain, group.blocking_domain);
  EXPECT_THAT(group.attached_devices, IsEmpty());
  EXPECT_EQ(Hw(0x100), group.blocking_domain);
  ExpectConsistent();
}

// iommufd_hw_pagetable_attach / _detach: the first device attaches the group, later ones join the
// same domain, another domain is refused; a non-last device leaves, the last detaches the group.
TEST_P(RegistryAttachTest, PerDeviceAttachInAMultiDeviceGroup) {
  // One group: a (0x208) and b (0x210) share the alias 0x200; each has a RID of its own.
  const DeviceInfo a = Probe("a", 0x208, {0x200});
  Probe("b", 0x210, {0x200});
  ASSERT_TRUE(registry_->ClaimOwnership(a.group, kOwner).ok());
  const DomainId domain = Alloc();
  const DomainId second = Alloc();
  const GroupInfo claimed = Group(a.group);

  ASSERT_OK_AND_ASSIGN(GroupInfo group, registry_->AttachDevice("a", domain, kOwner));
  EXPECT_EQ(group.domain, domain);
  EXPECT_THAT(group.attached_devices, ElementsAre("a"));
  // The group is attached as a whole: every RID, b's too.
  for (Rid rid : {0x200u, 0x208u, 0x210u}) EXPECT_EQ(Hw(rid), domain) << rid;
  EXPECT_TRUE(registry_->GetDevice("a")->attached);
  EXPECT_FALSE(registry_->GetDevice("b")->attached);
  EXPECT_THAT(Domain(domain).attached_groups, ElementsAre(a.group));

  // Another domain for b: refused, nothing changed.
  const std::string attached_a = Snapshot();
  EXPECT_ERROR(registry_->AttachDevice("b", second, kOwner), kFailedPrecondition,
               "GROUP_ATTACHED_ELSEWHERE");
  EXPECT_ERROR(registry_->AttachDevice("b", domain, kOther), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(registry_->DetachDevice("b", domain, kOwner), kFailedPrecondition,
               "DEVICE_NOT_ATTACHED");
  EXPECT_EQ(Snapshot(), attached_a);

  // b joins: recorded, no hardware change; a second join is a no-op.
  ASSERT_OK_AND_ASSIGN(group, registry_->AttachDevice("b", domain, kOwner));
  EXPECT_THAT(group.attached_devices, ElementsAre("a", "b"));
  EXPECT_TRUE(registry_->GetDevice("b")->attached);
  const std::string both = Snapshot();
  EXPECT_OK(registry_->AttachDevice("b", domain, kOwner));
  EXPECT_EQ(Snapshot(), both);
  EXPECT_ERROR(registry_->DetachDevice("a", second, kOwner), kFailedPrecondition,
               "DOMAIN_NOT_ATTACHED");
  EXPECT_ERROR(registry_->DetachDevice("a", domain, kOther), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(registry_->FreeDomain(domain, kOwner), kFailedPrecondition, "DOMAIN_IN_USE");
  EXPECT_EQ(Snapshot(), both);

  // a leaves: the group stays attached through b, the hardware does not move.
  ASSERT_OK_AND_ASSIGN(group, registry_->DetachDevice("a", domain, kOwner));
  EXPECT_EQ(group.domain, domain);
  EXPECT_THAT(group.attached_devices, ElementsAre("b"));
  for (Rid rid : {0x200u, 0x208u, 0x210u}) EXPECT_EQ(Hw(rid), domain) << rid;
  EXPECT_ERROR(registry_->DetachDevice("a", domain, kOwner), kFailedPrecondition,
               "DEVICE_NOT_ATTACHED");
  ExpectConsistent();

  // b, the last, detaches the group: blocking domain, the domain free to go.
  ASSERT_OK_AND_ASSIGN(group, registry_->DetachDevice("b", domain, kOwner));
  EXPECT_EQ(group.domain, claimed.blocking_domain);
  EXPECT_THAT(group.attached_devices, IsEmpty());
  for (Rid rid : {0x200u, 0x208u, 0x210u}) EXPECT_EQ(Hw(rid), claimed.blocking_domain) << rid;
  EXPECT_THAT(Domain(domain).attached_groups, IsEmpty());
  EXPECT_OK(registry_->FreeDomain(domain, kOwner));
  // Detached, the group may go to another domain through either device.
  ASSERT_OK_AND_ASSIGN(group, registry_->AttachDevice("b", second, kOwner));
  EXPECT_THAT(group.attached_devices, ElementsAre("b"));
  ExpectConsistent();
}

TEST_P(RegistryAttachTest, AttachGroupAttachesEveryDeviceAndDetachDeviceTakesThemOneByOne) {
  const DeviceInfo a = Probe("a", 0x208, {0x200});
  Probe("b", 0x210, {0x200});
  ASSERT_TRUE(registry_->ClaimOwnership(a.group, kOwner).ok());
  const DomainId domain = Alloc();
  // a attaches first; AttachGroup to the same domain then attaches b too.
  ASSERT_OK(registry_->AttachDevice("a", domain, kOwner));
  ASSERT_OK_AND_ASSIGN(GroupInfo group, registry_->AttachGroup(a.group, domain, kOwner));
  EXPECT_THAT(group.attached_devices, ElementsAre("a", "b"));
  ASSERT_OK(registry_->DetachDevice("b", domain, kOwner));
  ASSERT_OK_AND_ASSIGN(group, registry_->DetachDevice("a", domain, kOwner));
  EXPECT_EQ(group.domain, group.blocking_domain);
  // DetachGroup detaches every device at once.
  ASSERT_OK_AND_ASSIGN(group, registry_->AttachGroup(a.group, domain, kOwner));
  EXPECT_THAT(group.attached_devices, ElementsAre("a", "b"));
  ASSERT_OK_AND_ASSIGN(group, registry_->DetachGroup(a.group, domain, kOwner));
  EXPECT_THAT(group.attached_devices, IsEmpty());
  // Ending the ownership clears them too.
  ASSERT_OK(registry_->AttachDevice("b", domain, kOwner));
  ASSERT_OK_AND_ASSIGN(group, registry_->ReleaseOwnership(a.group, kOwner));
  EXPECT_THAT(group.attached_devices, IsEmpty());
  EXPECT_FALSE(registry_->GetDevice("b")->attached);
  ExpectConsistent();
}

TEST_P(RegistryAttachTest, TheFirstDeviceAttachIsAllOrNothing) {
  const DeviceInfo a = Probe("a", 0x808, {0x800});
  Probe("b", 0x810, {0x800});
  Probe("c", 0x818, {0x800});
  ASSERT_TRUE(registry_->ClaimOwnership(a.group, kOwner).ok());
  const DomainId domain = Alloc();
  const GroupInfo group = Group(a.group);
  for (int k = 1; k <= 4; ++k) {
    SCOPED_TRACE(k);
    const std::string before = Snapshot();
    backend_->FailNth(FailingBackend::Op::kAttachRid, k);
    EXPECT_ERROR(registry_->AttachDevice("b", domain, kOwner), kInternal, "INJECTED_FAULT");
    EXPECT_EQ(Snapshot(), before);
    for (Rid rid : {0x800u, 0x808u, 0x810u, 0x818u}) EXPECT_EQ(Hw(rid), group.blocking_domain);
    ExpectConsistent();
  }
  backend_->Clear();
  EXPECT_OK(registry_->AttachDevice("b", domain, kOwner));
}

TEST_P(RegistryAttachTest, TheLastDetachIsAllOrNothing) {
  const DeviceInfo a = Probe("a", 0x808, {0x800});
  Probe("b", 0x810, {0x800});
  ASSERT_TRUE(registry_->ClaimOwnership(a.group, kOwner).ok());
  const DomainId domain = Alloc();
  ASSERT_OK(registry_->AttachDevice("a", domain, kOwner));
  const std::string before = Snapshot();
  backend_->FailNth(FailingBackend::Op::kAttachRid, 2);
  EXPECT_ERROR(registry_->DetachDevice("a", domain, kOwner), kInternal, "INJECTED_FAULT");
  EXPECT_EQ(Snapshot(), before);
  for (Rid rid : {0x800u, 0x808u, 0x810u}) EXPECT_EQ(Hw(rid), domain);
  ExpectConsistent();
}

// ReleaseDevice ends the device's attachment as it ends its claim: a non-last attached device only
// leaves; the last one (its own RIDs released first) takes the group to its blocking domain.
TEST_P(RegistryAttachTest, ReleasingTheLastAttachedDeviceDetachesTheGroup) {
  const DeviceInfo a = Probe("a", 0x808, {0x800});
  Probe("b", 0x810, {0x800});
  Probe("c", 0x818, {0x800});
  ASSERT_TRUE(registry_->ClaimOwnership(a.group, kOwner).ok());
  const DomainId domain = Alloc();
  ASSERT_OK(registry_->AttachDevice("a", domain, kOwner));
  ASSERT_OK(registry_->AttachDevice("b", domain, kOwner));
  ASSERT_OK_AND_ASSIGN(ReleaseResult released, registry_->ReleaseDevice("a"));
  EXPECT_FALSE(released.leaked_attachment);
  GroupInfo group = GroupOf("b");
  EXPECT_EQ(group.domain, domain);
  EXPECT_THAT(group.attached_devices, ElementsAre("b"));
  EXPECT_EQ(Hw(0x810), domain);
  ExpectConsistent();
  ASSERT_OK(registry_->ReleaseDevice("b"));
  group = GroupOf("c");
  EXPECT_EQ(group.domain, group.blocking_domain);
  EXPECT_EQ(group.owner, kOwner);
  EXPECT_THAT(group.attached_devices, IsEmpty());
  for (Rid rid : {0x800u, 0x818u}) EXPECT_EQ(Hw(rid), group.blocking_domain);
  int detached = 0;
  for (const RegistryEvent& event : observer_.events()) {
    if (event.kind == RegistryEvent::Kind::kDetached && event.device == "b") ++detached;
  }
  EXPECT_EQ(detached, 1);
  EXPECT_OK(registry_->FreeDomain(domain, kOwner));
  ExpectConsistent();
}

TEST_P(RegistryAttachTest, AFailureOnTheKthRidPutsTheOthersBack) {
  // Four RIDs in one group: 0x800 (shared alias) and 0x808, 0x810, 0x818.
  const DeviceInfo a = Probe("a", 0x808, {0x800});
  Probe("b", 0x810, {0x800});
  Probe("c", 0x818, {0x800});
  ASSERT_TRUE(registry_->ClaimOwnership(a.group, kOwner).ok());
  const DomainId domain = Alloc();
  const GroupInfo group = Group(a.group);
  for (int k = 1; k <= 4; ++k) {
    SCOPED_TRACE(k);
    const std::string before = Snapshot();
    backend_->FailNth(FailingBackend::Op::kAttachRid, k);
    EXPECT_ERROR(registry_->AttachGroup(a.group, domain, kOwner), kInternal, "INJECTED_FAULT");
    EXPECT_EQ(Snapshot(), before);
    for (Rid rid : {0x800u, 0x808u, 0x810u, 0x818u}) EXPECT_EQ(Hw(rid), group.blocking_domain);
    EXPECT_THAT(Domain(domain).attached_groups, IsEmpty());
    ExpectConsistent();
  }
  backend_->Clear();
  EXPECT_TRUE(registry_->AttachGroup(a.group, domain, kOwner).ok());
}

TEST_P(RegistryAttachTest, ReleaseOwnershipDetachesTheOwnersDomain) {
  const GroupId group = Probe("a", 0x100).group;
  const DomainId domain = ClaimAndAttach("a");
  ASSERT_TRUE(registry_->ReleaseOwnership(group, kOwner).ok());
  EXPECT_THAT(Domain(domain).attached_groups, IsEmpty());
  EXPECT_EQ(Hw(0x100), Group(group).default_domain);
  EXPECT_TRUE(registry_->FreeDomain(domain, kOwner).ok());
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RegistryAttachTest);
INSTANTIATE_TEST_SUITE_P(Backends, RegistryAttachTest, ::testing::ValuesIn(BackendsUnderTest()));

}  // namespace
}  // namespace test
}  // namespace iommud
