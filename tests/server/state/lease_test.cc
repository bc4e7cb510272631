// Ownership leases through the real daemon: ClaimOwnership with lease_ttl_millis, RenewLease
// keeping the ownership past its first expiry, and the reaper releasing it (LEASE_EXPIRED on
// WatchEvents) once the renewals stop.
#include <atomic>
#include <csignal>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/status_codec.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::iommud::test::OwnOwner;
using ::iommud::test::TestDaemon;
using ::iommud::test::TestDaemonOptions;

constexpr char kSingle[] = "0000:01:00.0";  // alone in its group on u0 (daemon_fixture.h)

class LeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TestDaemonOptions options;
    options.flags.push_back("--lease_reap_interval=50ms");
    ASSERT_OK_AND_ASSIGN(daemon_, TestDaemon::Start(options));
    ASSERT_OK_AND_ASSIGN(client_, daemon_->Connect());
    iommu::v1::GetDeviceRequest request;
    request.set_device(kSingle);
    ASSERT_OK_AND_ASSIGN(iommu::v1::Device device, client_->GetDevice(request));
    group_ = device.group_id();
  }
  void TearDown() override {
    if (daemon_ == nullptr) return;
    absl::StatusOr<int> exit_status = daemon_->Stop();
    ASSERT_TRUE(exit_status.ok()) << exit_status.status();
    EXPECT_EQ(*exit_status, 0) << daemon_->Log();
  }

  absl::StatusOr<iommu::v1::Group> Claim(const std::string& owner, uint64_t lease_millis) {
    iommu::v1::ClaimOwnershipRequest request;
    request.set_group_id(group_);
    request.set_owner(owner);
    request.set_lease_ttl_millis(lease_millis);
    return client_->ClaimOwnership(request);
  }
  absl::StatusOr<iommu::v1::Group> Renew(const std::string& owner, uint64_t lease_millis = 0) {
    iommu::v1::RenewLeaseRequest request;
    request.set_group_id(group_);
    request.set_owner(owner);
    request.set_lease_ttl_millis(lease_millis);
    return client_->RenewLease(request);
  }
  iommu::v1::Group Group() {
    iommu::v1::GetGroupRequest request;
    request.set_group_id(group_);
    return client_->GetGroup(request).value();
  }

  std::unique_ptr<TestDaemon> daemon_;
  std::unique_ptr<IommuClient> client_;
  uint64_t group_ = 0;
};

TEST_F(LeaseTest, RenewalsKeepTheOwnershipAndItExpiresWhenTheyStop) {
  // Watch for the expiry first (the snapshot's end says the stream is live).
  absl::Notification watching;
  std::vector<iommu::v1::Event> expired;  // the watcher's until it is joined
  std::atomic<int> expiries{0};
  absl::Status watch_status;
  std::thread watcher([&] {
    iommu::v1::WatchEventsRequest request;
    request.add_kinds(iommu::v1::EVENT_KIND_LEASE_EXPIRED);
    request.set_group_id(group_);
    watch_status = client_->WatchEvents(
        request,
        [&](const iommu::v1::Event& event) {
          if (event.kind() == iommu::v1::EVENT_KIND_SNAPSHOT_END) watching.Notify();
          if (event.kind() != iommu::v1::EVENT_KIND_LEASE_EXPIRED) return true;
          expired.push_back(event);
          expiries.fetch_add(1);
          return false;
        },
        absl::Seconds(60));
  });
  ASSERT_TRUE(watching.WaitForNotificationWithTimeout(absl::Seconds(30)));

  // Nothing may ASSERT before the watcher is joined: a failure only ends the renewals early.
  const absl::Time claimed_at = absl::Now();
  absl::StatusOr<iommu::v1::Group> claimed = Claim("vm-1", 2000);
  EXPECT_TRUE(claimed.ok()) << claimed.status();
  int64_t last_expiry = 0;
  if (claimed.ok()) {
    EXPECT_EQ(claimed->owner(), OwnOwner("vm-1"));
    EXPECT_EQ(claimed->lease_ttl_millis(), 2000u);
    EXPECT_GE(claimed->lease_expiry_unix_nanos(),
              absl::ToUnixNanos(claimed_at + absl::Seconds(2)));
    last_expiry = claimed->lease_expiry_unix_nanos();
    // Renew every 400ms until well past the first expiry: the ownership stays.
    while (absl::Now() < claimed_at + absl::Seconds(3)) {
      absl::SleepFor(absl::Milliseconds(400));  // the client's keepalive cadence, not a wait
      absl::StatusOr<iommu::v1::Group> renewed = Renew("vm-1");
      if (!renewed.ok()) {
        ADD_FAILURE() << "renewal refused: " << renewed.status();
        break;
      }
      EXPECT_GT(renewed->lease_expiry_unix_nanos(), last_expiry);
      last_expiry = renewed->lease_expiry_unix_nanos();
    }
    EXPECT_EQ(Group().owner(), OwnOwner("vm-1"));
    EXPECT_EQ(expiries.load(), 0);
  }

  // Stop renewing: the reaper releases it and says so.
  watcher.join();
  ASSERT_TRUE(watch_status.ok()) << watch_status;
  ASSERT_EQ(expired.size(), 1u) << "no LEASE_EXPIRED within the deadline";
  EXPECT_EQ(expired[0].group_id(), group_);
  EXPECT_EQ(expired[0].owner(), OwnOwner("vm-1"));
  EXPECT_EQ(expired[0].lease_expiry_unix_nanos(), last_expiry);
  EXPECT_GE(expired[0].time_unix_nanos(), last_expiry);
  const iommu::v1::Group released = Group();
  EXPECT_EQ(released.owner(), "");
  EXPECT_EQ(released.domain_id(), released.default_domain_id());
  EXPECT_EQ(released.lease_ttl_millis(), 0u);
  EXPECT_ERROR(Renew("vm-1"), kFailedPrecondition, "GROUP_NOT_OWNED");
}

