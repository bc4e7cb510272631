// docs/semantics.md "Attach / detach" (ReplaceDomain) and "Domains and mappings" (Unmap all,
// IovaRanges), on every simulated backend.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/backend/backend_factory.h"
#include "core/backend/forwarding_backend.h"
#include "core/iova_ranges.h"
#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/registry_fixture.h"

namespace iommud {

// For the matchers (found by ADL in iommud).
bool operator==(const IovaRange& a, const IovaRange& b) {
  return a.start == b.start && a.size == b.size;
}
void PrintTo(const IovaRange& range, std::ostream* os) {
  *os << "[0x" << std::hex << range.start << ", +0x" << range.size << ")";
}

namespace test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr uint64_t kMsiStart = 0xfee00000;
constexpr uint64_t kMsiSize = 0x100000;

class RegistryReplaceTest : public RegistryTest {
 protected:
  DomainId Alloc(const std::string& unit = "u0", const std::string& owner = kOwner,
                 DomainType type = DomainType::kUnmanaged) {
    absl::StatusOr<DomainInfo> domain = registry_->AllocDomain(unit, type, owner);
    EXPECT_TRUE(domain.ok()) << domain.status();
    return domain.ok() ? domain->id : 0;
  }
  // A group of three devices with four RIDs: 0x800 (their shared alias), 0x808, 0x810, 0x818.
  GroupId FourRidGroup() {
    const DeviceInfo a = Probe("a", 0x808, {0x800});
    Probe("b", 0x810, {0x800});
    Probe("c", 0x818, {0x800});
    EXPECT_TRUE(registry_->ClaimOwnership(a.group, kOwner).ok());
    return a.group;
  }
  void ExpectAllOn(DomainId domain) {
    for (Rid rid : kRids) EXPECT_EQ(Hw(rid), domain) << "rid 0x" << std::hex << rid;
  }
  static constexpr Rid kRids[] = {0x800, 0x808, 0x810, 0x818};
};

TEST_P(RegistryReplaceTest, ReplaceMovesEveryRidStraightToTheNewDomain) {
  const GroupId group = FourRidGroup();
  const DomainId from = Alloc();
  const DomainId to = Alloc();
  ASSERT_TRUE(registry_->Map(from, 0x1000, 0x80000000, 0x1000, kProtRead, kOwner).ok());
  ASSERT_TRUE(registry_->Map(to, 0x2000, 0x90000000, 0x1000, kProtRead, kOwner).ok());
  ASSERT_TRUE(registry_->AttachGroup(group, from, kOwner).ok());
  const GroupInfo before = Group(group);
  // Between two RIDs, every RID points at one of the two user domains: never at the group's
  // blocking or default domain, never at nothing.
  std::vector<std::string> seen;
  SetHook([&](absl::string_view point) {
    if (point != kSyncAttachBetweenRids) return;
    for (Rid rid : kRids) {
      const DomainId hw = Hw(rid);
      if (hw != from && hw != to) seen.push_back(absl::StrCat("rid ", rid, " on ", hw));
    }
    seen.push_back("checked");
  });
  ASSERT_OK_AND_ASSIGN(GroupInfo replaced, registry_->ReplaceDomain(group, from, to, kOwner));
  SetHook(nullptr);
  EXPECT_THAT(seen, ElementsAre("checked", "checked", "checked"));
  EXPECT_EQ(replaced.domain, to);
  EXPECT_EQ(replaced.owner, kOwner);
  EXPECT_EQ(replaced.owner_cnt, before.owner_cnt);
  ExpectAllOn(to);
  EXPECT_THAT(Domain(from).attached_groups, IsEmpty());
  EXPECT_THAT(Domain(to).attached_groups, ElementsAre(group));
  // DMA follows the new domain's page table.
  ASSERT_OK_AND_ASSIGN(Translation hit, registry_->Translate("b", 0x2000, kProtRead));
  EXPECT_EQ(hit.fault, FaultReason::kNone);
  EXPECT_EQ(hit.paddr, 0x90000000u);
  EXPECT_EQ(hit.domain, to);
  ASSERT_OK_AND_ASSIGN(Translation miss, registry_->Translate("b", 0x1000, kProtRead));
  EXPECT_EQ(miss.fault, FaultReason::kNoMapping);
  // The old domain is free to go; the new one is in use.
  EXPECT_ERROR(registry_->FreeDomain(to, kOwner), kFailedPrecondition, "DOMAIN_IN_USE");
  EXPECT_TRUE(registry_->FreeDomain(from, kOwner).ok());
  // One event: attached to `to`, naming the domain replaced.
  bool found = false;
  for (const RegistryEvent& event : observer_.events()) {
    if (event.kind == RegistryEvent::Kind::kAttached && event.domain == to) {
      found = true;
      EXPECT_EQ(event.detail, absl::StrCat("replaced domain ", from));
    }
  }
  EXPECT_TRUE(found);
  // Back out: detach returns the group to blocking.
  ASSERT_TRUE(registry_->DetachGroup(group, to, kOwner).ok());
  ExpectAllOn(before.blocking_domain);
}

TEST_P(RegistryReplaceTest, ReplaceWithTheSameDomainChangesNothing) {
  const GroupId group = FourRidGroup();
  const DomainId domain = Alloc();
  ASSERT_TRUE(registry_->AttachGroup(group, domain, kOwner).ok());
  const std::string before = Snapshot();
  const size_t events = observer_.events().size();
  ASSERT_OK_AND_ASSIGN(GroupInfo same, registry_->ReplaceDomain(group, domain, domain, kOwner));
  EXPECT_EQ(same.domain, domain);
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(observer_.events().size(), events);
}

TEST_P(RegistryReplaceTest, ReplaceErrorsChangeNothing) {
  const GroupId group = FourRidGroup();
  const GroupId unowned = Probe("x", 0x300).group;
  const DomainId from = Alloc();
  const DomainId to = Alloc();
  const DomainId other_unit = Alloc("u1");
  const DomainId other_owner = Alloc("u0", kOther);
  const GroupInfo info = Group(group);

  // On its blocking domain: attach, do not replace (iommufd's replace needs an attached device).
  std::string before = Snapshot();
  EXPECT_ERROR(registry_->ReplaceDomain(group, info.blocking_domain, to, kOwner),
               kFailedPrecondition, "DOMAIN_NOT_ATTACHED");
  EXPECT_ERROR(registry_->ReplaceDomain(group, from, to, kOwner), kFailedPrecondition,
               "DOMAIN_NOT_ATTACHED");
  EXPECT_EQ(Snapshot(), before);

  ASSERT_TRUE(registry_->AttachGroup(group, from, kOwner).ok());
  before = Snapshot();
  EXPECT_ERROR(registry_->ReplaceDomain(group, from, to, kOther), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(registry_->ReplaceDomain(unowned, from, to, kOwner), kPermissionDenied,
               "NOT_OWNER");
  EXPECT_ERROR(registry_->ReplaceDomain(group, to, from, kOwner), kFailedPrecondition,
               "DOMAIN_NOT_ATTACHED");
  EXPECT_ERROR(registry_->ReplaceDomain(group, from, other_unit, kOwner), kInvalidArgument,
               "DOMAIN_INCOMPATIBLE");
  EXPECT_ERROR(registry_->ReplaceDomain(group, from, info.default_domain, kOwner),
               kInvalidArgument, "DOMAIN_INCOMPATIBLE");
  EXPECT_ERROR(registry_->ReplaceDomain(group, from, info.blocking_domain, kOwner),
               kInvalidArgument, "DOMAIN_INCOMPATIBLE");
  EXPECT_ERROR(registry_->ReplaceDomain(group, from, other_owner, kOwner), kPermissionDenied,
               "NOT_OWNER");
  EXPECT_ERROR(registry_->ReplaceDomain(group, from, 9999, kOwner), kNotFound,
               "DOMAIN_NOT_FOUND");
  EXPECT_ERROR(registry_->ReplaceDomain(9999, from, to, kOwner), kNotFound, "GROUP_NOT_FOUND");
  EXPECT_EQ(Snapshot(), before);
  ExpectAllOn(from);
}

TEST_P(RegistryReplaceTest, AFailureAtEachBackendStepPutsEveryRidBackOnTheOldDomain) {
  const GroupId group = FourRidGroup();
  const DomainId from = Alloc();
  const DomainId to = Alloc();
  ASSERT_TRUE(registry_->AttachGroup(group, from, kOwner).ok());
  for (int k = 1; k <= 4; ++k) {
    SCOPED_TRACE(absl::StrCat("attach of RID ", k, " fails"));
    const std::string before = Snapshot();
    const size_t events = observer_.events().size();
    backend_->FailNth(FailingBackend::Op::kAttachRid, k);
    EXPECT_ERROR(registry_->ReplaceDomain(group, from, to, kOwner), kInternal, "INJECTED_FAULT");
    EXPECT_EQ(Snapshot(), before);
    ExpectAllOn(from);
    EXPECT_THAT(Domain(to).attached_groups, IsEmpty());
    EXPECT_THAT(Domain(from).attached_groups, ElementsAre(group));
    EXPECT_EQ(observer_.events().size(), events);
    ExpectConsistent();
    backend_->Clear();
  }
  ASSERT_TRUE(registry_->ReplaceDomain(group, from, to, kOwner).ok());
  ExpectAllOn(to);
}

// A backend that cannot replace without a blocking window (as VFIO type1) refuses first.
class NoReplaceBackend : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  absl::Status CanReplaceDomain(absl::string_view unit, Rid rid) override {
    ++asked;
    return Error(absl::StatusCode::kFailedPrecondition, reason::kReplaceNotAtomic, "no replace");
  }
  int asked = 0;
};

TEST_P(RegistryReplaceTest, ABackendThatCannotReplaceRefusesBeforeAnythingChanges) {
  std::unique_ptr<NoReplaceBackend> refusing;
  Recreate([&](RegistryOptions* options) {
    refusing = std::make_unique<NoReplaceBackend>(options->backend);
    options->backend = refusing.get();
  });
  const GroupId group = FourRidGroup();
  const DomainId from = Alloc();
  const DomainId to = Alloc();
  ASSERT_TRUE(registry_->AttachGroup(group, from, kOwner).ok());
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->ReplaceDomain(group, from, to, kOwner), kFailedPrecondition,
               "REPLACE_NOT_ATOMIC");
  EXPECT_EQ(refusing->asked, 1);
  EXPECT_EQ(Snapshot(), before);
  ExpectAllOn(from);
  // Detach and attach (with the blocked window) still work.
  ASSERT_TRUE(registry_->DetachGroup(group, from, kOwner).ok());
  ASSERT_TRUE(registry_->AttachGroup(group, to, kOwner).ok());
  ExpectAllOn(to);
  registry_.reset();  // before `refusing` goes
}

