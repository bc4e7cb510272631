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
#include "tests/server/api/keep_lease_stream.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::iommud::test::ClaimLeased;
using ::iommud::test::ConnectTo;
using ::iommud::test::InProcessDaemonOptions;
using ::iommud::test::TempDir;

using Stream = ::iommud::test::KeepLeaseStream;

constexpr uint64_t kLeaseMillis = 60000;

std::string Me() { return absl::StrCat("uid:", getuid()); }

int64_t LeaseExpiryNanos(const Daemon& daemon, uint64_t group) {
  absl::StatusOr<GroupInfo> info = daemon.registry()->GetGroup(group);
  EXPECT_TRUE(info.ok()) << info.status();
  return info.ok() ? absl::ToUnixNanos(info->lease_expiry) : -1;
}

TEST(KeepLeaseAdmissionTest, AStreamWhileRecoveringIsRefusedAndRenewsNothing) {
  TempDir dir;
  iommu::v1::Group claimed;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon,
                         Daemon::Start(InProcessDaemonOptions(dir)));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, ConnectTo(daemon->unix_target()));
    ASSERT_OK_AND_ASSIGN(claimed, ClaimLeased(*client, kLeaseMillis));
    daemon->Shutdown(absl::Seconds(5));
  }
  DaemonOptions options = InProcessDaemonOptions(dir);
  bool hook_ran = false;
  options.while_recovering = [&] {
    hook_ran = true;
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client,
                         ConnectTo("unix:" + options.state_dir + "/iommud.sock"));
    Stream stream(*client, claimed.id());
    EXPECT_ERROR(stream.Send(), kUnavailable, "RECOVERING");
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(options));
  EXPECT_TRUE(hook_ran);
  EXPECT_EQ(LeaseExpiryNanos(*daemon, claimed.id()), claimed.lease_expiry_unix_nanos());

  // Once serving, the same stream renews.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, ConnectTo(daemon->unix_target()));
  Stream stream(*client, claimed.id());
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group renewed, stream.Send());
  EXPECT_GT(renewed.lease_expiry_unix_nanos(), claimed.lease_expiry_unix_nanos());
  EXPECT_EQ(LeaseExpiryNanos(*daemon, claimed.id()), renewed.lease_expiry_unix_nanos());
  EXPECT_OK(stream.Close());
}

TEST(KeepLeaseAdmissionTest, AStreamHoldsACallInFlightForItsLife) {
  TempDir dir;
  Limits limits;
  limits.max_calls_per_client = 1;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon,
                       Daemon::Start(InProcessDaemonOptions(dir, limits)));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, ConnectTo(daemon->unix_target()));
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group claimed, ClaimLeased(*client, kLeaseMillis));

  auto open = std::make_unique<Stream>(*client, claimed.id());
  ASSERT_OK(open->Send());  // the stream is live and holds the principal's one call slot

  Stream second(*client, claimed.id());
  const absl::Status refused = second.Send().status();
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
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon,
                       Daemon::Start(InProcessDaemonOptions(dir, limits)));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, ConnectTo(daemon->unix_target()));
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group claimed,
                       ClaimLeased(*client, kLeaseMillis));  // 2 calls, 2 tokens

  Stream stream(*client, claimed.id());  // its start takes a token
  int renewals = 0;
  int64_t last_expiry = claimed.lease_expiry_unix_nanos();
  absl::Status refused;
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<iommu::v1::Group> renewed = stream.Send();
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
