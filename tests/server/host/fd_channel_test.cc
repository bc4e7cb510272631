// FdChannel with a real SOCK_SEQPACKET listener in a temporary directory and fake FdChannelOps:
// descriptors both ways, identity and roles as on the gRPC socket, bad input, and clients that
// must not hold up others.
#include "server/host/fd_channel.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/fd_passing.h"
#include "core/host/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "iommu/v1/fd_channel.pb.h"
#include "proto/status_codec.h"
#include "server/security/authorizer.h"
#include "server/security/policy.h"
#include "tests/testing/status_test_macros.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace {

using ::iommud::test::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

int CountOpenFds() {
  int count = 0;
  DIR* dir = opendir("/proc/self/fd");
  while (dirent* entry = readdir(dir)) count += entry->d_name[0] != '.';
  closedir(dir);
  return count;
}

host::UniqueFd Memfd(off_t size) {
  host::UniqueFd fd(memfd_create("fd_channel_test", MFD_CLOEXEC));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(ftruncate(fd.get(), size), 0);
  return fd;
}

// Records what reaches the ops; OpenDevice hands out the write end of a pipe whose read end it keeps.
class FakeOps : public FdChannelOps {
 public:
  absl::StatusOr<RegisteredRegion> RegisterMemory(absl::string_view owner, uint64_t size,
                                                  std::unique_ptr<ProcessMemory> memory,
                                                  host::UniqueFd file) override {
    files.push_back(file.valid());
    owners.emplace_back(owner);
    sizes.push_back(size);
    memories.push_back(std::move(memory));
    return RegisteredRegion{7, 0x100000, size};
  }
  std::vector<bool> files;  // whether each RegisterMemory came with the client's file
  absl::StatusOr<host::UniqueFd> OpenDevice(absl::string_view device,
                                            absl::string_view owner) override {
    owners.emplace_back(owner);
    devices.emplace_back(device);
    if (device == "0000:00:09.0") {
      return Error(absl::StatusCode::kPermissionDenied, reason::kNotOwner, "not yours");
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return absl::InternalError("pipe");
    read_ends.emplace_back(p[0]);
    return host::UniqueFd(p[1]);
  }

  std::vector<std::string> owners;
  std::vector<uint64_t> sizes;
  std::vector<std::unique_ptr<ProcessMemory>> memories;
  std::vector<std::string> devices;
  std::vector<host::UniqueFd> read_ends;
};

struct Reply {
  iommu::v1::FdResponse response;
  absl::Status status;  // FromRpcStatus(response.status())
  std::vector<host::UniqueFd> fds;
};

class FdChannelTest : public ::testing::Test {
 protected:
  void SetUp() override { StartChannel(Policy::Default(getuid())); }

  void StartChannel(Policy policy, int max_connections = 64,
                    absl::Duration idle_timeout = absl::Minutes(10)) {
    channel_.reset();
    Authorizer::Options authz;
    authz.policy = std::move(policy);
    authz.audit_log = [this](const std::string& line) { audit_.push_back(line); };
    authorizer_ = std::make_unique<Authorizer>(std::move(authz));
    FdChannelOptions options;
    options.socket.path = dir_.File("fds");
    options.max_connections = max_connections;
    options.idle_timeout = idle_timeout;
    options.max_message_bytes = 1024;
    absl::StatusOr<std::unique_ptr<FdChannel>> channel =
        FdChannel::Create(std::move(options), authorizer_.get(), &ops_);
    ASSERT_TRUE(channel.ok()) << channel.status();
    channel_ = std::move(*channel);
    channel_->Start();
  }

  host::UniqueFd Connect() {
    host::UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    const std::string path = dir_.File("fds");
    std::memcpy(address.sun_path, path.data(), path.size());
    EXPECT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0)
        << std::strerror(errno);
    timeval timeout = {5, 0};  // a test never waits forever for a reply
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    return fd;
  }

  // Connect(), and one request answered: the channel has accepted the connection (and holds its
  // socket) before the test counts descriptors.
  host::UniqueFd ConnectServed() {
    host::UniqueFd fd = Connect();
    EXPECT_ERROR(Send(fd.get(), std::string("\x18\x01", 2)).status, kInvalidArgument,
                 "MISSING_FIELD");
    return fd;
  }

