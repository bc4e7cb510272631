// Ownership leases (docs/semantics.md "Leases"): a group claim with a TTL, RenewLease, and
// ExpireLeases releasing a lapsed ownership exactly like ReleaseOwnership, durably. Time is a
// ManualClock: nothing here waits.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/backend/backend_factory.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/store/in_memory_state_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/refusing_state_store.h"
#include "tests/core/testing/registry_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// What ReleaseBoundLease did: "released", "kept" (not bound to that stream), or its error.
std::string Outcome(const absl::StatusOr<bool>& released) {
  if (!released.ok()) return released.status().ToString();
  return *released ? "released" : "kept";
}

class RegistryLeaseTest : public RegistryTest {
 protected:
  void SetUp() override {
    Recreate([this](RegistryOptions* options) {
      options->store = &store_;
      options->clock = &clock_;
    });
    Probe("a", 0x100);
    Probe("b", 0x200);
    group_ = GroupOf("a").id;
  }

  std::vector<RegistryEvent> EventsOf(RegistryEvent::Kind kind) {
    std::vector<RegistryEvent> found;
    for (const RegistryEvent& event : observer_.events()) {
      if (event.kind == kind) found.push_back(event);
    }
    return found;
  }

  GroupRecord StoredGroup(GroupId id) {
    absl::StatusOr<StoreSnapshot> snapshot = store_.Load();
    EXPECT_TRUE(snapshot.ok()) << snapshot.status();
    if (snapshot.ok()) {
      for (const GroupRecord& group : snapshot->groups) {
        if (group.id == id) return group;
      }
    }
    ADD_FAILURE() << "group " << id << " is not stored";
    return GroupRecord{};
  }

  // A registry recovered from the store over the same hardware and clock (a daemon restart).
  void Restart() {
    registry_.reset();
    backend_ = std::make_unique<FailingBackend>(hardware_.get());
    RegistryOptions options;
    options.backend = backend_.get();
    options.observer = &observer_;
    options.store = &store_;
    options.clock = &clock_;
    auto registry = Registry::Create(options);
    ASSERT_OK(registry.status());
    registry_ = *std::move(registry);
    ASSERT_OK(registry_->Recover().status());
  }

  InMemoryStateStore memory_;
  RefusingStateStore store_{&memory_};
  ManualClock clock_;
  GroupId group_ = 0;
};

