// docs/semantics.md "Reserved regions": typed per-device reserved regions, on every simulated
// backend. Every test ends with the fixture's invariant check (registry and hardware agree).
#include <string>
#include <vector>

#include "core/error.h"
#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/registry_fixture.h"

namespace iommud {

bool operator==(const IovaRange& a, const IovaRange& b) {
  return a.start == b.start && a.size == b.size;
}
void PrintTo(const IovaRange& range, std::ostream* os) {
  *os << "[0x" << std::hex << range.start << ", +0x" << range.size << ")";
}

namespace test {
namespace {

using ::testing::ElementsAre;

constexpr uint64_t kMsiStart = 0xfee00000;
constexpr uint64_t kMsiSize = 0x100000;
constexpr uint64_t kAperture = uint64_t{1} << 39;  // u0

class RegistryReservedRegionsTest : public RegistryTest {
 protected:
  absl::StatusOr<DeviceInfo> ProbeWith(const std::string& name, Rid rid,
                                       std::vector<ReservedRegion> regions,
                                       std::vector<Rid> aliases = {}) {
    ProbeRequest request;
    request.unit = "u0";
    request.device = name;
    request.rid = rid;
    request.alias_rids = std::move(aliases);
    request.reserved_regions = std::move(regions);
    return registry_->ProbeDevice(request);
  }
  DomainId Alloc() {
    absl::StatusOr<DomainInfo> domain =
        registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner);
    EXPECT_TRUE(domain.ok()) << domain.status();
    return domain.ok() ? domain->id : 0;
  }
};

TEST_P(RegistryReservedRegionsTest, ProbeValidatesAndSortsTheDeviceRegions) {
  EXPECT_ERROR(ProbeWith("a", 0x10, {{0x1000, 0, ReservedRegionType::kReserved}}),
               kInvalidArgument, "INVALID_RESERVED_REGION");
  EXPECT_ERROR(ProbeWith("a", 0x10, {{0x1800, 0x1000, ReservedRegionType::kReserved}}),
               kInvalidArgument, "INVALID_RESERVED_REGION");
  EXPECT_ERROR(ProbeWith("a", 0x10, {{0x1000, 0x800, ReservedRegionType::kMsi}}),
               kInvalidArgument, "INVALID_RESERVED_REGION");
  EXPECT_ERROR(ProbeWith("a", 0x10, {{kAperture - 0x1000, 0x2000, ReservedRegionType::kMsi}}),
               kInvalidArgument, "INVALID_RESERVED_REGION");
  EXPECT_ERROR(ProbeWith("a", 0x10, {{~uint64_t{0} - 0xfff, 0x1000, ReservedRegionType::kMsi}}),
               kInvalidArgument, "INVALID_RESERVED_REGION");
  EXPECT_TRUE(registry_->ListDevices().empty());
  ASSERT_OK_AND_ASSIGN(DeviceInfo device,
                       ProbeWith("a", 0x10,
                                 {{0x40000, 0x1000, ReservedRegionType::kSwMsi},
                                  {0x8000, 0x2000, ReservedRegionType::kReserved}}));
  EXPECT_THAT(device.reserved_regions,
              ElementsAre(ReservedRegion{0x8000, 0x2000, ReservedRegionType::kReserved},
                          ReservedRegion{0x40000, 0x1000, ReservedRegionType::kSwMsi}));
  ASSERT_OK_AND_ASSIGN(DeviceInfo got, registry_->GetDevice("a"));
  EXPECT_EQ(got.reserved_regions, device.reserved_regions);
}

TEST_P(RegistryReservedRegionsTest, MapOverAnAttachedDevicesRegionIsRefused) {
  ASSERT_OK(ProbeWith("a", 0x10, {{0x100000, 0x10000, ReservedRegionType::kReserved}}).status());
  const DomainId domain = ClaimAndAttach("a");
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->Map(domain, 0x108000, 0x80000000, 0x1000, kProtRead, kOwner),
               kInvalidArgument, "RESERVED_REGION");
  EXPECT_ERROR(registry_->Map(domain, 0xff000, 0x80000000, 0x2000, kProtRead, kOwner),
               kInvalidArgument, "RESERVED_REGION");
  // A batch whose second entry hits it maps nothing, and names the entry.
  std::vector<Registry::MapSpec> batch(2);
  batch[0] = {0x200000, 0x1000, kProtRead, 0x80000000};
  batch[1] = {0x10f000, 0x1000, kProtRead, 0x80001000};
  absl::StatusOr<std::vector<Mapping>> mapped = registry_->MapBatch(domain, batch, kOwner);
  EXPECT_ERROR(mapped, kInvalidArgument, "RESERVED_REGION");
  EXPECT_EQ(GetErrorMetadata(mapped.status())["entry"], "1");
  EXPECT_EQ(Snapshot(), before);
  // Right next to it is fine.
  EXPECT_OK(registry_->Map(domain, 0x110000, 0x80000000, 0x1000, kProtRead, kOwner).status());
  EXPECT_OK(registry_->Map(domain, 0xff000, 0x80001000, 0x1000, kProtRead, kOwner).status());
  ExpectConsistent();
}

TEST_P(RegistryReservedRegionsTest, ADomainNoDeviceOfWhichReservesTheRangeMapsIt) {
  ASSERT_OK(ProbeWith("a", 0x10, {{0x100000, 0x10000, ReservedRegionType::kReserved}}).status());
  ASSERT_OK(ProbeWith("b", 0x20, {}).status());
  const DomainId unattached = Alloc();
  EXPECT_OK(registry_->Map(unattached, 0x100000, 0x80000000, 0x1000, kProtRead, kOwner).status());
  const DomainId b_domain = ClaimAndAttach("b");
  EXPECT_OK(registry_->Map(b_domain, 0x100000, 0x80000000, 0x1000, kProtRead, kOwner).status());
  ExpectConsistent();
}

TEST_P(RegistryReservedRegionsTest, AttachUnderAMappingIsRefusedAndChangesNothing) {
  ASSERT_OK_AND_ASSIGN(
      DeviceInfo a, ProbeWith("a", 0x10, {{0x100000, 0x10000, ReservedRegionType::kMsi}}));
  ASSERT_OK(registry_->ClaimOwnership(a.group, kOwner).status());
  const DomainId domain = Alloc();
  ASSERT_OK(registry_->Map(domain, 0x10c000, 0x80000000, 0x2000, kProtRead, kOwner).status());
  const std::string before = Snapshot();
  const DomainId hw_before = Hw(0x10);
  EXPECT_ERROR(registry_->AttachGroup(a.group, domain, kOwner),
               kFailedPrecondition, "RESERVED_REGION_MAPPED");
  EXPECT_ERROR(registry_->AttachDevice("a", domain, kOwner),
               kFailedPrecondition, "RESERVED_REGION_MAPPED");
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(Hw(0x10), hw_before);
  EXPECT_TRUE(Domain(domain).attached_groups.empty());
  // Replace from a clean domain onto the mapped one: refused, the group stays where it was.
  const DomainId clean = Alloc();
  ASSERT_OK(registry_->AttachGroup(a.group, clean, kOwner).status());
  const std::string attached = Snapshot();
  EXPECT_ERROR(registry_->ReplaceDomain(a.group, clean, domain, kOwner),
               kFailedPrecondition, "RESERVED_REGION_MAPPED");
  EXPECT_EQ(Snapshot(), attached);
  EXPECT_EQ(Hw(0x10), clean);
  // Once the mapping is gone the attach goes through.
  ASSERT_OK(registry_->Unmap(domain, 0x10c000, 0x2000, kOwner).status());
  EXPECT_OK(registry_->ReplaceDomain(a.group, clean, domain, kOwner).status());
  EXPECT_EQ(Hw(0x10), domain);
  ExpectConsistent();
}

TEST_P(RegistryReservedRegionsTest, IovaRangesSubtractEveryAttachedDevicesRegions) {
  // Two devices of two groups, each with its own regions, attached to one domain.
  ASSERT_OK_AND_ASSIGN(
      DeviceInfo a, ProbeWith("a", 0x10, {{0x10000, 0x10000, ReservedRegionType::kReserved},
                                          {0x80000, 0x1000, ReservedRegionType::kDirectRelaxable}}));
  ASSERT_OK_AND_ASSIGN(
      DeviceInfo b, ProbeWith("b", 0x20, {{0x40000, 0x2000, ReservedRegionType::kSwMsi}}));
  ASSERT_OK(registry_->ClaimOwnership(a.group, kOwner).status());
  ASSERT_OK(registry_->ClaimOwnership(b.group, kOwner).status());
  const DomainId domain = Alloc();
  ASSERT_OK_AND_ASSIGN(std::vector<IovaRange> bare, registry_->IovaRanges(domain));
  EXPECT_THAT(bare, ElementsAre(IovaRange{0, kMsiStart},
                                IovaRange{kMsiStart + kMsiSize, kAperture - kMsiStart - kMsiSize}));
  ASSERT_OK(registry_->AttachGroup(a.group, domain, kOwner).status());
  ASSERT_OK(registry_->AttachGroup(b.group, domain, kOwner).status());
  ASSERT_OK_AND_ASSIGN(std::vector<IovaRange> both, registry_->IovaRanges(domain));
  // a's direct-relaxable region at 0x80000 binds only its default domain (the kernel skips it).
  EXPECT_THAT(both, ElementsAre(IovaRange{0, 0x10000}, IovaRange{0x20000, 0x20000},
                                IovaRange{0x42000, kMsiStart - 0x42000},
                                IovaRange{kMsiStart + kMsiSize, kAperture - kMsiStart - kMsiSize}));
  // b leaves: its window is usable again.
  ASSERT_OK(registry_->DetachGroup(b.group, domain, kOwner).status());
  ASSERT_OK_AND_ASSIGN(std::vector<IovaRange> only_a, registry_->IovaRanges(domain));
  EXPECT_THAT(only_a, ElementsAre(IovaRange{0, 0x10000},
                                  IovaRange{0x20000, kMsiStart - 0x20000},
                                  IovaRange{kMsiStart + kMsiSize, kAperture - kMsiStart - kMsiSize}));
  EXPECT_OK(registry_->Map(domain, 0x40000, 0x80000000, 0x2000, kProtRead, kOwner).status());
  // A user mapping over the relaxable region is allowed, as a VMM's guest memory from IOVA 0 is.
  EXPECT_OK(registry_->Map(domain, 0x80000, 0x80100000, 0x1000, kProtRead, kOwner).status());
  // The reserved one is not.
  EXPECT_ERROR(registry_->Map(domain, 0x10000, 0x80200000, 0x1000, kProtRead, kOwner),
               kInvalidArgument, "RESERVED_REGION");
  ExpectConsistent();
}

TEST_P(RegistryReservedRegionsTest, ARequireDirectDeviceCannotBeClaimed) {
  ASSERT_OK_AND_ASSIGN(DeviceInfo a,
                       ProbeWith("a", 0x10, {{0x200000, 0x4000, ReservedRegionType::kDirect}}));
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->ClaimOwnership(a.group, kOwner), kFailedPrecondition,
               "DEVICE_REQUIRES_DIRECT_MAPPING");
  EXPECT_ERROR(registry_->ClaimDevice("a", kOwner), kFailedPrecondition,
               "DEVICE_REQUIRES_DIRECT_MAPPING");
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(Hw(0x10), a.domain);
  // A group mate without direct regions is bound by it too (the group moves as one).
  ASSERT_OK(ProbeWith("b", 0x11, {}, {0x10}).status());
  EXPECT_ERROR(registry_->ClaimDevice("b", kOwner), kFailedPrecondition,
               "DEVICE_REQUIRES_DIRECT_MAPPING");
  // A direct-relaxable region does not bind: that device is claimable.
  ASSERT_OK_AND_ASSIGN(
      DeviceInfo c, ProbeWith("c", 0x30, {{0x200000, 0x4000, ReservedRegionType::kDirectRelaxable}}));
  EXPECT_OK(registry_->ClaimOwnership(c.group, kOwner).status());
  // And a require-direct device cannot join a group off its default domain.
  EXPECT_ERROR(ProbeWith("d", 0x31, {{0x300000, 0x1000, ReservedRegionType::kDirect}}, {0x30}),
               kFailedPrecondition, "DEVICE_REQUIRES_DIRECT_MAPPING");
  EXPECT_FALSE(registry_->GetDevice("d").ok());
  ExpectConsistent();
}

