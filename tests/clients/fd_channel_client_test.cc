// FdChannelClient against a real FdChannel listener (server/host/fd_channel.h) with fake ops:
// regions and device fds come back, and errors carry the daemon's reason.
#include "clients/cpp/fd_channel_client.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/host/fd_channel.h"
#include "server/security/authorizer.h"
#include "server/security/policy.h"
#include "tests/testing/status_test_macros.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace {

using ::iommud::test::TempDir;
using ::testing::ElementsAre;

class FakeOps : public FdChannelOps {
 public:
  absl::StatusOr<RegisteredRegion> RegisterMemory(absl::string_view owner, uint64_t size,
                                                  std::unique_ptr<ProcessMemory> memory,
                                                  host::UniqueFd file) override {
    owners.emplace_back(owner);
    memories.push_back(std::move(memory));
    return RegisteredRegion{3, 0x200000, size};
  }
  absl::StatusOr<host::UniqueFd> OpenDevice(absl::string_view device,
                                            absl::string_view owner) override {
    owners.emplace_back(owner);
    if (device != "0000:00:02.0") {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupNotAttached,
                   "not attached", {{"device", std::string(device)}});
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return absl::InternalError("pipe");
    read_end.Reset(p[0]);
    return host::UniqueFd(p[1]);
  }
  std::vector<std::string> owners;
  std::vector<std::unique_ptr<ProcessMemory>> memories;
  host::UniqueFd read_end;
};

class FdChannelClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Authorizer::Options authz;
    authz.policy = Policy::Default(getuid());
    authz.audit_log = [](const std::string&) {};
    authorizer_ = std::make_unique<Authorizer>(std::move(authz));
    FdChannelOptions options;
    options.socket.path = dir_.File("iommud.sock.fds");
    ASSERT_OK_AND_ASSIGN(channel_, FdChannel::Create(options, authorizer_.get(), &ops_));
    channel_->Start();
  }

  std::unique_ptr<FdChannelClient> Client() {
    absl::StatusOr<std::unique_ptr<FdChannelClient>> client =
        FdChannelClient::Connect(dir_.File("iommud.sock.fds"), absl::Seconds(5));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  TempDir dir_;
  FakeOps ops_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<FdChannel> channel_;
};

TEST_F(FdChannelClientTest, RegistersAMemfdAndGetsTheRegion) {
  std::unique_ptr<FdChannelClient> client = Client();
  ASSERT_NE(client, nullptr);
  const int memfd = memfd_create("client_test", MFD_CLOEXEC);
  ASSERT_GE(memfd, 0);
  host::UniqueFd owned(memfd);
  ASSERT_EQ(ftruncate(memfd, 4096), 0);
  ASSERT_EQ(pwrite(memfd, "abc", 3, 0), 3);
  ASSERT_OK_AND_ASSIGN(iommu::v1::MemoryRegionRef region,
                       client->RegisterMemory(memfd, 4096, "vm1"));
  EXPECT_EQ(region.id(), 3u);
  EXPECT_EQ(region.base(), 0x200000u);
  EXPECT_EQ(region.size(), 4096u);
  EXPECT_THAT(ops_.owners, ElementsAre(absl::StrCat("uid:", getuid(), "/vm1")));
  ASSERT_EQ(ops_.memories.size(), 1u);
  EXPECT_EQ(std::memcmp(ops_.memories[0]->data(), "abc", 3), 0);
}

TEST_F(FdChannelClientTest, OpensADeviceAndGetsAWorkingFd) {
  std::unique_ptr<FdChannelClient> client = Client();
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(host::UniqueFd fd, client->OpenDevice("0000:00:02.0"));
  ASSERT_EQ(write(fd.get(), "hi", 2), 2);
  char back[2] = {};
  ASSERT_EQ(read(ops_.read_end.get(), back, 2), 2);
  EXPECT_EQ(std::string(back, 2), "hi");
  EXPECT_THAT(ops_.owners, ElementsAre(absl::StrCat("uid:", getuid())));
}

TEST_F(FdChannelClientTest, ErrorsCarryTheDaemonsReasonAndMetadata) {
  std::unique_ptr<FdChannelClient> client = Client();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<host::UniqueFd> fd = client->OpenDevice("0000:00:03.0");
  EXPECT_ERROR(fd.status(), kFailedPrecondition, "GROUP_NOT_ATTACHED");
  EXPECT_EQ(GetErrorMetadata(fd.status())["device"], "0000:00:03.0");
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  host::UniqueFd read_end(p[0]), write_end(p[1]);
  EXPECT_ERROR(client->RegisterMemory(read_end.get(), 4096).status(), kInvalidArgument,
               "MEMORY_FD_NOT_REGULAR");
  // The connection still serves.
  EXPECT_TRUE(client->OpenDevice("0000:00:02.0").ok());
}

TEST_F(FdChannelClientTest, ConnectRefusesBadPaths) {
  EXPECT_ERROR(FdChannelClient::Connect(dir_.File("missing")).status(), kUnavailable,
               "CONNECT_FAILED");
  EXPECT_ERROR(FdChannelClient::Connect(std::string(200, 'x')).status(), kInvalidArgument,
               "INVALID_TARGET");
}

}  // namespace
}  // namespace iommud