TEST_P(RegistryLeaseTest, ClaimWithLeaseSetsTheExpiry) {
  const absl::Time start = clock_.Now();
  ASSERT_OK_AND_ASSIGN(GroupInfo group,
                       registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  EXPECT_EQ(group.owner, kOwner);
  EXPECT_EQ(group.lease_ttl, absl::Seconds(10));
  EXPECT_EQ(group.lease_expiry, start + absl::Seconds(10));
  EXPECT_EQ(Group(group_).lease_expiry, start + absl::Seconds(10));
  // A claim without a lease has none.
  ASSERT_OK_AND_ASSIGN(GroupInfo b, registry_->ClaimOwnership(GroupOf("b").id, kOwner));
  EXPECT_EQ(b.lease_ttl, absl::ZeroDuration());
}

TEST_P(RegistryLeaseTest, RenewExtendsAndExpiryReleasesLikeReleaseOwnership) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  clock_.Advance(absl::Seconds(8));
  ASSERT_OK_AND_ASSIGN(GroupInfo renewed, registry_->RenewLease(group_, kOwner));
  EXPECT_EQ(renewed.lease_expiry, clock_.Now() + absl::Seconds(10));
  EXPECT_EQ(renewed.lease_ttl, absl::Seconds(10));
  const absl::Time expiry = renewed.lease_expiry;

  // Past the first expiry, before the renewed one: nothing expires.
  clock_.Advance(absl::Seconds(8));
  LeaseReapResult reaped = registry_->ExpireLeases();
  EXPECT_THAT(reaped.expired, IsEmpty());
  EXPECT_EQ(reaped.active, 1u);
  EXPECT_EQ(Group(group_).owner, kOwner);

  clock_.Advance(absl::Seconds(2));  // exactly at the expiry: lapsed
  reaped = registry_->ExpireLeases();
  ASSERT_THAT(reaped.expired, SizeIs(1));
  EXPECT_EQ(reaped.expired[0].group, group_);
  EXPECT_EQ(reaped.expired[0].owner, kOwner);
  EXPECT_EQ(reaped.expired[0].expiry, expiry);
  EXPECT_EQ(reaped.active, 0u);
  EXPECT_THAT(reaped.failed, IsEmpty());

  const GroupInfo group = Group(group_);
  EXPECT_EQ(group.owner, "");
  EXPECT_EQ(group.owner_cnt, 0u);
  EXPECT_EQ(group.domain, group.default_domain);
  EXPECT_EQ(group.lease_ttl, absl::ZeroDuration());
  EXPECT_EQ(Hw(0x100), group.default_domain);
  EXPECT_EQ(registry_->GetDevice("a")->binding, DriverBinding::kNone);

  const std::vector<RegistryEvent> expired = EventsOf(RegistryEvent::Kind::kLeaseExpired);
  ASSERT_THAT(expired, SizeIs(1));
  EXPECT_EQ(expired[0].group, group_);
  EXPECT_EQ(expired[0].owner, kOwner);
  EXPECT_EQ(expired[0].unit, "u0");
  EXPECT_EQ(expired[0].lease_expiry_unix_nanos, absl::ToUnixNanos(expiry));
  const std::vector<RegistryEvent> released = EventsOf(RegistryEvent::Kind::kOwnershipReleased);
  ASSERT_THAT(released, SizeIs(1));
  EXPECT_EQ(released[0].owner, kOwner);
  EXPECT_EQ(released[0].domain, group.default_domain);
  // LEASE_EXPIRED comes first, then the release.
  std::vector<RegistryEvent::Kind> order;
  for (const RegistryEvent& event : observer_.events()) {
    if (event.kind == RegistryEvent::Kind::kLeaseExpired ||
        event.kind == RegistryEvent::Kind::kOwnershipReleased) {
      order.push_back(event.kind);
    }
  }
  EXPECT_THAT(order, ElementsAre(RegistryEvent::Kind::kLeaseExpired,
                                 RegistryEvent::Kind::kOwnershipReleased));

  // The ownership is gone: renewing is refused, and the next pass finds nothing.
  EXPECT_ERROR(registry_->RenewLease(group_, kOwner), kFailedPrecondition, "GROUP_NOT_OWNED");
  EXPECT_THAT(registry_->ExpireLeases().expired, IsEmpty());
  // The store says so too.
  const GroupRecord stored = StoredGroup(group_);
  EXPECT_EQ(stored.owner, "");
  EXPECT_EQ(stored.lease_ttl_nanos, 0);
  EXPECT_EQ(stored.lease_expiry_unix_nanos, 0);
  // Someone else may claim it now.
  ASSERT_OK(registry_->ClaimOwnership(group_, kOther, absl::Seconds(5)));
}

TEST_P(RegistryLeaseTest, RenewWithANewTtlReplacesIt) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  ASSERT_OK_AND_ASSIGN(GroupInfo renewed,
                       registry_->RenewLease(group_, kOwner, absl::Minutes(5)));
  EXPECT_EQ(renewed.lease_ttl, absl::Minutes(5));
  EXPECT_EQ(renewed.lease_expiry, clock_.Now() + absl::Minutes(5));
  clock_.Advance(absl::Minutes(4));
  ASSERT_OK_AND_ASSIGN(renewed, registry_->RenewLease(group_, kOwner));  // keeps 5m
  EXPECT_EQ(renewed.lease_expiry, clock_.Now() + absl::Minutes(5));
  EXPECT_EQ(StoredGroup(group_).lease_expiry_unix_nanos, absl::ToUnixNanos(renewed.lease_expiry));
  EXPECT_EQ(StoredGroup(group_).lease_ttl_nanos, absl::ToInt64Nanoseconds(absl::Minutes(5)));
}