  static Reply Send(int socket, absl::string_view payload, const std::vector<int>& fds = {}) {
    Reply reply;
    absl::Status sent = host::SendFds(socket, payload, fds);
    EXPECT_TRUE(sent.ok()) << sent;
    absl::StatusOr<host::ReceivedFds> received = host::ReceiveFds(socket, 64 * 1024);
    EXPECT_TRUE(received.ok()) << received.status();
    if (!received.ok()) {
      reply.status = received.status();
      return reply;
    }
    EXPECT_TRUE(reply.response.ParseFromString(received->payload));
    EXPECT_TRUE(reply.response.has_status());
    reply.status = FromRpcStatus(reply.response.status());
    reply.fds = std::move(received->fds);
    return reply;
  }

  static std::string RegisterMemory(const std::string& owner, uint64_t size) {
    iommu::v1::FdRequest request;
    request.mutable_register_memory()->set_owner(owner);
    request.mutable_register_memory()->set_size(size);
    return request.SerializeAsString();
  }

  static std::string OpenDevice(const std::string& owner, const std::string& device) {
    iommu::v1::FdRequest request;
    request.mutable_open_device()->set_owner(owner);
    request.mutable_open_device()->set_device(device);
    return request.SerializeAsString();
  }

  // True when the server closed `socket` within `timeout` (recv sees end of file).
  static bool ClosedByServer(int socket, absl::Duration timeout = absl::Seconds(5)) {
    pollfd fd = {socket, POLLIN, 0};
    if (poll(&fd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) <= 0) return false;
    char byte;
    return recv(socket, &byte, 1, MSG_DONTWAIT) == 0;
  }

  TempDir dir_;
  FakeOps ops_;
  std::vector<std::string> audit_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<FdChannel> channel_;
};

