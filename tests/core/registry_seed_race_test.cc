// The seed race (docs/semantics.md "Locking"): two devices a and b of one group, release(a) racing
// with use-default-domain(b), the free of a domain and release(b). In the seed, release dropped the
// group mutex before the backend's release, so a device could be left pointing at a freed domain.
//
// Deterministic: (1) every order of the four operations, from two starting states; (2) forced
// overlaps through the registry's sync points, showing the second operation waits for the whole
// release (backend release included) when it needs the group, and never sees a half-released group.
#include <algorithm>
#include <array>
#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/registry_fixture.h"

namespace iommud {
namespace test {
namespace {

using ::testing::IsEmpty;

constexpr Rid kSharedRid = 0x500;

enum class Op { kReleaseA, kUseDefaultB, kFreeDomain, kReleaseB };

std::string OpName(Op op) {
  switch (op) {
    case Op::kReleaseA: return "release(a)";
    case Op::kUseDefaultB: return "use_default_domain(b)";
    case Op::kFreeDomain: return "free(D)";
    case Op::kReleaseB: return "release(b)";
  }
  return "?";
}

class SeedRaceTest : public RegistryTest {
 protected:
  // a and b share a RID (one group); D is an UNMANAGED domain of kOwner. When `owned`, b is claimed
  // by kOwner and the group attached to D.
  void SetUpScenario(bool owned) {
    group_ = Probe("a", kSharedRid).group;
    Probe("b", kSharedRid);
    ASSERT_OK_AND_ASSIGN(DomainInfo domain,
                         registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner));
    domain_ = domain.id;
    ASSERT_TRUE(registry_->Map(domain_, 0, 0x100000, 0x1000, kProtRead, kOwner).ok());
    if (owned) {
      ASSERT_TRUE(registry_->ClaimDevice("b", kOwner).ok());
      ASSERT_TRUE(registry_->AttachGroup(group_, domain_, kOwner).ok());
    }
  }

  absl::Status Run(Op op) {
    switch (op) {
      case Op::kReleaseA: return registry_->ReleaseDevice("a").status();
      case Op::kUseDefaultB: return registry_->UseDefaultDomain("b").status();
      case Op::kFreeDomain: return registry_->FreeDomain(domain_, kOwner).status();
      case Op::kReleaseB: return registry_->ReleaseDevice("b").status();
    }
    return absl::UnknownError("unreachable");
  }

  // The seed's symptom: a RID whose hardware entry names a domain that no longer exists.
  void ExpectNoRidOnAFreedDomain(const std::string& when) {
    const std::vector<DomainId> alive = hardware_->ReadDomains();
    ASSERT_OK_AND_ASSIGN(std::vector<RidEntry> entries, hardware_->ReadRids("u0"));
    for (const RidEntry& entry : entries) {
      EXPECT_TRUE(std::binary_search(alive.begin(), alive.end(), entry.domain))
          << when << ": RID " << entry.rid << " points at freed domain " << entry.domain;
    }
  }