TEST_P(RegistryReplaceTest, UnmapAllRemovesEveryMappingAndStopsDma) {
  Probe("dev", 0x100);
  const DomainId domain = ClaimAndAttach("dev");
  ASSERT_TRUE(registry_->Map(domain, 0x1000, 0x80000000, 0x1000, kProtRead, kOwner).ok());
  ASSERT_TRUE(registry_->Map(domain, 0x200000, 0x80200000, 0x200000, kProtRead, kOwner).ok());
  ASSERT_TRUE(registry_->Map(domain, 0x40000000, 0x40000000, 0x40000000, kProtRead, kOwner).ok());
  // Prime the IOTLB: the unmap must drop cached translations too.
  ASSERT_EQ(registry_->Translate("dev", 0x1000, kProtRead)->fault, FaultReason::kNone);
  ASSERT_EQ(registry_->Translate("dev", 0x40001000, kProtRead)->fault, FaultReason::kNone);
  EXPECT_ERROR(registry_->Unmap(domain, 0, Registry::kUnmapAll, kOther), kPermissionDenied,
               "NOT_OWNER");
  // Only iova 0 means "all": another iova with the all-ones size is an aperture error.
  EXPECT_ERROR(registry_->Unmap(domain, 0x1000, Registry::kUnmapAll, kOwner), kInvalidArgument,
               "UNALIGNED");
  ASSERT_OK_AND_ASSIGN(uint64_t bytes, registry_->Unmap(domain, 0, Registry::kUnmapAll, kOwner));
  EXPECT_EQ(bytes, 0x1000u + 0x200000u + 0x40000000u);
  ASSERT_OK_AND_ASSIGN(std::vector<Mapping> left, registry_->ListMappings(domain));
  EXPECT_THAT(left, IsEmpty());
  EXPECT_THAT(hardware_->ReadMappings(domain).value(), IsEmpty());
  for (uint64_t iova : {0x1000ull, 0x200000ull, 0x40001000ull}) {
    EXPECT_EQ(registry_->Translate("dev", iova, kProtRead)->fault, FaultReason::kNoMapping);
  }
  // Nothing left: all of nothing is 0 bytes, not an error.
  ASSERT_OK_AND_ASSIGN(bytes, registry_->Unmap(domain, 0, Registry::kUnmapAll, kOwner));
  EXPECT_EQ(bytes, 0u);
}