TEST_P(RegistryLeaseTest, RenewAfterTheExpiryIsRefusedAndChangesNothing) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  clock_.Advance(absl::Seconds(11));
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->RenewLease(group_, kOwner), kFailedPrecondition, "LEASE_EXPIRED");
  EXPECT_EQ(Snapshot(), before);
  // The reaper still releases it.
  EXPECT_THAT(registry_->ExpireLeases().expired, SizeIs(1));
  EXPECT_EQ(Group(group_).owner, "");
}

TEST_P(RegistryLeaseTest, OnlyTheOwnerOfALeasedClaimCanRenew) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  ASSERT_OK(registry_->ClaimOwnership(GroupOf("b").id, kOwner));  // no lease
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->RenewLease(group_, kOther), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(registry_->RenewLease(GroupOf("b").id, kOwner), kFailedPrecondition, "NO_LEASE");
  EXPECT_ERROR(registry_->RenewLease(9999, kOwner), kNotFound, "GROUP_NOT_FOUND");
  EXPECT_EQ(Snapshot(), before);
  Probe("c", 0x300);
  EXPECT_ERROR(registry_->RenewLease(GroupOf("c").id, kOwner), kFailedPrecondition,
               "GROUP_NOT_OWNED");
}

TEST_P(RegistryLeaseTest, BadTtlsAreRefusedAndChangeNothing) {
  ASSERT_OK(registry_->ClaimOwnership(GroupOf("b").id, kOwner, absl::Seconds(10)));
  const std::string before = Snapshot();
  const std::string stored_before = absl::StrCat(StoredGroup(group_).owner, "/",
                                                 StoredGroup(GroupOf("b").id).lease_ttl_nanos);
  for (absl::Duration ttl : {absl::Milliseconds(999), absl::Hours(24) + absl::Seconds(1),
                             absl::Seconds(-5), absl::InfiniteDuration()}) {
    SCOPED_TRACE(absl::FormatDuration(ttl));
    EXPECT_ERROR(registry_->ClaimOwnership(group_, kOwner, ttl), kInvalidArgument,
                 "LEASE_TTL_OUT_OF_RANGE");
    EXPECT_ERROR(registry_->RenewLease(GroupOf("b").id, kOwner, ttl), kInvalidArgument,
                 "LEASE_TTL_OUT_OF_RANGE");
  }
  EXPECT_ERROR(registry_->RenewLease(GroupOf("b").id, kOwner, absl::ZeroDuration()),
               kInvalidArgument, "LEASE_TTL_OUT_OF_RANGE");
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(absl::StrCat(StoredGroup(group_).owner, "/",
                         StoredGroup(GroupOf("b").id).lease_ttl_nanos),
            stored_before);
  // The bounds themselves are accepted.
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, kMinLeaseTtl));
  ASSERT_OK(registry_->RenewLease(group_, kOwner, kMaxLeaseTtl));
}

TEST_P(RegistryLeaseTest, ExpiryDetachesTheOwnersDomainAndKeepsItsMappings) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  ASSERT_OK_AND_ASSIGN(DomainInfo domain,
                       registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner));
  ASSERT_OK(registry_->AttachGroup(group_, domain.id, kOwner));
  ASSERT_OK(registry_->Map(domain.id, 0x100000, 0x800000, 0x2000, kProtRead, kOwner));
  ASSERT_OK(registry_->ClaimDevice("a", kOwner));  // a device claim of the same owner
  EXPECT_EQ(Group(group_).owner_cnt, 2u);
  EXPECT_EQ(Hw(0x100), domain.id);

  clock_.Advance(absl::Seconds(10));
  const LeaseReapResult reaped = registry_->ExpireLeases();
  ASSERT_THAT(reaped.expired, SizeIs(1));
  EXPECT_EQ(reaped.expired[0].domain, domain.id);
  ASSERT_THAT(EventsOf(RegistryEvent::Kind::kLeaseExpired), SizeIs(1));
  EXPECT_EQ(EventsOf(RegistryEvent::Kind::kLeaseExpired)[0].domain, domain.id);

  // As ReleaseOwnership: the whole ownership (device claims too) ends, the group is back on its
  // default domain, the owner's domain is detached but not freed (its owner frees it).
  const GroupInfo group = Group(group_);
  EXPECT_EQ(group.owner, "");
  EXPECT_EQ(group.owner_cnt, 0u);
  EXPECT_THAT(group.claimed_devices, IsEmpty());
  EXPECT_EQ(group.domain, group.default_domain);
  EXPECT_EQ(Hw(0x100), group.default_domain);
  EXPECT_THAT(Domain(domain.id).attached_groups, IsEmpty());
  EXPECT_EQ(Domain(domain.id).mapping_count, 1u);
  EXPECT_THAT(registry_->Audit(), IsEmpty());
  ASSERT_OK(registry_->FreeDomain(domain.id, kOwner));
}