  GroupId group_ = 0;
  DomainId domain_ = 0;
};

TEST_P(SeedRaceTest, EveryOrderOfTheFourOperationsLeavesNoRidOnAFreedDomain) {
  for (bool owned : {false, true}) {
    std::array<Op, 4> ops = {Op::kReleaseA, Op::kUseDefaultB, Op::kFreeDomain, Op::kReleaseB};
    std::sort(ops.begin(), ops.end());
    do {
      std::string order = owned ? "owned:" : "default:";
      for (Op op : ops) absl::StrAppend(&order, " ", OpName(op));
      SCOPED_TRACE(order);
      Recreate([](RegistryOptions*) {});
      SetUpScenario(owned);
      bool released_b = false;
      bool freed = false;
      for (Op op : ops) {
        const absl::Status status = Run(op);
        switch (op) {
          case Op::kReleaseA:
            EXPECT_TRUE(status.ok()) << status;
            break;
          case Op::kReleaseB:
            EXPECT_TRUE(status.ok()) << status;
            released_b = true;
            break;
          case Op::kUseDefaultB:
            if (released_b) {
              EXPECT_ERROR(status, kNotFound, "DEVICE_NOT_FOUND");
            } else if (owned) {
              EXPECT_ERROR(status, kFailedPrecondition, "GROUP_OWNED");
            } else {
              EXPECT_TRUE(status.ok()) << status;
            }
            break;
          case Op::kFreeDomain:
            // Refused while the group is attached; the group detaches only when it dies.
            if (owned && !released_b) {
              EXPECT_ERROR(status, kFailedPrecondition, "DOMAIN_IN_USE");
            } else {
              EXPECT_TRUE(status.ok()) << status;
              freed = true;
            }
            break;
        }
        ExpectNoRidOnAFreedDomain(OpName(op));
        ExpectConsistent();
      }
      EXPECT_EQ(Hw(kSharedRid), 0u);
      EXPECT_ERROR(registry_->GetGroup(group_), kNotFound, "GROUP_NOT_FOUND");
      if (!freed) {
        EXPECT_TRUE(registry_->FreeDomain(domain_, kOwner).ok());
      }
      EXPECT_THAT(hardware_->ReadRids("u0").value(), IsEmpty());
    } while (std::next_permutation(ops.begin(), ops.end()));
  }
}

// Runs `second` on another thread when release(a) reaches `point` (group mutex held), checks it
// cannot complete while release(a) holds the group, and returns its status once both are done.
class Overlap {
 public:
  Overlap(RegistryTest* test, std::function<absl::Status()> second) : second_(std::move(second)) {}
  void AtSyncPoint() {
    thread_ = std::thread([this] {
      status_ = second_();
      done_.store(true);
    });
    // If `second` needs the group, it cannot finish while we hold it, however long we wait; if
    // it does not, it finishes. Give it the chance to overtake us.
    absl::SleepFor(absl::Milliseconds(50));
    finished_during_release_ = done_.load();
  }
  absl::Status Join() {
    if (thread_.joinable()) thread_.join();
    return status_;
  }
  bool finished_during_release() const { return finished_during_release_; }