TEST_P(RegistryReplaceTest, AFailedUnmapAllPutsEveryMappingBack) {
  Probe("dev", 0x100);
  const DomainId domain = ClaimAndAttach("dev");
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(
        registry_->Map(domain, 0x10000 * (i + 1), 0x80000000 + 0x10000 * i, 0x1000, kProtRead,
                       kOwner)
            .ok());
  }
  for (int k = 1; k <= 4; ++k) {
    SCOPED_TRACE(absl::StrCat("unmap ", k, " fails"));
    const std::string before = Snapshot();
    backend_->FailNth(FailingBackend::Op::kUnmap, k);
    EXPECT_ERROR(registry_->Unmap(domain, 0, Registry::kUnmapAll, kOwner), kInternal,
                 "INJECTED_FAULT");
    EXPECT_EQ(Snapshot(), before);
    EXPECT_EQ(registry_->ListMappings(domain)->size(), 4u);
    EXPECT_EQ(registry_->Translate("dev", 0x40000, kProtRead)->fault, FaultReason::kNone);
    backend_->Clear();
  }
  ASSERT_OK_AND_ASSIGN(uint64_t bytes, registry_->Unmap(domain, 0, Registry::kUnmapAll, kOwner));
  EXPECT_EQ(bytes, 0x4000u);
}

