// docs/semantics.md "Device lifecycle": group formation, probe, release, leaked attachments.
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

class RegistryLifecycleTest : public RegistryTest {};

TEST_P(RegistryLifecycleTest, ProbeCreatesAGroupOnItsDefaultDomain) {
  const DeviceInfo device = Probe("0000:00:02.0", 0x10);
  const GroupInfo group = Group(device.group);
  EXPECT_THAT(group.devices, ElementsAre("0000:00:02.0"));
  EXPECT_NE(group.default_domain, 0u);
  EXPECT_NE(group.blocking_domain, 0u);
  EXPECT_NE(group.default_domain, group.blocking_domain);
  EXPECT_EQ(group.domain, group.default_domain);
  EXPECT_EQ(device.domain, group.default_domain);
  EXPECT_EQ(Hw(0x10), group.default_domain);
  EXPECT_EQ(Domain(group.default_domain).type, DomainType::kDma);
  EXPECT_TRUE(Domain(group.default_domain).core_owned);
  EXPECT_EQ(Domain(group.blocking_domain).type, DomainType::kBlocked);
  EXPECT_EQ(group.owner_cnt, 0u);
}

TEST_P(RegistryLifecycleTest, DevicesSharingARidShareAGroup) {
  const DeviceInfo a = Probe("0000:05:00.0", 0x500);
  const DeviceInfo b = Probe("0000:05:00.1", 0x500);
  const DeviceInfo c = Probe("0000:06:00.0", 0x600);
  EXPECT_EQ(a.group, b.group);
  EXPECT_NE(a.group, c.group);
  EXPECT_THAT(Group(a.group).devices, ElementsAre("0000:05:00.0", "0000:05:00.1"));
  EXPECT_EQ(Hw(0x500), Group(a.group).domain);
}

TEST_P(RegistryLifecycleTest, DevicesSharingAnAliasShareAGroupAndEveryRidIsProgrammed) {
  const DeviceInfo a = Probe("0000:08:01.0", 0x808, {0x800});
  const DeviceInfo b = Probe("0000:08:02.0", 0x810, {0x800});
  ASSERT_EQ(a.group, b.group);
  const DomainId domain = Group(a.group).domain;
  EXPECT_EQ(Hw(0x800), domain);
  EXPECT_EQ(Hw(0x808), domain);
  EXPECT_EQ(Hw(0x810), domain);
}

TEST_P(RegistryLifecycleTest, ADeviceJoinsTheGroupOnItsCurrentDomain) {
  Probe("a", 0x100);
  const DomainId owned = ClaimAndAttach("a");
  const DeviceInfo b = Probe("b", 0x101, {0x100});
  EXPECT_EQ(b.domain, owned);
  EXPECT_EQ(Hw(0x101), owned);
}

TEST_P(RegistryLifecycleTest, IdentityDefaultDomainByRequestAndByPolicy) {
  ProbeRequest request;
  request.unit = "u0";
  request.device = "bypass";
  request.rid = 0x20;
  request.default_domain_type = DomainType::kIdentity;
  ASSERT_OK_AND_ASSIGN(DeviceInfo bypass, registry_->ProbeDevice(request));
  EXPECT_EQ(Domain(bypass.domain).type, DomainType::kIdentity);
  ASSERT_OK_AND_ASSIGN(Translation dma, registry_->Translate("bypass", 0x1234000, kProtRead));
  EXPECT_EQ(dma.fault, FaultReason::kNone);
  EXPECT_EQ(dma.paddr, 0x1234000u);

  Recreate([](RegistryOptions* options) { options->default_domain_type = DomainType::kIdentity; });
  EXPECT_EQ(Domain(Probe("x", 0x30).domain).type, DomainType::kIdentity);
}