TEST_F(LeaseTest, RenewAndClaimErrorsOverRpc) {
  EXPECT_ERROR(Claim("vm-1", 500), kInvalidArgument, "LEASE_TTL_OUT_OF_RANGE");
  EXPECT_EQ(Group().owner(), "");
  EXPECT_ERROR(Renew("vm-1"), kFailedPrecondition, "GROUP_NOT_OWNED");
  ASSERT_OK(Claim("vm-1", 0));  // no lease
  EXPECT_ERROR(Renew("vm-1"), kFailedPrecondition, "NO_LEASE");
  EXPECT_EQ(Group().lease_ttl_millis(), 0u);
  iommu::v1::ReleaseOwnershipRequest release;
  release.set_group_id(group_);
  release.set_owner("vm-1");
  ASSERT_OK(client_->ReleaseOwnership(release));

  ASSERT_OK(Claim("vm-1", 60000));
  EXPECT_ERROR(Renew("vm-2"), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(Renew("vm-1", 25 * 3600 * 1000), kInvalidArgument, "LEASE_TTL_OUT_OF_RANGE");
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group renewed, Renew("vm-1", 120000));
  EXPECT_EQ(renewed.lease_ttl_millis(), 120000u);
  EXPECT_EQ(Group().lease_expiry_unix_nanos(), renewed.lease_expiry_unix_nanos());
  iommu::v1::RenewLeaseRequest no_group;
  EXPECT_ERROR(client_->RenewLease(no_group), kInvalidArgument, "MISSING_FIELD");
}

TEST_F(LeaseTest, AKeepLeaseStreamRenewsAndEndingItReleasesNothing) {
  ASSERT_OK(Claim("vm-1", 1000));
  {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    auto stream = client_->stub()->KeepLease(&context);
    iommu::v1::KeepLeaseRequest keep;
    keep.set_group_id(group_);
    keep.set_owner("vm-1");
    // Renew every 250ms for twice the TTL, then once more with a long TTL so that what follows
    // does not race the reaper.
    const absl::Time start = absl::Now();
    int64_t last_expiry = 0;
    for (bool last = false; !last;) {
      last = absl::Now() >= start + absl::Seconds(2);
      if (last) {
        keep.set_lease_ttl_millis(600000);
      } else {
        absl::SleepFor(absl::Milliseconds(250));  // the keepalive cadence, not a wait
      }
      ASSERT_TRUE(stream->Write(keep));
      iommu::v1::Group group;
      ASSERT_TRUE(stream->Read(&group));
      EXPECT_EQ(group.owner(), OwnOwner("vm-1"));
      EXPECT_GT(group.lease_expiry_unix_nanos(), last_expiry);
      last_expiry = group.lease_expiry_unix_nanos();
    }
    ASSERT_TRUE(stream->WritesDone());
    const grpc::Status status = stream->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    const iommu::v1::Group group = Group();
    EXPECT_EQ(group.owner(), OwnOwner("vm-1"));
    EXPECT_EQ(group.lease_ttl_millis(), 600000u);
    EXPECT_EQ(group.lease_expiry_unix_nanos(), last_expiry);
  }
  {
    // The first refusal ends the stream with its error.
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    auto stream = client_->stub()->KeepLease(&context);
    iommu::v1::KeepLeaseRequest keep;
    keep.set_group_id(group_);
    keep.set_owner("vm-2");
    stream->Write(keep);  // may fail once the server has finished the call
    iommu::v1::Group group;
    EXPECT_FALSE(stream->Read(&group));
    EXPECT_ERROR(FromGrpcStatus(stream->Finish()), kPermissionDenied, "NOT_OWNER");
  }
  EXPECT_EQ(Group().owner(), OwnOwner("vm-1"));
}

