// iommud --channelz: grpc.channelz.v1.Channelz is served only when asked for, and only to admins
// (server/observability/channelz_service.h): a viewer is refused like for any admin RPC, an admin
// gets the servers and channels of the process.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "core/error.h"
#include "gtest/gtest.h"
#include "proto/status_codec.h"
#include "server/daemon.h"
#include "server/observability/channelz_service.h"
#include "tests/testing/status_test_macros.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace {

struct Reply {
  absl::Status status;  // FromGrpcStatus: with the ErrorInfo reason
  std::string bytes;
};

// A unary call of `method` with the serialized request `request` on `target`.
Reply Call(const std::string& target, const std::string& method, const std::string& request) {
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response;
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request_buffer, &response,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  Reply reply{FromGrpcStatus(status), ""};
  std::vector<grpc::Slice> slices;
  if (status.ok() && response.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      reply.bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return reply;
}

// The response bytes of a channelz method as its message (from protobuf's generated pool).
std::unique_ptr<google::protobuf::Message> Parse(const std::string& type, const std::string& bytes) {
  const google::protobuf::Descriptor* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(type);
  if (descriptor == nullptr) return nullptr;
  std::unique_ptr<google::protobuf::Message> message(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(descriptor)->New());
  if (!message->ParseFromString(bytes)) return nullptr;
  return message;
}

int RepeatedSize(const google::protobuf::Message& message, const std::string& field) {
  const google::protobuf::FieldDescriptor* descriptor =
      message.GetDescriptor()->FindFieldByName(field);
  return descriptor == nullptr ? -1 : message.GetReflection()->FieldSize(message, descriptor);
}

std::unique_ptr<Daemon> StartDaemon(const test::TempDir& temp, bool channelz,
                                    const std::string& policy_file = "") {
  DaemonOptions options;
  options.state_dir = temp.path();
  options.audit_interval = absl::ZeroDuration();
  options.channelz = channelz;
  options.policy_file = policy_file;
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(options);
  EXPECT_TRUE(daemon.ok()) << daemon.status();
  return daemon.ok() ? std::move(*daemon) : nullptr;
}

constexpr char kGetServers[] = "/grpc.channelz.v1.Channelz/GetServers";
constexpr char kGetTopChannels[] = "/grpc.channelz.v1.Channelz/GetTopChannels";

TEST(ChannelzTest, NotServedWithoutTheFlag) {
  test::TempDir temp;
  std::unique_ptr<Daemon> daemon = StartDaemon(temp, /*channelz=*/false);
  ASSERT_NE(daemon, nullptr);
  EXPECT_EQ(Call(daemon->unix_target(), kGetServers, "").status.code(),
            absl::StatusCode::kUnimplemented);
}

TEST(ChannelzTest, AnAdminGetsServersAndChannels) {
  test::TempDir temp;
  // The default policy: this process's uid is the daemon's, admin.
  std::unique_ptr<Daemon> daemon = StartDaemon(temp, /*channelz=*/true);
  ASSERT_NE(daemon, nullptr);
  Reply servers = Call(daemon->unix_target(), kGetServers, "");
  ASSERT_OK(servers.status);
  std::unique_ptr<google::protobuf::Message> parsed =
      Parse("grpc.channelz.v1.GetServersResponse", servers.bytes);
  ASSERT_NE(parsed, nullptr);
  EXPECT_GE(RepeatedSize(*parsed, "server"), 1) << parsed->DebugString();
  // The channels of this process: at least the one the call above (and this one) made.
  Reply channels = Call(daemon->unix_target(), kGetTopChannels, "");
  ASSERT_OK(channels.status);
  parsed = Parse("grpc.channelz.v1.GetTopChannelsResponse", channels.bytes);
  ASSERT_NE(parsed, nullptr);
  EXPECT_GE(RepeatedSize(*parsed, "channel"), 1) << parsed->DebugString();
  EXPECT_NE(parsed->DebugString().find(daemon->socket_path()), std::string::npos)
      << parsed->DebugString();

  // A channel id that names nothing; bytes that are no request; a method of no service.
  // GetChannelRequest{channel_id = 1 << 40}: field 1, varint.
  const std::string no_such_channel("\x08\x80\x80\x80\x80\x80\x20", 7);
  EXPECT_EQ(Call(daemon->unix_target(), "/grpc.channelz.v1.Channelz/GetChannel", no_such_channel)
                .status.code(),
            absl::StatusCode::kNotFound);
  EXPECT_ERROR(Call(daemon->unix_target(), kGetServers, "\xff").status, kInvalidArgument,
               "MALFORMED_REQUEST");
  EXPECT_EQ(Call(daemon->unix_target(), "/grpc.channelz.v1.Channelz/GetNothing", "").status.code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(Call(daemon->unix_target(), "/no.Such/Method", "").status.code(),
            absl::StatusCode::kUnimplemented);
}

TEST(ChannelzTest, ANonAdminIsRefused) {
  test::TempDir temp;
  const std::string policy =
      temp.WriteFile("policy.txt", absl::StrCat("operator uid:", getuid(), "\n"));
  std::unique_ptr<Daemon> daemon = StartDaemon(temp, /*channelz=*/true, policy);
  ASSERT_NE(daemon, nullptr);
  for (const char* method : {kGetServers, kGetTopChannels}) {
    Reply reply = Call(daemon->unix_target(), method, "");
    EXPECT_ERROR(reply.status, kPermissionDenied, "PERMISSION_DENIED");
    EXPECT_EQ(GetErrorMetadata(reply.status)["required_role"], "admin") << reply.status;
    EXPECT_TRUE(reply.bytes.empty());
  }
}

}  // namespace
}  // namespace iommud