TEST_P(RegistryLeaseTest, ExpiryThatCannotRestoreTheDefaultGoesBlockedAndLeaks) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  ASSERT_OK_AND_ASSIGN(DomainInfo domain,
                       registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner));
  ASSERT_OK(registry_->AttachGroup(group_, domain.id, kOwner));
  clock_.Advance(absl::Seconds(10));
  backend_->FailNext(FailingBackend::Op::kAttachRid, 2);  // the restore and its retry
  ASSERT_THAT(registry_->ExpireLeases().expired, SizeIs(1));
  const GroupInfo group = Group(group_);
  EXPECT_EQ(group.owner, "");
  EXPECT_EQ(group.domain, group.blocking_domain);
  EXPECT_EQ(Hw(0x100), group.blocking_domain);
  ASSERT_THAT(observer_.leaks(), SizeIs(1));
  EXPECT_EQ(observer_.leaks()[0].reason, LeakReason::kRestoreDefaultFailed);
  EXPECT_EQ(observer_.leaks()[0].owner, kOwner);
  // The reconcile puts the unowned group back on its default domain.
  registry_->Reconcile();
  EXPECT_EQ(Group(group_).domain, Group(group_).default_domain);
}

TEST_P(RegistryLeaseTest, AnExpiryTheStoreRefusesIsUndoneAndRetried) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  ASSERT_OK_AND_ASSIGN(DomainInfo domain,
                       registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner));
  ASSERT_OK(registry_->AttachGroup(group_, domain.id, kOwner));
  clock_.Advance(absl::Seconds(10));
  const std::string before = Snapshot();
  store_.set_refuse(true);
  LeaseReapResult reaped = registry_->ExpireLeases();
  store_.set_refuse(false);
  EXPECT_THAT(reaped.expired, IsEmpty());
  ASSERT_THAT(reaped.failed, SizeIs(1));
  EXPECT_EQ(reaped.failed[0].first.group, group_);
  EXPECT_EQ(ErrorReason(reaped.failed[0].second), "STORE_WRITE_FAILED");
  EXPECT_EQ(reaped.active, 1u);
  EXPECT_EQ(Snapshot(), before);  // still owned, on the owner's domain, lease kept
  EXPECT_EQ(Hw(0x100), domain.id);
  EXPECT_THAT(EventsOf(RegistryEvent::Kind::kLeaseExpired), IsEmpty());
  EXPECT_EQ(StoredGroup(group_).owner, kOwner);

  reaped = registry_->ExpireLeases();
  EXPECT_THAT(reaped.expired, SizeIs(1));
  EXPECT_EQ(Group(group_).owner, "");
  EXPECT_EQ(StoredGroup(group_).owner, "");
}

TEST_P(RegistryLeaseTest, ReleaseEndsTheLease) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  ASSERT_OK(registry_->ReleaseOwnership(group_, kOwner));
  EXPECT_EQ(Group(group_).lease_ttl, absl::ZeroDuration());
  ASSERT_OK(registry_->ClaimOwnership(group_, kOther));  // no lease this time
  clock_.Advance(absl::Hours(1));
  const LeaseReapResult reaped = registry_->ExpireLeases();
  EXPECT_THAT(reaped.expired, IsEmpty());
  EXPECT_EQ(reaped.active, 0u);
  EXPECT_EQ(Group(group_).owner, kOther);
}