TEST_P(RegistryReplaceTest, IovaRangesAreTheApertureMinusTheReservedRegions) {
  const DomainId u0 = Alloc("u0");
  const DomainId u1 = Alloc("u1");
  ASSERT_OK_AND_ASSIGN(std::vector<IovaRange> ranges, registry_->IovaRanges(u0));
  EXPECT_THAT(ranges, ElementsAre(IovaRange{0, kMsiStart},
                                  IovaRange{kMsiStart + kMsiSize,
                                            (uint64_t{1} << 39) - kMsiStart - kMsiSize}));
  ASSERT_OK_AND_ASSIGN(ranges, registry_->IovaRanges(u1));
  EXPECT_THAT(ranges, ElementsAre(IovaRange{0, kMsiStart},
                                  IovaRange{kMsiStart + kMsiSize,
                                            (uint64_t{1} << 32) - kMsiStart - kMsiSize}));
  // Every range is mappable at its ends; the gap is not.
  ASSERT_TRUE(registry_->Map(u1, 0, 0x80000000, 0x1000, kProtRead, kOwner).ok());
  ASSERT_TRUE(registry_->Map(u1, kMsiStart - 0x1000, 0x80001000, 0x1000, kProtRead, kOwner).ok());
  ASSERT_TRUE(registry_->Map(u1, kMsiStart + kMsiSize, 0x80002000, 0x1000, kProtRead, kOwner).ok());
  ASSERT_TRUE(
      registry_->Map(u1, (uint64_t{1} << 32) - 0x1000, 0x80003000, 0x1000, kProtRead, kOwner).ok());
  EXPECT_ERROR(registry_->Map(u1, kMsiStart, 0x80004000, 0x1000, kProtRead, kOwner),
               kInvalidArgument, "RESERVED_REGION");
  EXPECT_ERROR(registry_->Map(u1, uint64_t{1} << 32, 0x80004000, 0x1000, kProtRead, kOwner),
               kOutOfRange, "OUT_OF_APERTURE");
  // A default (DMA) domain has them too; a BLOCKED one has no page table.
  const GroupInfo group = Group(Probe("dev", 0x100).group);
  ASSERT_OK_AND_ASSIGN(ranges, registry_->IovaRanges(group.default_domain));
  EXPECT_EQ(ranges.size(), 2u);
  EXPECT_ERROR(registry_->IovaRanges(Alloc("u0", kOwner, DomainType::kBlocked)),
               kFailedPrecondition, "DOMAIN_NOT_PAGING");
  EXPECT_ERROR(registry_->IovaRanges(9999), kNotFound, "DOMAIN_NOT_FOUND");
}