TEST_P(RegistryReservedRegionsTest, DirectRegionsAreIdentityMappedInTheDefaultDomain) {
  ASSERT_OK_AND_ASSIGN(
      DeviceInfo a, ProbeWith("a", 0x10, {{0x200000, 0x4000, ReservedRegionType::kDirect},
                                          {0x400000, 0x1000, ReservedRegionType::kDirectRelaxable},
                                          {0x600000, 0x1000, ReservedRegionType::kReserved}}));
  const GroupInfo group = Group(a.group);
  ASSERT_EQ(a.domain, group.default_domain);
  ASSERT_OK_AND_ASSIGN(std::vector<Mapping> mappings, registry_->ListMappings(group.default_domain));
  ASSERT_EQ(mappings.size(), 2u);
  EXPECT_EQ(mappings[0].iova, 0x200000u);
  EXPECT_EQ(mappings[0].paddr, 0x200000u);
  EXPECT_EQ(mappings[0].size, 0x4000u);
  EXPECT_EQ(mappings[1].iova, 0x400000u);
  EXPECT_EQ(mappings[1].paddr, 0x400000u);
  // The hardware translates them 1:1; the plain reserved region not.
  ASSERT_OK_AND_ASSIGN(Translation t, registry_->Translate("a", 0x203010, kProtWrite));
  EXPECT_EQ(t.fault, FaultReason::kNone);
  EXPECT_EQ(t.paddr, 0x203010u);
  ASSERT_OK_AND_ASSIGN(Translation r, registry_->Translate("a", 0x400000, kProtRead));
  EXPECT_EQ(r.fault, FaultReason::kNone);
  EXPECT_EQ(r.paddr, 0x400000u);
  ASSERT_OK_AND_ASSIGN(Translation none, registry_->Translate("a", 0x600000, kProtRead));
  EXPECT_EQ(none.fault, FaultReason::kNoMapping);
  // A group mate whose direct region overlaps maps only what is not mapped yet.
  ASSERT_OK(ProbeWith("b", 0x11, {{0x202000, 0x4000, ReservedRegionType::kDirectRelaxable}}, {0x10})
                .status());
  ASSERT_OK_AND_ASSIGN(mappings, registry_->ListMappings(group.default_domain));
  ASSERT_EQ(mappings.size(), 3u);
  EXPECT_EQ(mappings[1].iova, 0x204000u);
  EXPECT_EQ(mappings[1].size, 0x2000u);
  ASSERT_OK_AND_ASSIGN(Translation mate, registry_->Translate("b", 0x205000, kProtRead));
  EXPECT_EQ(mate.paddr, 0x205000u);
  ExpectConsistent();
  // The group ends with its last device: the default domain goes, identity maps and all.
  ASSERT_OK(registry_->ReleaseDevice("b").status());
  ASSERT_OK(registry_->ReleaseDevice("a").status());
  EXPECT_FALSE(registry_->GetDomain(group.default_domain).ok());
  ExpectConsistent();
}