TEST_P(RegistryLeaseTest, AGroupUnpluggedWhileLeasedIsNotExpired) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  ASSERT_OK(registry_->ReleaseDevice("a"));  // records a leak: released while owned
  clock_.Advance(absl::Seconds(10));
  const LeaseReapResult reaped = registry_->ExpireLeases();
  EXPECT_THAT(reaped.expired, IsEmpty());
  EXPECT_EQ(reaped.active, 0u);
}

TEST_P(RegistryLeaseTest, TheLeaseSurvivesARestart) {
  ASSERT_OK_AND_ASSIGN(GroupInfo claimed,
                       registry_->ClaimOwnership(group_, kOwner, absl::Seconds(30)));
  EXPECT_EQ(StoredGroup(group_).lease_expiry_unix_nanos, absl::ToUnixNanos(claimed.lease_expiry));
  EXPECT_EQ(StoredGroup(group_).lease_ttl_nanos, absl::ToInt64Nanoseconds(absl::Seconds(30)));
  const std::string before = Snapshot();
  Restart();
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(Group(group_).lease_expiry, claimed.lease_expiry);
  EXPECT_EQ(Group(group_).lease_ttl, absl::Seconds(30));

  clock_.Advance(absl::Seconds(20));
  ASSERT_OK(registry_->RenewLease(group_, kOwner));  // the recovered lease is renewable
  clock_.Advance(absl::Seconds(29));
  EXPECT_THAT(registry_->ExpireLeases().expired, IsEmpty());
  clock_.Advance(absl::Seconds(1));
  EXPECT_THAT(registry_->ExpireLeases().expired, SizeIs(1));
  EXPECT_EQ(Group(group_).owner, "");
}

TEST_P(RegistryLeaseTest, ALeaseThatLapsedWhileDownExpiresAtTheFirstPass) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(30)));
  ASSERT_OK(registry_->ClaimOwnership(GroupOf("b").id, kOther, absl::Hours(1)));
  registry_.reset();                // the daemon stops...
  clock_.Advance(absl::Minutes(5));  // ...and stays down past the first lease
  Restart();
  EXPECT_EQ(Group(group_).owner, kOwner);  // Recover itself releases nothing
  EXPECT_ERROR(registry_->RenewLease(group_, kOwner), kFailedPrecondition, "LEASE_EXPIRED");
  const LeaseReapResult reaped = registry_->ExpireLeases();
  ASSERT_THAT(reaped.expired, SizeIs(1));
  EXPECT_EQ(reaped.expired[0].group, group_);
  EXPECT_EQ(reaped.active, 1u);
  EXPECT_EQ(Group(group_).owner, "");
  EXPECT_EQ(Hw(0x100), Group(group_).default_domain);
  EXPECT_EQ(GroupOf("b").owner, kOther);
}

TEST_P(RegistryLeaseTest, ALeaseWithoutAnOwnerInTheStoreIsCorrupt) {
  GroupRecord bad = StoredGroup(group_);
  bad.lease_ttl_nanos = absl::ToInt64Nanoseconds(absl::Seconds(10));
  bad.lease_expiry_unix_nanos = absl::ToUnixNanos(clock_.Now());
  StoreBatch batch;
  batch.put_groups.push_back(bad);
  ASSERT_OK(store_.Commit(batch));
  registry_.reset();
  RegistryOptions options;
  options.backend = backend_.get();
  options.store = &store_;
  options.clock = &clock_;
  auto registry = Registry::Create(options);
  ASSERT_OK(registry.status());
  EXPECT_ERROR((*registry)->Recover(), kDataLoss, "STATE_CORRUPT");
}

// --- Ownership bound to a liveness stream (BindLease / ReleaseBoundLease) ---