TEST_F(FdChannelTest, TheSocketIsASeqpacketSocketWithMode0660) {
  struct stat st;
  ASSERT_EQ(stat(dir_.File("fds").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  channel_->Stop();
  EXPECT_NE(stat(dir_.File("fds").c_str(), &st), 0);  // unlinked
}

TEST_F(FdChannelTest, RegisterMemoryHandsTheOpsAUsableMappingOfTheMemfd) {
  host::UniqueFd client = Connect();
  host::UniqueFd memfd = Memfd(3 * 4096);
  ASSERT_EQ(pwrite(memfd.get(), "guest", 5, 4096 + 3), 5);
  Reply reply = Send(client.get(), RegisterMemory("vm1", 2 * 4096), {memfd.get()});
  ASSERT_TRUE(reply.status.ok()) << reply.status;
  EXPECT_THAT(reply.fds, IsEmpty());
  ASSERT_TRUE(reply.response.has_region());
  EXPECT_EQ(reply.response.region().id(), 7u);
  EXPECT_EQ(reply.response.region().base(), 0x100000u);
  EXPECT_EQ(reply.response.region().size(), 2u * 4096);
  // The owner is the caller's, as gRPC's owner rewrite makes it.
  EXPECT_THAT(ops_.owners, ElementsAre(absl::StrCat("uid:", getuid(), "/vm1")));
  EXPECT_THAT(ops_.sizes, ElementsAre(2u * 4096));
  EXPECT_THAT(ops_.files, ElementsAre(true));  // the ops may keep the client's file
  ASSERT_EQ(ops_.memories.size(), 1u);
  ProcessMemory& memory = *ops_.memories[0];
  EXPECT_EQ(memory.size(), 2u * 4096);
  // Shared both ways with the client's memfd.
  EXPECT_EQ(std::memcmp(static_cast<char*>(memory.data()) + 4096 + 3, "guest", 5), 0);
  std::memcpy(memory.data(), "daemon", 6);
  char back[6] = {};
  ASSERT_EQ(pread(memfd.get(), back, 6, 0), 6);
  EXPECT_EQ(std::string(back, 6), "daemon");
}

TEST_F(FdChannelTest, AnEmptyOwnerIsTheCallersPrincipal) {
  host::UniqueFd client = Connect();
  host::UniqueFd memfd = Memfd(4096);
  ASSERT_TRUE(Send(client.get(), RegisterMemory("", 4096), {memfd.get()}).status.ok());
  EXPECT_THAT(ops_.owners, ElementsAre(absl::StrCat("uid:", getuid())));
}

TEST_F(FdChannelTest, OpenDeviceSendsTheOpsFdToTheClient) {
  host::UniqueFd client = Connect();
  Reply reply = Send(client.get(), OpenDevice("vm1", "0000:00:02.0"));
  ASSERT_TRUE(reply.status.ok()) << reply.status;
  EXPECT_EQ(reply.response.device().name(), "0000:00:02.0");
  EXPECT_THAT(ops_.devices, ElementsAre("0000:00:02.0"));
  EXPECT_THAT(ops_.owners, ElementsAre(absl::StrCat("uid:", getuid(), "/vm1")));
  ASSERT_EQ(reply.fds.size(), 1u);
  // The received fd is the write end of the fake's pipe.
  ASSERT_EQ(write(reply.fds[0].get(), "ping", 4), 4);
  char back[4] = {};
  ASSERT_EQ(read(ops_.read_ends[0].get(), back, 4), 4);
  EXPECT_EQ(std::string(back, 4), "ping");
}

TEST_F(FdChannelTest, AnOpsErrorIsTheReplyWithItsReasonAndNoFd) {
  host::UniqueFd client = Connect();
  Reply reply = Send(client.get(), OpenDevice("vm1", "0000:00:09.0"));
  EXPECT_ERROR(reply.status, kPermissionDenied, "NOT_OWNER");
  EXPECT_THAT(reply.fds, IsEmpty());
  EXPECT_FALSE(reply.response.has_device());
}

TEST_F(FdChannelTest, ARoleBelowOperatorIsDeniedAsOnGrpc) {
  ASSERT_OK_AND_ASSIGN(Policy viewer, Policy::Parse(absl::StrCat("viewer uid:", getuid()), "test"));
  StartChannel(std::move(viewer));
  host::UniqueFd client = ConnectServed();
  host::UniqueFd memfd = Memfd(4096);
  const int open_before = CountOpenFds();
  Reply reply = Send(client.get(), RegisterMemory("vm1", 4096), {memfd.get()});
  EXPECT_ERROR(reply.status, kPermissionDenied, "PERMISSION_DENIED");
  ErrorMetadata metadata = GetErrorMetadata(reply.status);
  EXPECT_EQ(metadata["principal"], absl::StrCat("uid:", getuid()));
  EXPECT_EQ(metadata["method"], "RegisterMemory");
  EXPECT_EQ(metadata["cause"], "role_too_low");
  EXPECT_EQ(CountOpenFds(), open_before);  // the daemon's copy of the memfd is closed
  EXPECT_ERROR(Send(client.get(), OpenDevice("vm1", "0000:00:02.0")).status, kPermissionDenied,
               "PERMISSION_DENIED");
  EXPECT_TRUE(ops_.owners.empty());
  ASSERT_EQ(audit_.size(), 2u);
  EXPECT_THAT(audit_[1], HasSubstr("denied OpenDevice"));
}

TEST_F(FdChannelTest, ACallerWithoutARoleIsDenied) {
  ASSERT_OK_AND_ASSIGN(Policy other, Policy::Parse("admin uid:4242", "test"));
  StartChannel(std::move(other));
  host::UniqueFd client = Connect();
  Reply reply = Send(client.get(), OpenDevice("", "0000:00:02.0"));
  EXPECT_ERROR(reply.status, kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_EQ(GetErrorMetadata(reply.status)["cause"], "no_role");
  EXPECT_TRUE(ops_.devices.empty());
}

TEST_F(FdChannelTest, AnotherPrincipalsOwnerNeedsAdmin) {
  ASSERT_OK_AND_ASSIGN(Policy op, Policy::Parse(absl::StrCat("operator uid:", getuid()), "test"));
  StartChannel(std::move(op));
  host::UniqueFd client = Connect();
  Reply reply = Send(client.get(), OpenDevice("uid:4242/vm", "0000:00:02.0"));
  EXPECT_ERROR(reply.status, kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_EQ(GetErrorMetadata(reply.status)["cause"], "foreign_owner");
  EXPECT_TRUE(ops_.devices.empty());
}

TEST_F(FdChannelTest, GarbageIsMalformedAndTheConnectionGoesOn) {
  host::UniqueFd client = ConnectServed();
  host::UniqueFd memfd = Memfd(4096);
  const int open_before = CountOpenFds();
  Reply reply = Send(client.get(), std::string("\xff\xff\xff\xff garbage", 13), {memfd.get()});
  EXPECT_ERROR(reply.status, kInvalidArgument, "MALFORMED_REQUEST");
  EXPECT_EQ(GetErrorMetadata(reply.status)["type"], "iommu.v1.FdRequest");
  EXPECT_EQ(CountOpenFds(), open_before);
  // A message without an op.
  EXPECT_ERROR(Send(client.get(), std::string("\x18\x01", 2)).status, kInvalidArgument,
               "MISSING_FIELD");
  EXPECT_TRUE(ops_.owners.empty());
  EXPECT_TRUE(Send(client.get(), OpenDevice("vm1", "0000:00:02.0")).status.ok());
}

TEST_F(FdChannelTest, WrongDescriptorCountsAreRefusedAndClosed) {
  host::UniqueFd client = ConnectServed();
  host::UniqueFd a = Memfd(4096);
  host::UniqueFd b = Memfd(4096);
  const int open_before = CountOpenFds();
  Reply none = Send(client.get(), RegisterMemory("vm1", 4096));
  EXPECT_ERROR(none.status, kInvalidArgument, "WRONG_FD_COUNT");
  EXPECT_EQ(GetErrorMetadata(none.status)["received"], "0");
  Reply two = Send(client.get(), RegisterMemory("vm1", 4096), {a.get(), b.get()});
  EXPECT_ERROR(two.status, kInvalidArgument, "WRONG_FD_COUNT");
  EXPECT_EQ(GetErrorMetadata(two.status)["received"], "2");
  Reply extra = Send(client.get(), OpenDevice("vm1", "0000:00:02.0"), {a.get()});
  EXPECT_ERROR(extra.status, kInvalidArgument, "WRONG_FD_COUNT");
  EXPECT_THAT(extra.fds, IsEmpty());
  EXPECT_EQ(CountOpenFds(), open_before);
  EXPECT_TRUE(ops_.owners.empty());
}

TEST_F(FdChannelTest, MemoryThatCannotBeMappedIsRefusedBeforeTheOps) {
  host::UniqueFd client = Connect();
  host::UniqueFd memfd = Memfd(4096);
  EXPECT_ERROR(Send(client.get(), RegisterMemory("vm1", 100), {memfd.get()}).status,
               kInvalidArgument, "INVALID_SIZE");
  EXPECT_ERROR(Send(client.get(), RegisterMemory("vm1", 2 * 4096), {memfd.get()}).status,
               kInvalidArgument, "MEMORY_FD_TOO_SMALL");
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  host::UniqueFd read_end(p[0]), write_end(p[1]);
  EXPECT_ERROR(Send(client.get(), RegisterMemory("vm1", 4096), {read_end.get()}).status,
               kInvalidArgument, "MEMORY_FD_NOT_REGULAR");
  EXPECT_TRUE(ops_.owners.empty());
}

TEST_F(FdChannelTest, AnOversizedMessageIsRefusedAndTheConnectionGoesOn) {
  host::UniqueFd client = Connect();
  Reply reply = Send(client.get(), OpenDevice(std::string(4000, 'x'), "0000:00:02.0"));
  EXPECT_ERROR(reply.status, kResourceExhausted, "FD_RECEIVE_FAILED");
  EXPECT_TRUE(ops_.owners.empty());
  EXPECT_TRUE(Send(client.get(), OpenDevice("vm1", "0000:00:02.0")).status.ok());
}

TEST_F(FdChannelTest, AnIdleClientDoesNotHoldUpAnother) {
  host::UniqueFd idle = Connect();
  host::UniqueFd silent = Connect();
  // `silent` sends a request and never reads the reply; `idle` sends nothing at all.
  ASSERT_TRUE(host::SendFds(silent.get(), OpenDevice("vm1", "0000:00:03.0"), {}).ok());
  host::UniqueFd busy = Connect();
  const absl::Time start = absl::Now();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(Send(busy.get(), OpenDevice("vm1", "0000:00:02.0")).status.ok());
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
  EXPECT_TRUE(Send(idle.get(), OpenDevice("vm1", "0000:00:04.0")).status.ok());
}

TEST_F(FdChannelTest, ConnectionsAreBounded) {
  StartChannel(Policy::Default(getuid()), /*max_connections=*/2);
  host::UniqueFd a = Connect();
  host::UniqueFd b = Connect();
  ASSERT_TRUE(Send(a.get(), OpenDevice("vm1", "0000:00:02.0")).status.ok());
  ASSERT_TRUE(Send(b.get(), OpenDevice("vm1", "0000:00:02.0")).status.ok());
  host::UniqueFd c = Connect();  // accepted by the kernel, closed by the channel
  EXPECT_TRUE(ClosedByServer(c.get()));
  a.Reset();
  // Once the channel saw `a` go, a new client gets its slot.
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    host::UniqueFd d = Connect();
    if (host::SendFds(d.get(), OpenDevice("vm1", "0000:00:02.0"), {}).ok()) {
      absl::StatusOr<host::ReceivedFds> received = host::ReceiveFds(d.get());
      served = received.ok();
    }
    if (!served) absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(served);
  EXPECT_TRUE(Send(b.get(), OpenDevice("vm1", "0000:00:02.0")).status.ok());
}

TEST_F(FdChannelTest, IdleConnectionsAreClosed) {
  StartChannel(Policy::Default(getuid()), 64, /*idle_timeout=*/absl::Milliseconds(200));
  host::UniqueFd client = Connect();
  ASSERT_TRUE(Send(client.get(), OpenDevice("vm1", "0000:00:02.0")).status.ok());
  const absl::Time start = absl::Now();
  EXPECT_TRUE(ClosedByServer(client.get()));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(150));
}

TEST_F(FdChannelTest, CreateRefusesBadLimitsAndTakenPaths) {
  FdChannelOptions options;
  options.socket.path = dir_.File("other");
  options.max_connections = 0;
  EXPECT_ERROR(FdChannel::Create(options, authorizer_.get(), &ops_).status(), kInvalidArgument,
               "INVALID_FLAG");
  options.max_connections = 1;
  options.socket.path = dir_.File("fds");  // the running channel's
  EXPECT_ERROR(FdChannel::Create(options, authorizer_.get(), &ops_).status(), kUnavailable,
               "LISTEN_FAILED");
  // The running channel's socket was not touched.
  host::UniqueFd client = Connect();
  EXPECT_TRUE(Send(client.get(), OpenDevice("vm1", "0000:00:02.0")).status.ok());
}

TEST_F(FdChannelTest, PeersOutsideTheAllowListAreClosedAtAccept) {
  channel_.reset();
  FdChannelOptions options;
  options.socket.path = dir_.File("fds");
  options.allow_uids = {getuid() + 4242};
  ASSERT_OK_AND_ASSIGN(channel_, FdChannel::Create(options, authorizer_.get(), &ops_));
  channel_->Start();
  host::UniqueFd refused = Connect();
  EXPECT_TRUE(ClosedByServer(refused.get()));
  // Listing the caller's primary group admits it.
  channel_.reset();
  options.allow_gids = {getgid()};
  ASSERT_OK_AND_ASSIGN(channel_, FdChannel::Create(options, authorizer_.get(), &ops_));
  channel_->Start();
  host::UniqueFd admitted = Connect();
  EXPECT_TRUE(Send(admitted.get(), OpenDevice("vm1", "0000:00:02.0")).status.ok());
  EXPECT_THAT(ops_.devices, ElementsAre("0000:00:02.0"));
}

TEST_F(FdChannelTest, StopClosesConnections) {
  host::UniqueFd client = Connect();
  ASSERT_TRUE(Send(client.get(), OpenDevice("vm1", "0000:00:02.0")).status.ok());
  channel_->Stop();
  EXPECT_TRUE(ClosedByServer(client.get(), absl::Seconds(1)));
}

}  // namespace
}  // namespace iommud