TEST_P(RegistryLifecycleTest, ProbeErrorsChangeNothing) {
  Probe("a", 0x100);
  Probe("b", 0x200);
  const std::string before = Snapshot();
  ProbeRequest request;
  request.unit = "u0";
  request.device = "a";
  request.rid = 0x300;
  EXPECT_ERROR(registry_->ProbeDevice(request), kAlreadyExists, "DEVICE_EXISTS");
  request.device = "";
  EXPECT_ERROR(registry_->ProbeDevice(request), kInvalidArgument, "INVALID_DEVICE_NAME");
  request.device = "c";
  request.unit = "nope";
  EXPECT_ERROR(registry_->ProbeDevice(request), kNotFound, "UNIT_NOT_FOUND");
  request.unit = "u0";
  request.rid = 1u << 16;
  EXPECT_ERROR(registry_->ProbeDevice(request), kInvalidArgument, "RID_OUT_OF_RANGE");
  request.rid = 0x100;
  request.alias_rids = {0x200};
  EXPECT_ERROR(registry_->ProbeDevice(request), kFailedPrecondition, "RIDS_SPAN_GROUPS");
  request.alias_rids = {};
  request.rid = 0x300;
  request.default_domain_type = DomainType::kUnmanaged;
  EXPECT_ERROR(registry_->ProbeDevice(request), kInvalidArgument, "INVALID_DEFAULT_DOMAIN_TYPE");
  EXPECT_EQ(Snapshot(), before);
}

TEST_P(RegistryLifecycleTest, UnsupportedDefaultDomainTypeIsRefused) {
  UnitCaps caps = U0Caps();
  caps.domain_types = {DomainType::kBlocked, DomainType::kUnmanaged, DomainType::kDma};
  ASSERT_TRUE(registry_->AddUnit("no-identity", caps).ok());
  ProbeRequest request;
  request.unit = "no-identity";
  request.device = "d";
  request.rid = 1;
  request.default_domain_type = DomainType::kIdentity;
  EXPECT_ERROR(registry_->ProbeDevice(request), kInvalidArgument, "DOMAIN_TYPE_UNSUPPORTED");
  EXPECT_ERROR(registry_->GetDevice("d"), kNotFound, "DEVICE_NOT_FOUND");
}

TEST_P(RegistryLifecycleTest, ProbeRollsBackWhenTheBackendFailsMidway) {
  Probe("a", 0x100);
  const std::string before = Snapshot();
  ProbeRequest request;
  request.unit = "u0";
  request.device = "b";
  request.rid = 0x200;
  // New group: the default domain's RID programming fails.
  backend_->FailNth(FailingBackend::Op::kAttachRid, 1);
  EXPECT_ERROR(registry_->ProbeDevice(request), kInternal, "INJECTED_FAULT");
  EXPECT_EQ(Snapshot(), before);
  // New group: the blocking domain cannot be allocated.
  backend_->FailNth(FailingBackend::Op::kAllocDomain, 2);
  EXPECT_ERROR(registry_->ProbeDevice(request), kInternal, "INJECTED_FAULT");
  EXPECT_EQ(Snapshot(), before);
  // Joining group: the second of two new RIDs fails; the first is released again.
  request.device = "c";
  request.rid = 0x101;
  request.alias_rids = {0x100, 0x102};
  backend_->FailNth(FailingBackend::Op::kAttachRid, 2);
  EXPECT_ERROR(registry_->ProbeDevice(request), kInternal, "INJECTED_FAULT");
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(Hw(0x101), 0u);
  EXPECT_EQ(Hw(0x102), 0u);
  // The names were not kept: the same probes succeed now.
  backend_->Clear();
  EXPECT_TRUE(registry_->ProbeDevice(request).ok());
  request.device = "b";
  request.rid = 0x200;
  request.alias_rids = {};
  EXPECT_TRUE(registry_->ProbeDevice(request).ok());
}