TEST_P(RegistryReservedRegionsTest, ADeviceReleaseFreesItsRegionsInTheDomain) {
  ASSERT_OK_AND_ASSIGN(DeviceInfo a, ProbeWith("a", 0x10, {}));
  ASSERT_OK(ProbeWith("b", 0x11, {{0x100000, 0x1000, ReservedRegionType::kReserved}}, {0x10})
                .status());
  const DomainId domain = ClaimAndAttach("a");
  EXPECT_ERROR(registry_->Map(domain, 0x100000, 0x80000000, 0x1000, kProtRead, kOwner),
               kInvalidArgument, "RESERVED_REGION");
  ASSERT_OK(registry_->ReleaseDevice("b").status());
  EXPECT_OK(registry_->Map(domain, 0x100000, 0x80000000, 0x1000, kProtRead, kOwner).status());
  // A device whose region lies under that mapping cannot join the attached group now.
  EXPECT_ERROR(ProbeWith("c", 0x12, {{0x100000, 0x1000, ReservedRegionType::kMsi}}, {0x10}),
               kFailedPrecondition, "RESERVED_REGION_MAPPED");
  EXPECT_FALSE(registry_->GetDevice("c").ok());
  ExpectConsistent();
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RegistryReservedRegionsTest);
INSTANTIATE_TEST_SUITE_P(Backends, RegistryReservedRegionsTest,
                         ::testing::ValuesIn(BackendsUnderTest()));

}  // namespace
}  // namespace test
}  // namespace iommud