TEST_P(RegistryLeaseTest, TheEndOfTheBoundStreamReleasesLikeReleaseOwnership) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  ASSERT_OK_AND_ASSIGN(DomainInfo domain,
                       registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner));
  ASSERT_OK(registry_->AttachGroup(group_, domain.id, kOwner));
  clock_.Advance(absl::Seconds(3));
  ASSERT_OK_AND_ASSIGN(GroupInfo bound, registry_->BindLease(group_, kOwner, std::nullopt, 7));
  EXPECT_TRUE(bound.lease_bound);
  EXPECT_EQ(bound.lease_expiry, clock_.Now() + absl::Seconds(10));  // binding renews
  EXPECT_TRUE(Group(group_).lease_bound);

  ASSERT_OK_AND_ASSIGN(bool released, registry_->ReleaseBoundLease(group_, 7));
  EXPECT_TRUE(released);
  const GroupInfo group = Group(group_);
  EXPECT_EQ(group.owner, "");
  EXPECT_EQ(group.owner_cnt, 0u);
  EXPECT_FALSE(group.lease_bound);
  EXPECT_EQ(group.lease_ttl, absl::ZeroDuration());
  EXPECT_EQ(group.domain, group.default_domain);
  EXPECT_EQ(Hw(0x100), group.default_domain);
  EXPECT_EQ(registry_->GetDevice("a")->binding, DriverBinding::kNone);
  EXPECT_EQ(StoredGroup(group_).owner, "");
  EXPECT_EQ(StoredGroup(group_).lease_ttl_nanos, 0);
  const std::vector<RegistryEvent> events = EventsOf(RegistryEvent::Kind::kOwnershipReleased);
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].owner, kOwner);
  EXPECT_EQ(events[0].detail, "bound stream ended");
  EXPECT_EQ(events[0].domain, group.default_domain);
  EXPECT_THAT(EventsOf(RegistryEvent::Kind::kLeaseExpired), IsEmpty());  // not an expiry
  // Once released, the same stream's end again does nothing, and the domain is free to go.
  EXPECT_EQ(Outcome(registry_->ReleaseBoundLease(group_, 7)), "kept");
  ASSERT_OK(registry_->FreeDomain(domain.id, kOwner));
}

TEST_P(RegistryLeaseTest, OnlyOneStreamBindsAnOwnership) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  ASSERT_OK(registry_->BindLease(group_, kOwner, std::nullopt, 7));
  clock_.Advance(absl::Seconds(2));
  ASSERT_OK_AND_ASSIGN(GroupInfo again, registry_->BindLease(group_, kOwner, absl::Seconds(20), 7));
  EXPECT_EQ(again.lease_expiry, clock_.Now() + absl::Seconds(20));  // the same stream renews
  clock_.Advance(absl::Seconds(1));
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->BindLease(group_, kOwner, std::nullopt, 8), kFailedPrecondition,
               "LEASE_ALREADY_BOUND");
  EXPECT_EQ(Snapshot(), before);  // not renewed either
  EXPECT_EQ(Group(group_).lease_expiry, again.lease_expiry);
  // Another stream's end does not release it; a plain renewal keeps the binding.
  EXPECT_EQ(Outcome(registry_->ReleaseBoundLease(group_, 8)), "kept");
  ASSERT_OK_AND_ASSIGN(GroupInfo renewed, registry_->RenewLease(group_, kOwner));
  EXPECT_TRUE(renewed.lease_bound);
  EXPECT_EQ(Group(group_).owner, kOwner);
  EXPECT_EQ(Outcome(registry_->ReleaseBoundLease(group_, 7)), "released");
}

TEST_P(RegistryLeaseTest, BindingNeedsTheOwnersLeasedClaim) {
  EXPECT_ERROR(registry_->BindLease(group_, kOwner, std::nullopt, 7), kFailedPrecondition,
               "GROUP_NOT_OWNED");
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner));  // no lease
  EXPECT_ERROR(registry_->BindLease(group_, kOwner, std::nullopt, 7), kFailedPrecondition,
               "NO_LEASE");
  ASSERT_OK(registry_->ReleaseOwnership(group_, kOwner));
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  EXPECT_ERROR(registry_->BindLease(group_, kOther, std::nullopt, 7), kPermissionDenied,
               "NOT_OWNER");
  EXPECT_ERROR(registry_->BindLease(group_, kOwner, std::nullopt, 0), kInvalidArgument,
               "INVALID_ARGUMENT");
  clock_.Advance(absl::Seconds(10));
  EXPECT_ERROR(registry_->BindLease(group_, kOwner, std::nullopt, 7), kFailedPrecondition,
               "LEASE_EXPIRED");
  EXPECT_FALSE(Group(group_).lease_bound);
}