 private:
  std::function<absl::Status()> second_;
  std::thread thread_;
  std::atomic<bool> done_{false};
  bool finished_during_release_ = false;
  absl::Status status_;
};

TEST_P(SeedRaceTest, UseDefaultDomainWaitsForTheWholeReleaseIncludingTheBackend) {
  for (absl::string_view point : {kSyncReleaseRemovedFromGroup, kSyncReleaseBackendReleased}) {
    SCOPED_TRACE(point);
    Recreate([](RegistryOptions*) {});
    SetUpScenario(/*owned=*/false);
    Overlap overlap(this, [this] { return registry_->UseDefaultDomain("b").status(); });
    std::atomic<bool> fired{false};
    SetHook([&](absl::string_view at) {
      if (at == point && !fired.exchange(true)) overlap.AtSyncPoint();
    });
    ASSERT_TRUE(registry_->ReleaseDevice("a").ok());
    SetHook(nullptr);
    EXPECT_TRUE(fired.load());
    EXPECT_FALSE(overlap.finished_during_release());
    EXPECT_TRUE(overlap.Join().ok());
    EXPECT_GE(observer_.locks_contended(), 1u);
    EXPECT_EQ(GroupOf("b").owner_cnt, 1u);
    EXPECT_EQ(Hw(kSharedRid), GroupOf("b").default_domain);
    ExpectNoRidOnAFreedDomain("after");
    ExpectConsistent();
  }
}

TEST_P(SeedRaceTest, FreeDuringTheLastReleaseIsRefusedUntilTheHardwareLetGo) {
  Recreate([](RegistryOptions*) {});
  SetUpScenario(/*owned=*/true);
  ASSERT_TRUE(registry_->ReleaseDevice("a").ok());
  Overlap overlap(this, [this] { return registry_->FreeDomain(domain_, kOwner).status(); });
  std::atomic<bool> fired{false};
  SetHook([&](absl::string_view at) {
    if (at == kSyncReleaseRemovedFromGroup && !fired.exchange(true)) overlap.AtSyncPoint();
  });
  ASSERT_OK_AND_ASSIGN(ReleaseResult result, registry_->ReleaseDevice("b"));
  SetHook(nullptr);
  EXPECT_TRUE(result.leaked_attachment);  // b was claimed and attached to D
  // Free does not need the group, so it finished, refused: the group was still attached to D.
  EXPECT_TRUE(overlap.finished_during_release());
  EXPECT_ERROR(overlap.Join(), kFailedPrecondition, "DOMAIN_IN_USE");
  ExpectNoRidOnAFreedDomain("after release(b)");
  EXPECT_TRUE(registry_->FreeDomain(domain_, kOwner).ok());
  ExpectNoRidOnAFreedDomain("after free");
}

// The release-vs-free window of a group whose devices have their own RIDs: c (RID 0x600) and d
// (RID 0x601, alias 0x600) form one group; the owner's only claim is on d and the group is attached
// to D. Releasing d ends the ownership, but only after d's own RID 0x601 has left D in the
// hardware: a FreeDomain at either sync point of the release is refused by the registry
// (DOMAIN_IN_USE), never passed to a backend that still has a RID on D.
TEST_P(SeedRaceTest, FreeDuringAReleaseThatEndsTheOwnershipWaitsForTheDevicesOwnRids) {
  for (absl::string_view point : {kSyncReleaseRemovedFromGroup, kSyncReleaseBackendReleased}) {
    SCOPED_TRACE(point);
    Recreate([](RegistryOptions*) {});
    const GroupId group = Probe("c", 0x600).group;
    ASSERT_EQ(Probe("d", 0x601, {0x600}).group, group);
    ASSERT_OK_AND_ASSIGN(DomainInfo domain,
                         registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner));
    ASSERT_TRUE(registry_->ClaimDevice("d", kOwner).ok());
    ASSERT_TRUE(registry_->AttachGroup(group, domain.id, kOwner).ok());
    ASSERT_EQ(Hw(0x601), domain.id);
    absl::Status freed;
    bool fired = false;
    SetHook([&](absl::string_view at) {
      if (at != point || fired) return;
      fired = true;
      // Whenever a RID points at D in the hardware, the registry still has a group on D, so the
      // registry itself refuses the free (before the backend is asked).
      const std::vector<RidEntry> rids = hardware_->ReadRids("u0").value();
      const bool rid_on_d = std::any_of(rids.begin(), rids.end(), [&](const RidEntry& entry) {
        return entry.domain == domain.id;
      });
      ASSERT_OK_AND_ASSIGN(DomainInfo seen, registry_->GetDomain(domain.id));
      EXPECT_TRUE(!rid_on_d || !seen.attached_groups.empty())
          << "a RID is on D in the hardware while the registry has no group on D";
      freed = registry_->FreeDomain(domain.id, kOwner).status();  // no group mutex needed
    });
    ASSERT_OK_AND_ASSIGN(ReleaseResult result, registry_->ReleaseDevice("d"));
    SetHook(nullptr);
    EXPECT_FALSE(result.leaked_attachment);  // c remains; the ownership simply ended
    ASSERT_TRUE(fired);
    EXPECT_ERROR(freed, kFailedPrecondition, "DOMAIN_IN_USE");
    const std::vector<DomainId> alive = hardware_->ReadDomains();
    EXPECT_TRUE(std::binary_search(alive.begin(), alive.end(), domain.id));
    EXPECT_EQ(GroupOf("c").owner, "");
    EXPECT_EQ(Hw(0x600), GroupOf("c").default_domain);
    EXPECT_EQ(Hw(0x601), 0u);  // released
    EXPECT_TRUE(registry_->FreeDomain(domain.id, kOwner).ok());
    ExpectNoRidOnAFreedDomain("after");
    ExpectConsistent();
  }
}

TEST_P(SeedRaceTest, ReleaseOfBWaitsForReleaseOfA) {
  Recreate([](RegistryOptions*) {});
  SetUpScenario(/*owned=*/false);
  Overlap overlap(this, [this] { return registry_->ReleaseDevice("b").status(); });
  std::atomic<bool> fired{false};
  SetHook([&](absl::string_view at) {
    if (at == kSyncReleaseRemovedFromGroup && !fired.exchange(true)) overlap.AtSyncPoint();
  });
  ASSERT_TRUE(registry_->ReleaseDevice("a").ok());
  SetHook(nullptr);
  EXPECT_FALSE(overlap.finished_during_release());
  EXPECT_TRUE(overlap.Join().ok());
  EXPECT_EQ(Hw(kSharedRid), 0u);
  EXPECT_ERROR(registry_->GetGroup(group_), kNotFound, "GROUP_NOT_FOUND");
  EXPECT_TRUE(registry_->FreeDomain(domain_, kOwner).ok());
  ExpectNoRidOnAFreedDomain("after");
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(SeedRaceTest);
INSTANTIATE_TEST_SUITE_P(Backends, SeedRaceTest, ::testing::ValuesIn(BackendsUnderTest()));

}  // namespace
}  // namespace test
}  // namespace iommud