TEST_P(RegistryLifecycleTest, ReleasingTheLastDeviceFreesTheGroupAndItsDomains) {
  const DeviceInfo device = Probe("a", 0x100);
  const GroupInfo group = Group(device.group);
  const uint64_t domains_before = hardware_->Stats().domains;
  ASSERT_OK_AND_ASSIGN(ReleaseResult result, registry_->ReleaseDevice("a"));
  EXPECT_FALSE(result.leaked_attachment);
  EXPECT_EQ(Hw(0x100), 0u);
  EXPECT_ERROR(registry_->GetDevice("a"), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_ERROR(registry_->GetGroup(group.id), kNotFound, "GROUP_NOT_FOUND");
  EXPECT_ERROR(registry_->GetDomain(group.default_domain), kNotFound, "DOMAIN_NOT_FOUND");
  EXPECT_ERROR(registry_->GetDomain(group.blocking_domain), kNotFound, "DOMAIN_NOT_FOUND");
  EXPECT_EQ(hardware_->Stats().domains, domains_before - 2);
  EXPECT_THAT(observer_.leaks(), IsEmpty());
}

TEST_P(RegistryLifecycleTest, AReleasedDeviceCannotBeUsed) {
  Probe("a", 0x100);
  ASSERT_TRUE(registry_->ReleaseDevice("a").ok());
  EXPECT_ERROR(registry_->ReleaseDevice("a"), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_ERROR(registry_->UseDefaultDomain("a"), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_ERROR(registry_->ClaimDevice("a", kOwner), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_ERROR(registry_->AttachDevice("a", 1, kOwner), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_ERROR(registry_->Translate("a", 0, kProtRead), kNotFound, "DEVICE_NOT_FOUND");
  // The name is free again: a new device of that name lands in a new group.
  EXPECT_EQ(Probe("a", 0x100).name, "a");
}

TEST_P(RegistryLifecycleTest, ASharedRidIsNeverReprogrammedWhileAnotherDeviceUsesIt) {
  const DeviceInfo a = Probe("0000:05:00.0", 0x500);
  Probe("0000:05:00.1", 0x500);
  const DomainId domain = Group(a.group).domain;
  ASSERT_TRUE(registry_->Map(domain, 0x100000, 0x800000, 0x1000, kProtRead, "").ok());
  ASSERT_TRUE(registry_->ReleaseDevice("0000:05:00.0").ok());
  EXPECT_EQ(Hw(0x500), domain);
  ASSERT_OK_AND_ASSIGN(Translation dma,
                       registry_->Translate("0000:05:00.1", 0x100000, kProtRead));
  EXPECT_EQ(dma.fault, FaultReason::kNone);
  EXPECT_EQ(dma.paddr, 0x800000u);
  EXPECT_THAT(Group(a.group).devices, ElementsAre("0000:05:00.1"));
  ASSERT_TRUE(registry_->ReleaseDevice("0000:05:00.1").ok());
  EXPECT_EQ(Hw(0x500), 0u);
}

TEST_P(RegistryLifecycleTest, ReleasingAnAliasedDeviceReleasesOnlyItsOwnRids) {
  const DeviceInfo a = Probe("0000:08:01.0", 0x808, {0x800});
  Probe("0000:08:02.0", 0x810, {0x800});
  const DomainId domain = Group(a.group).domain;
  ASSERT_TRUE(registry_->ReleaseDevice("0000:08:01.0").ok());
  EXPECT_EQ(Hw(0x808), 0u);
  EXPECT_EQ(Hw(0x800), domain);
  EXPECT_EQ(Hw(0x810), domain);
}

TEST_P(RegistryLifecycleTest, ReleaseWhileOwnedIsALeakedAttachmentButCompletes) {
  Probe("a", 0x100);
  const GroupInfo group = GroupOf("a");
  const DomainId owned = ClaimAndAttach("a");
  ASSERT_TRUE(registry_->Map(owned, 0, 0x400000, 0x2000, kProtRead | kProtWrite, kOwner).ok());
  ASSERT_OK_AND_ASSIGN(ReleaseResult result, registry_->ReleaseDevice("a"));
  EXPECT_TRUE(result.leaked_attachment);
  ASSERT_THAT(observer_.leaks(), SizeIs(1));
  const LeakRecord leak = observer_.leaks()[0];
  EXPECT_EQ(leak.reason, LeakReason::kReleasedWhileOwned);
  EXPECT_EQ(leak.owner, kOwner);
  EXPECT_EQ(leak.domain, owned);
  EXPECT_EQ(leak.group, group.id);
  EXPECT_EQ(leak.device, "a");
  // The hardware no longer points at the owner's domain, and that domain can now be freed.
  EXPECT_EQ(Hw(0x100), 0u);
  EXPECT_THAT(Domain(owned).attached_groups, IsEmpty());
  EXPECT_TRUE(registry_->FreeDomain(owned, kOwner).ok());
}

TEST_P(RegistryLifecycleTest, ReleaseRefusingInUseDevicesRefusesAnOwnedOneAndChangesNothing) {
  Probe("a", 0x100);
  const DomainId owned = ClaimAndAttach("a");
  ASSERT_TRUE(registry_->Map(owned, 0, 0x400000, 0x2000, kProtRead | kProtWrite, kOwner).ok());
  const std::string before = Snapshot();
  absl::StatusOr<ReleaseResult> refused =
      registry_->ReleaseDevice("a", nullptr, /*refuse_if_in_use=*/true);
  EXPECT_ERROR(refused, kFailedPrecondition, "DEVICE_IN_USE");
  EXPECT_EQ(GetErrorMetadata(refused.status()).at("owner"), kOwner);
  EXPECT_EQ(GetErrorMetadata(refused.status()).at("device"), "a");
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(Hw(0x100), owned);
  EXPECT_THAT(observer_.leaks(), IsEmpty());
  // Once the owner let go, the same release goes through without a leak.
  ASSERT_TRUE(registry_->ReleaseOwnership(GroupOf("a").id, kOwner).ok());
  ASSERT_OK_AND_ASSIGN(ReleaseResult released,
                       registry_->ReleaseDevice("a", nullptr, /*refuse_if_in_use=*/true));
  EXPECT_FALSE(released.leaked_attachment);
  EXPECT_THAT(observer_.leaks(), IsEmpty());
}

TEST_P(RegistryLifecycleTest, ReleaseRefusingInUseDevicesReleasesADeviceItsOwnerDidNotClaim) {
  Probe("a", 0x100);
  Probe("b", 0x100);  // same group
  ASSERT_TRUE(registry_->ClaimDevice("b", kOwner).ok());
  ASSERT_OK_AND_ASSIGN(ReleaseResult released,
                       registry_->ReleaseDevice("a", nullptr, /*refuse_if_in_use=*/true));
  EXPECT_FALSE(released.leaked_attachment);
  EXPECT_EQ(GroupOf("b").owner, kOwner);
  EXPECT_ERROR(registry_->ReleaseDevice("b", nullptr, /*refuse_if_in_use=*/true),
               kFailedPrecondition, "DEVICE_IN_USE");
}

TEST_P(RegistryLifecycleTest, ReleaseWithAKernelDriverBoundUnbindsItWithoutALeak) {
  Probe("a", 0x100);
  Probe("b", 0x100);
  ASSERT_TRUE(registry_->UseDefaultDomain("a").ok());
  ASSERT_TRUE(registry_->UseDefaultDomain("b").ok());
  ASSERT_TRUE(registry_->ReleaseDevice("a").ok());
  EXPECT_EQ(GroupOf("b").owner_cnt, 1u);
  ASSERT_OK_AND_ASSIGN(ReleaseResult result, registry_->ReleaseDevice("b"));
  EXPECT_FALSE(result.leaked_attachment);
  EXPECT_THAT(observer_.leaks(), IsEmpty());
}

TEST_P(RegistryLifecycleTest, EventsDescribeTheLifecycle) {
  Probe("a", 0x100);
  ASSERT_TRUE(registry_->ReleaseDevice("a").ok());
  int probed = 0, released = 0;
  for (const RegistryEvent& event : observer_.events()) {
    if (event.kind == RegistryEvent::Kind::kDeviceProbed && event.device == "a") ++probed;
    if (event.kind == RegistryEvent::Kind::kDeviceReleased && event.device == "a") ++released;
  }
  EXPECT_EQ(probed, 1);
  EXPECT_EQ(released, 1);
  EXPECT_EQ(observer_.locks_acquired(), observer_.locks_released());
}

TEST_P(RegistryLifecycleTest, UnitsAreListedWithTheirCounts) {
  Probe("a", 0x100);
  Probe("b", 0x100);
  Probe("c", 0x1, {}, "u1");
  ASSERT_OK_AND_ASSIGN(UnitInfo u0, registry_->GetUnit("u0"));
  EXPECT_EQ(u0.device_count, 2u);
  EXPECT_EQ(u0.group_count, 1u);
  EXPECT_EQ(u0.domain_count, 3u);  // release domain + the group's default and blocking
  EXPECT_EQ(u0.backend, GetParam());
  EXPECT_THAT(registry_->ListUnits(), SizeIs(2));
  EXPECT_ERROR(registry_->AddUnit("u0", U0Caps()), kAlreadyExists, "UNIT_EXISTS");
  UnitCaps bad = U0Caps();
  bad.pgsize_bitmap = 0;
  EXPECT_ERROR(registry_->AddUnit("u9", bad), kInvalidArgument, "INVALID_UNIT");
  EXPECT_ERROR(registry_->AddUnit("", U0Caps()), kInvalidArgument, "INVALID_UNIT");
  EXPECT_ERROR(registry_->GetUnit("u9"), kNotFound, "UNIT_NOT_FOUND");
}

TEST_P(RegistryLifecycleTest, TranslationFaultsAreLogged) {
  Probe("a", 0x100);
  ASSERT_OK_AND_ASSIGN(Translation dma, registry_->Translate("a", 0x5000, kProtWrite));
  EXPECT_EQ(dma.fault, FaultReason::kNoMapping);
  uint64_t total = 0;
  const std::vector<FaultRecord> faults = registry_->RecentFaults(10, &total);
  EXPECT_EQ(total, 1u);
  ASSERT_THAT(faults, SizeIs(1));
  EXPECT_EQ(faults[0].rid, 0x100u);
  EXPECT_EQ(faults[0].iova, 0x5000u);
  EXPECT_EQ(faults[0].reason, FaultReason::kNoMapping);
  EXPECT_THAT(observer_.faults(), SizeIs(1));
  EXPECT_ERROR(registry_->Translate("a", 0x5000, 0), kInvalidArgument, "INVALID_ACCESS");
}

TEST_P(RegistryLifecycleTest, TheFaultLogKeepsTheMostRecent) {
  Recreate([](RegistryOptions* options) { options->fault_log_capacity = 3; });
  Probe("a", 0x100);
  for (uint64_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(registry_->Translate("a", i * kPage4K, kProtRead).ok());
  }
  uint64_t total = 0;
  const std::vector<FaultRecord> faults = registry_->RecentFaults(10, &total);
  EXPECT_EQ(total, 5u);
  ASSERT_THAT(faults, SizeIs(3));
  EXPECT_EQ(faults[0].iova, 4 * kPage4K);  // newest first
  EXPECT_EQ(faults[2].iova, 2 * kPage4K);
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RegistryLifecycleTest);
INSTANTIATE_TEST_SUITE_P(Backends, RegistryLifecycleTest,
                         ::testing::ValuesIn(BackendsUnderTest()));

}  // namespace
}  // namespace test
}  // namespace iommud
