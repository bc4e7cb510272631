// iommud --channelz: grpc.channelz.v1.Channelz is served only when asked for. The two cases run in
// this order in one process on purpose: gRPC registers channelz process-wide (daemon.h).
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "server/daemon.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace {

// The status of /grpc.channelz.v1.Channelz/GetServers (an empty GetServersRequest) on `target`.
grpc::Status GetServers(const std::string& target) {
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::ByteBuffer request;  // an empty message
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  grpc::ByteBuffer response;
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&context, "/grpc.channelz.v1.Channelz/GetServers", grpc::StubOptions(), &request,
                 &response, [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  return status;
}

std::unique_ptr<Daemon> StartDaemon(const test::TempDir& temp, bool channelz) {
  DaemonOptions options;
  options.state_dir = temp.path();
  options.audit_interval = absl::ZeroDuration();
  options.channelz = channelz;
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(options);
  EXPECT_TRUE(daemon.ok()) << daemon.status();
  return daemon.ok() ? std::move(*daemon) : nullptr;
}

TEST(ChannelzTest, ServedOnlyWithTheFlag) {
  {
    test::TempDir temp;
    std::unique_ptr<Daemon> daemon = StartDaemon(temp, /*channelz=*/false);
    ASSERT_NE(daemon, nullptr);
    EXPECT_EQ(GetServers(daemon->unix_target()).error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  test::TempDir temp;
  std::unique_ptr<Daemon> daemon = StartDaemon(temp, /*channelz=*/true);
  ASSERT_NE(daemon, nullptr);
  const grpc::Status status = GetServers(daemon->unix_target());
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
}

}  // namespace
}  // namespace iommud