TEST_P(RegistryLeaseTest, AnOldStreamDoesNotReleaseALaterClaim) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  ASSERT_OK(registry_->BindLease(group_, kOwner, std::nullopt, 7));
  ASSERT_OK(registry_->ReleaseOwnership(group_, kOwner));
  EXPECT_FALSE(Group(group_).lease_bound);
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));  // the same owner
  EXPECT_EQ(Outcome(registry_->ReleaseBoundLease(group_, 7)), "kept");
  EXPECT_EQ(Group(group_).owner, kOwner);
  // An expiry ends the binding too.
  ASSERT_OK(registry_->BindLease(group_, kOwner, std::nullopt, 9));
  clock_.Advance(absl::Seconds(10));
  EXPECT_THAT(registry_->ExpireLeases().expired, SizeIs(1));
  ASSERT_OK(registry_->ClaimOwnership(group_, kOther, absl::Seconds(10)));
  EXPECT_EQ(Outcome(registry_->ReleaseBoundLease(group_, 9)), "kept");
  EXPECT_EQ(Group(group_).owner, kOther);
}

TEST_P(RegistryLeaseTest, ABoundClaimFallsBackToItsTtlAcrossARestart) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(30)));
  ASSERT_OK_AND_ASSIGN(GroupInfo bound, registry_->BindLease(group_, kOwner, std::nullopt, 7));
  Restart();
  GroupInfo group = Group(group_);
  EXPECT_EQ(group.owner, kOwner);  // no stream can exist across a restart: the TTL decides
  EXPECT_FALSE(group.lease_bound);
  EXPECT_EQ(group.lease_expiry, bound.lease_expiry);
  EXPECT_EQ(Outcome(registry_->ReleaseBoundLease(group_, 7)), "kept");
  EXPECT_EQ(Group(group_).owner, kOwner);
  // A new stream of the owner may bind it again...
  ASSERT_OK(registry_->BindLease(group_, kOwner, std::nullopt, 1));
  EXPECT_EQ(Outcome(registry_->ReleaseBoundLease(group_, 1)), "released");
  EXPECT_EQ(Group(group_).owner, "");
  // ...and one that does not is released at the expiry.
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(30)));
  ASSERT_OK(registry_->BindLease(group_, kOwner, std::nullopt, 2));
  Restart();
  clock_.Advance(absl::Seconds(29));
  EXPECT_THAT(registry_->ExpireLeases().expired, IsEmpty());
  clock_.Advance(absl::Seconds(1));
  EXPECT_THAT(registry_->ExpireLeases().expired, SizeIs(1));
  EXPECT_EQ(Group(group_).owner, "");
}

TEST_P(RegistryLeaseTest, ABoundReleaseTheStoreRefusesLeavesTheLeaseUnbound) {
  ASSERT_OK(registry_->ClaimOwnership(group_, kOwner, absl::Seconds(10)));
  ASSERT_OK(registry_->BindLease(group_, kOwner, std::nullopt, 7));
  store_.set_refuse(true);
  EXPECT_ERROR(registry_->ReleaseBoundLease(group_, 7), kUnavailable, "STORE_WRITE_FAILED");
  store_.set_refuse(false);
  GroupInfo group = Group(group_);
  EXPECT_EQ(group.owner, kOwner);
  EXPECT_FALSE(group.lease_bound);
  EXPECT_EQ(Hw(0x100), group.blocking_domain);
  EXPECT_THAT(EventsOf(RegistryEvent::Kind::kOwnershipReleased), IsEmpty());
  clock_.Advance(absl::Seconds(10));
  EXPECT_THAT(registry_->ExpireLeases().expired, SizeIs(1));
  EXPECT_EQ(Group(group_).owner, "");
}

INSTANTIATE_TEST_SUITE_P(Backends, RegistryLeaseTest, ::testing::ValuesIn(BackendsUnderTest()));

}  // namespace
}  // namespace test
}  // namespace iommud
