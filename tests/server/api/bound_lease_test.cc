// Ownership bound to a KeepLease stream (docs/semantics.md "Ownership bound to a stream"), on an
// in-process daemon over a real unix-socket channel: however the bound stream ends (half-close,
// cancellation, the client dropping its channel, a message the limiter refuses) the ownership is
// released at once, long before its TTL, and the state is polled for it (no fixed sleeps). A second
// stream cannot bind the same ownership. The daemon's own shutdown releases nothing: after a
// restart the claim is owned, unbound, and its TTL decides; while the daemon recovers, a bind is
// refused like any renewal.
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "gtest/gtest.h"
#include "proto/status_codec.h"
#include "server/daemon.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::iommud::test::TempDir;

constexpr char kSingle[] = "0000:01:00.0";  // alone in its group (daemon_fixture.h)
constexpr uint64_t kLeaseMillis = 600000;   // 10 minutes: far beyond every wait here

DaemonOptions OptionsIn(const TempDir& dir, const Limits& limits = Limits()) {
  DaemonOptions options;
  options.state_dir = dir.path() + "/state";
  options.topology = dir.WriteFile("topology.textpb", test::kTestTopology);
  options.metrics_listen = "";
  options.audit_interval = absl::ZeroDuration();
  options.limits = limits;
  return options;
}

absl::StatusOr<std::unique_ptr<IommuClient>> ConnectTo(const std::string& target) {
  ClientOptions options;
  options.target = target;
  return IommuClient::Connect(options);
}

absl::StatusOr<iommu::v1::Group> ClaimLeased(IommuClient& client) {
  iommu::v1::GetDeviceRequest get;
  get.set_device(kSingle);
  absl::StatusOr<iommu::v1::Device> device = client.GetDevice(get);
  if (!device.ok()) return device.status();
  iommu::v1::ClaimOwnershipRequest claim;
  claim.set_group_id(device->group_id());
  claim.set_owner("vm-1");
  claim.set_lease_ttl_millis(kLeaseMillis);
  return client.ClaimOwnership(claim);
}

// One KeepLease stream of `client`.
class Stream {
 public:
  Stream(IommuClient& client, uint64_t group) : group_(group) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    stream_ = client.stub()->KeepLease(&context_);
  }
  // Sends one message (binding if `bind`) and reads its answer: the group, or the final status.
  absl::StatusOr<iommu::v1::Group> Send(bool bind) {
    iommu::v1::KeepLeaseRequest keep;
    keep.set_group_id(group_);
    keep.set_owner("vm-1");
    keep.set_bind(bind);
    stream_->Write(keep);
    iommu::v1::Group group;
    if (stream_->Read(&group)) return group;
    return FromGrpcStatus(stream_->Finish());
  }
  absl::Status Close() {
    stream_->WritesDone();
    iommu::v1::Group ignored;
    while (stream_->Read(&ignored)) {
    }
    return FromGrpcStatus(stream_->Finish());
  }
  void Cancel() { context_.TryCancel(); }

 private:
  const uint64_t group_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<iommu::v1::KeepLeaseRequest, iommu::v1::Group>> stream_;
};

GroupInfo GroupNow(const Daemon& daemon, uint64_t group) {
  absl::StatusOr<GroupInfo> info = daemon.registry()->GetGroup(group);
  EXPECT_TRUE(info.ok()) << info.status();
  return info.ok() ? *info : GroupInfo{};
}

// Polls the registry until the group has no owner; false if it still has one after 10 s.
bool ReleasedWithinBound(const Daemon& daemon, uint64_t group) {
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10); absl::Now() < deadline;) {
    if (GroupNow(daemon, group).owner.empty()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return false;
}

double BoundReleases(const Daemon& daemon, const std::string& outcome) {
  for (const prometheus::MetricFamily& family : daemon.metrics()->registry()->Collect()) {
    if (family.name != "iommud_bound_stream_releases_total") continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        if (label.name == "outcome" && label.value == outcome) return metric.counter.value;
      }
    }
  }
  return -1;
}

enum class End { kHalfClose, kCancel, kDropChannel };

class BoundLeaseEndTest : public ::testing::TestWithParam<End> {};

TEST_P(BoundLeaseEndTest, TheEndOfTheBoundStreamReleasesTheOwnershipAtOnce) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir)));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> admin, ConnectTo(daemon->unix_target()));
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group claimed, ClaimLeased(*admin));
  EXPECT_FALSE(claimed.lease_bound());
  const absl::Time started = absl::Now();

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, ConnectTo(daemon->unix_target()));
  auto stream = std::make_unique<Stream>(*client, claimed.id());
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group bound, stream->Send(/*bind=*/true));
  EXPECT_TRUE(bound.lease_bound());
  EXPECT_EQ(bound.owner(), claimed.owner());
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group renewed, stream->Send(/*bind=*/false));
  EXPECT_TRUE(renewed.lease_bound());  // a plain renewal on the stream keeps the binding
  iommu::v1::GetGroupRequest get;
  get.set_group_id(claimed.id());
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group seen, admin->GetGroup(get));
  EXPECT_TRUE(seen.lease_bound());
  EXPECT_EQ(BoundReleases(*daemon, "released"), 0);

  switch (GetParam()) {
    case End::kHalfClose:
      EXPECT_OK(stream->Close());
      break;
    case End::kCancel:
      stream->Cancel();
      break;
    case End::kDropChannel:  // the stream and the client's channel go away unfinished
      stream.reset();
      client.reset();
      break;
  }
  ASSERT_TRUE(ReleasedWithinBound(*daemon, claimed.id()));
  EXPECT_LT(absl::Now() - started, absl::Milliseconds(kLeaseMillis));  // not the TTL
  const GroupInfo group = GroupNow(*daemon, claimed.id());
  EXPECT_EQ(group.domain, group.default_domain);
  EXPECT_EQ(group.lease_ttl, absl::ZeroDuration());
  EXPECT_FALSE(group.lease_bound);
  // The metric is counted just after the release; poll for it too.
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
       BoundReleases(*daemon, "released") < 1 && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(BoundReleases(*daemon, "released"), 1);
  // Claimable again by anyone.
  ASSERT_OK(ClaimLeased(*admin));
}