// A backend whose kernel reports ranges of its own: the registry answers the intersection.
class KernelRangesBackend : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  absl::StatusOr<std::optional<std::vector<IovaRange>>> KernelIovaRanges(DomainId) override {
    return std::vector<IovaRange>{{0x1000, 0xfff000}, {0xfef00000, 0x100000000}};
  }
};

TEST_P(RegistryReplaceTest, IovaRangesIntersectTheKernelsReport) {
  std::unique_ptr<KernelRangesBackend> kernel;
  Recreate([&](RegistryOptions* options) {
    kernel = std::make_unique<KernelRangesBackend>(options->backend);
    options->backend = kernel.get();
  });
  ASSERT_OK_AND_ASSIGN(std::vector<IovaRange> ranges, registry_->IovaRanges(Alloc("u1")));
  EXPECT_THAT(ranges, ElementsAre(IovaRange{0x1000, 0xfff000},
                                  IovaRange{0xfef00000, (uint64_t{1} << 32) - 0xfef00000}));
  registry_.reset();
}

TEST(IovaRangesTest, SubtractAndIntersect) {
  EXPECT_THAT(UsableIovaRanges(0x10000, {}), ElementsAre(IovaRange{0, 0x10000}));
  // Unsorted, overlapping, touching the ends, outside the aperture, overflowing.
  EXPECT_THAT(UsableIovaRanges(0x10000, {{0x8000, 0x1000},
                                         {0x0, 0x1000},
                                         {0x8800, 0x1000},
                                         {0xf000, 0x1000},
                                         {0x20000, 0x1000},
                                         {0x3000, 0},
                                         {0x4000, ~uint64_t{0}}}),
              ElementsAre(IovaRange{0x1000, 0x3000}));
  EXPECT_THAT(UsableIovaRanges(0x10000, {{0x0, 0x10000}}), IsEmpty());
  EXPECT_THAT(IntersectIovaRanges({{0, 0x1000}, {0x2000, 0x2000}}, {{0x800, 0x2000}}),
              ElementsAre(IovaRange{0x800, 0x800}, IovaRange{0x2000, 0x800}));
  EXPECT_THAT(IntersectIovaRanges({{0, 0x1000}}, {{0x1000, 0x1000}}), IsEmpty());
  EXPECT_THAT(IntersectIovaRanges({{0xfffffffffffff000, 0xfff}}, {{0, ~uint64_t{0}}}),
              ElementsAre(IovaRange{0xfffffffffffff000, 0xfff}));
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RegistryReplaceTest);
INSTANTIATE_TEST_SUITE_P(Backends, RegistryReplaceTest, ::testing::ValuesIn(BackendsUnderTest()));

}  // namespace
}  // namespace test
}  // namespace iommud
