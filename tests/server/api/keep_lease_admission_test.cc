// KeepLease streams go through the unary calls' admission (server/api/iommu_service.h,
// keep_lease_reactor.h), on an in-process daemon: a stream opened while the daemon recovers is
// refused UNAVAILABLE RECOVERING and renews nothing; a stream holds one of the principal's calls in
// flight for its life (TOO_MANY_CALLS for the next stream or call, until it ends); each message
// takes a rate token, and the message that finds none ends the stream with RATE_LIMITED without
// renewing.
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
constexpr uint64_t kLeaseMillis = 60000;

std::string Me() { return absl::StrCat("uid:", getuid()); }

DaemonOptions OptionsIn(const TempDir& dir, const Limits& limits = Limits()) {
  DaemonOptions options;
  options.state_dir = dir.path() + "/state";
  options.topology = dir.WriteFile("topology.textpb", test::kTestTopology);
  options.metrics_listen = "";
  options.audit_interval = absl::ZeroDuration();
  options.limits = limits;  // callers are this test's uid: admin under the default policy
  return options;
}

absl::StatusOr<std::unique_ptr<IommuClient>> ConnectTo(const std::string& target) {
  ClientOptions options;
  options.target = target;
  return IommuClient::Connect(options);
}

// Claims the group of kSingle for "vm-1" with a lease; returns the claimed group.
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
    context_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    stream_ = client.stub()->KeepLease(&context_);
  }
  // Sends one renewal and reads its answer: the group, or (the stream ended) its final status.
  absl::StatusOr<iommu::v1::Group> Renew() {
    iommu::v1::KeepLeaseRequest keep;
    keep.set_group_id(group_);
    keep.set_owner("vm-1");
    stream_->Write(keep);  // fails when the daemon already ended the stream: Read says so
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

 private:
  const uint64_t group_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<iommu::v1::KeepLeaseRequest, iommu::v1::Group>> stream_;
};

int64_t LeaseExpiryNanos(const Daemon& daemon, uint64_t group) {
  absl::StatusOr<GroupInfo> info = daemon.registry()->GetGroup(group);
  EXPECT_TRUE(info.ok()) << info.status();
  return info.ok() ? absl::ToUnixNanos(info->lease_expiry) : -1;
}

TEST(KeepLeaseAdmissionTest, AStreamWhileRecoveringIsRefusedAndRenewsNothing) {
  TempDir dir;
  iommu::v1::Group claimed;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir)));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, ConnectTo(daemon->unix_target()));
    ASSERT_OK_AND_ASSIGN(claimed, ClaimLeased(*client));
    daemon->Shutdown(absl::Seconds(5));
  }
  DaemonOptions options = OptionsIn(dir);
  bool hook_ran = false;
  options.while_recovering = [&] {
    hook_ran = true;
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client,
                         ConnectTo("unix:" + options.state_dir + "/iommud.sock"));
    Stream stream(*client, claimed.id());
    EXPECT_ERROR(stream.Renew(), kUnavailable, "RECOVERING");
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(options));
  EXPECT_TRUE(hook_ran);
  EXPECT_EQ(LeaseExpiryNanos(*daemon, claimed.id()), claimed.lease_expiry_unix_nanos());

  // Once serving, the same stream renews.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, ConnectTo(daemon->unix_target()));
  Stream stream(*client, claimed.id());
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group renewed, stream.Renew());
  EXPECT_GT(renewed.lease_expiry_unix_nanos(), claimed.lease_expiry_unix_nanos());
  EXPECT_EQ(LeaseExpiryNanos(*daemon, claimed.id()), renewed.lease_expiry_unix_nanos());
  EXPECT_OK(stream.Close());
}

TEST(KeepLeaseAdmissionTest, AStreamHoldsACallInFlightForItsLife) {
  TempDir dir;
  Limits limits;
  limits.max_calls_per_client = 1;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir, limits)));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, ConnectTo(daemon->unix_target()));
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group claimed, ClaimLeased(*client));

  auto open = std::make_unique<Stream>(*client, claimed.id());
  ASSERT_OK(open->Renew());  // the stream is live and holds the principal's one call slot

  Stream second(*client, claimed.id());
  const absl::Status refused = second.Renew().status();
  EXPECT_ERROR(refused, kResourceExhausted, "TOO_MANY_CALLS");
  EXPECT_EQ(GetErrorMetadata(refused)["principal"], Me());
  iommu::v1::GetGroupRequest get;
  get.set_group_id(claimed.id());
  EXPECT_ERROR(client->GetGroup(get), kResourceExhausted, "TOO_MANY_CALLS");

  EXPECT_OK(open->Close());
  open.reset();
  // The slot is given back when the daemon is done with the stream (just after the client saw it
  // end).
  absl::Status status;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10); absl::Now() < deadline;) {
    status = client->GetGroup(get).status();
    if (status.ok()) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_OK(status);
}

TEST(KeepLeaseAdmissionTest, EachMessageTakesARateTokenAndARefusedOneRenewsNothing) {
  TempDir dir;
  Limits limits;
  limits.rate_per_client = 0.001;  // no refill within the test
  limits.burst_per_client = 8;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir, limits)));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, ConnectTo(daemon->unix_target()));
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group claimed, ClaimLeased(*client));  // 2 calls, 2 tokens

  Stream stream(*client, claimed.id());  // its start takes a token
  int renewals = 0;
  int64_t last_expiry = claimed.lease_expiry_unix_nanos();
  absl::Status refused;
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<iommu::v1::Group> renewed = stream.Renew();
    if (!renewed.ok()) {
      refused = renewed.status();
      break;
    }
    ++renewals;
    last_expiry = renewed->lease_expiry_unix_nanos();
  }
  EXPECT_EQ(renewals, 8 - 2 - 1);  // the rest of the burst, one token per message
  EXPECT_ERROR(refused, kResourceExhausted, "RATE_LIMITED");
  EXPECT_EQ(GetErrorMetadata(refused)["principal"], Me());
  EXPECT_EQ(LeaseExpiryNanos(*daemon, claimed.id()), last_expiry);
}

}  // namespace
}  // namespace iommud