INSTANTIATE_TEST_SUITE_P(Ends, BoundLeaseEndTest,
                         ::testing::Values(End::kHalfClose, End::kCancel, End::kDropChannel));

TEST(BoundLeaseTest, OneStreamBindsAnOwnershipAndAnUnboundStreamsEndKeepsIt) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir)));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, ConnectTo(daemon->unix_target()));
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group claimed, ClaimLeased(*client));
  Stream first(*client, claimed.id());
  ASSERT_OK(first.Send(/*bind=*/true));
  {
    Stream second(*client, claimed.id());
    EXPECT_ERROR(second.Send(/*bind=*/true), kFailedPrecondition, "LEASE_ALREADY_BOUND");
  }
  {
    Stream plain(*client, claimed.id());  // renews without binding
    ASSERT_OK(plain.Send(/*bind=*/false));
    EXPECT_OK(plain.Close());
  }
  // The first stream still binds it and renews it.
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group renewed, first.Send(/*bind=*/false));
  EXPECT_TRUE(renewed.lease_bound());
  EXPECT_EQ(GroupNow(*daemon, claimed.id()).owner, claimed.owner());
  EXPECT_OK(first.Close());
  EXPECT_TRUE(ReleasedWithinBound(*daemon, claimed.id()));
}

TEST(BoundLeaseTest, ABindWithoutALeaseIsRefused) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir)));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, ConnectTo(daemon->unix_target()));
  iommu::v1::GetDeviceRequest get;
  get.set_device(kSingle);
  ASSERT_OK_AND_ASSIGN(iommu::v1::Device device, client->GetDevice(get));
  iommu::v1::ClaimOwnershipRequest claim;
  claim.set_group_id(device.group_id());
  claim.set_owner("vm-1");
  ASSERT_OK(client->ClaimOwnership(claim));
  Stream stream(*client, device.group_id());
  EXPECT_ERROR(stream.Send(/*bind=*/true), kFailedPrecondition, "NO_LEASE");
  EXPECT_FALSE(GroupNow(*daemon, device.group_id()).lease_bound);
}

TEST(BoundLeaseTest, AMessageTheLimiterRefusesEndsTheBoundStreamAndReleases) {
  TempDir dir;
  Limits limits;
  limits.rate_per_client = 0.001;  // no refill within the test
  limits.burst_per_client = 6;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir, limits)));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, ConnectTo(daemon->unix_target()));
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group claimed, ClaimLeased(*client));  // 2 tokens
  Stream stream(*client, claimed.id());                                  // 1 token
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group bound, stream.Send(/*bind=*/true));  // 1 token
  EXPECT_TRUE(bound.lease_bound());
  absl::Status refused;
  for (int i = 0; i < 10 && refused.ok(); ++i) refused = stream.Send(false).status();
  EXPECT_ERROR(refused, kResourceExhausted, "RATE_LIMITED");
  EXPECT_TRUE(ReleasedWithinBound(*daemon, claimed.id()));
}

TEST(BoundLeaseTest, ShutdownReleasesNothingAndAfterARestartTheTtlDecides) {
  TempDir dir;
  iommu::v1::Group bound;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir)));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, ConnectTo(daemon->unix_target()));
    ASSERT_OK_AND_ASSIGN(iommu::v1::Group claimed, ClaimLeased(*client));
    Stream stream(*client, claimed.id());
    ASSERT_OK_AND_ASSIGN(bound, stream.Send(/*bind=*/true));
    ASSERT_TRUE(bound.lease_bound());
    daemon->Shutdown(absl::ZeroDuration());  // cancels the stream, still open on the client
    EXPECT_FALSE(stream.Send(false).ok());
    EXPECT_EQ(GroupNow(*daemon, claimed.id()).owner, claimed.owner());
    EXPECT_EQ(BoundReleases(*daemon, "released"), 0);
  }
  DaemonOptions options = OptionsIn(dir);
  bool hook_ran = false;
  options.while_recovering = [&] {
    hook_ran = true;
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client,
                         ConnectTo("unix:" + options.state_dir + "/iommud.sock"));
    Stream stream(*client, bound.id());
    EXPECT_ERROR(stream.Send(/*bind=*/true), kUnavailable, "RECOVERING");
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(options));
  EXPECT_TRUE(hook_ran);
  const GroupInfo group = GroupNow(*daemon, bound.id());
  EXPECT_EQ(group.owner, bound.owner());
  EXPECT_FALSE(group.lease_bound);  // no stream survives a restart: the TTL decides
  EXPECT_EQ(absl::ToUnixNanos(group.lease_expiry), bound.lease_expiry_unix_nanos());
  // The owner's new stream binds it again, and its end releases it.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, ConnectTo(daemon->unix_target()));
  Stream stream(*client, bound.id());
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group rebound, stream.Send(/*bind=*/true));
  EXPECT_TRUE(rebound.lease_bound());
  stream.Cancel();
  EXPECT_TRUE(ReleasedWithinBound(*daemon, bound.id()));
}

}  // namespace
}  // namespace iommud