// Over the daemon's state file: a lease outlives a restart, and one that lapsed while the daemon
// was down is released right after it starts again.
TEST(LeaseRestartTest, LeasesSurviveARestartAndLapseAfterIt) {
  test::TempDir dir;
  TestDaemonOptions options;
  options.state_dir = dir.path() + "/state";
  options.flags.push_back("--lease_reap_interval=50ms");
  uint64_t short_group = 0;
  uint64_t long_group = 0;
  int64_t short_expiry = 0;
  int64_t long_expiry = 0;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon->Connect());
    auto claim = [&](const std::string& device, uint64_t millis, uint64_t* group,
                     int64_t* expiry) {
      iommu::v1::GetDeviceRequest get;
      get.set_device(device);
      ASSERT_OK_AND_ASSIGN(iommu::v1::Device found, client->GetDevice(get));
      iommu::v1::ClaimOwnershipRequest request;
      request.set_group_id(found.group_id());
      request.set_owner("vm-1");
      request.set_lease_ttl_millis(millis);
      ASSERT_OK_AND_ASSIGN(iommu::v1::Group claimed, client->ClaimOwnership(request));
      *group = claimed.id();
      *expiry = claimed.lease_expiry_unix_nanos();
    };
    claim(kSingle, 1000, &short_group, &short_expiry);
    claim("0000:81:00.0", 3600 * 1000, &long_group, &long_expiry);
    client.reset();
    ASSERT_OK_AND_ASSIGN(int exit_status, daemon->Stop(SIGTERM));
    ASSERT_EQ(exit_status, 0) << daemon->Log();
  }
  // Down until the short lease has lapsed (a known instant, not a condition to poll).
  const absl::Duration left = absl::FromUnixNanos(short_expiry) - absl::Now();
  if (left > absl::ZeroDuration()) absl::SleepFor(left + absl::Milliseconds(10));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon->Connect());
  // Released either before the watch starts (its snapshot shows the group unowned) or after it
  // (LEASE_EXPIRED arrives).
  bool released = false;
  iommu::v1::WatchEventsRequest watch;
  watch.add_kinds(iommu::v1::EVENT_KIND_LEASE_EXPIRED);
  watch.set_group_id(short_group);
  ASSERT_OK(client->WatchEvents(
      watch,
      [&](const iommu::v1::Event& event) {
        if (event.kind() == iommu::v1::EVENT_KIND_SNAPSHOT_GROUP && event.group().owner().empty()) {
          released = true;
        }
        if (event.kind() == iommu::v1::EVENT_KIND_LEASE_EXPIRED) released = true;
        return !released;
      },
      absl::Seconds(60)));
  ASSERT_TRUE(released) << daemon->Log();
  iommu::v1::GetGroupRequest get;
  get.set_group_id(short_group);
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group short_now, client->GetGroup(get));
  EXPECT_EQ(short_now.owner(), "");
  EXPECT_EQ(short_now.domain_id(), short_now.default_domain_id());
  get.set_group_id(long_group);
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group long_now, client->GetGroup(get));
  EXPECT_EQ(long_now.owner(), OwnOwner("vm-1"));
  EXPECT_EQ(long_now.lease_ttl_millis(), 3600u * 1000);
  EXPECT_EQ(long_now.lease_expiry_unix_nanos(), long_expiry);
  client.reset();
  ASSERT_OK_AND_ASSIGN(int exit_status, daemon->Stop(SIGTERM));
  EXPECT_EQ(exit_status, 0) << daemon->Log();
}

}  // namespace
}  // namespace iommud
