// The fd channel of an in-process Daemon: where its socket lives and when, and OpenDevice end to
// end (gRPC claim and attach, then the device fd over the channel) with and without a provider.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/cpp/fd_channel_client.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/device_fd_provider.h"
#include "gtest/gtest.h"
#include "server/daemon.h"
#include "tests/testing/status_test_macros.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace {

using ::iommud::test::TempDir;

constexpr char kDevice[] = "0000:00:02.0";  // the demo topology's, alone in its group

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

class PipeDeviceFds : public host::DeviceFdProvider {
 public:
  absl::StatusOr<host::UniqueFd> DeviceFd(absl::string_view device) override {
    asked.emplace_back(device);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return absl::InternalError("pipe");
    read_end.Reset(p[0]);
    return host::UniqueFd(p[1]);
  }
  std::vector<std::string> asked;
  host::UniqueFd read_end;
};

DaemonOptions OptionsIn(const TempDir& dir) {
  DaemonOptions options;
  options.state_dir = dir.path() + "/state";
  options.state.kind = StateKind::kMemory;
  return options;
}

// Claims kDevice's group for `owner` over gRPC and attaches it to a new domain of `owner`.
void ClaimAndAttach(Daemon& daemon, const std::string& owner) {
  ClientOptions client_options;
  client_options.target = daemon.unix_target();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, IommuClient::Connect(client_options));
  iommu::v1::GetDeviceRequest get;
  get.set_device(kDevice);
  ASSERT_OK_AND_ASSIGN(iommu::v1::Device device, client->GetDevice(get));
  iommu::v1::ClaimOwnershipRequest claim;
  claim.set_group_id(device.group_id());
  claim.set_owner(owner);
  ASSERT_TRUE(client->ClaimOwnership(claim).ok());
  iommu::v1::AllocDomainRequest alloc;
  alloc.set_unit(device.unit());
  alloc.set_owner(owner);
  ASSERT_OK_AND_ASSIGN(iommu::v1::Domain domain, client->AllocDomain(alloc));
  iommu::v1::AttachGroupRequest attach;
  attach.set_group_id(device.group_id());
  attach.set_domain_id(domain.id());
  attach.set_owner(owner);
  ASSERT_TRUE(client->AttachGroup(attach).ok());
}

double Counter(Daemon& daemon, const std::string& name, const std::string& op,
               const std::string& result) {
  for (const prometheus::MetricFamily& family : daemon.metrics()->registry()->Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      std::string seen_op, seen_result;
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        if (label.name == "op") seen_op = label.value;
        if (label.name == "result") seen_result = label.value;
      }
      if (seen_op == op && seen_result == result) return metric.counter.value;
    }
  }
  return 0;
}

TEST(FdChannelDaemonTest, TheChannelLivesNextToTheSocketForTheDaemonsLife) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir)));
  EXPECT_EQ(daemon->fd_socket_path(), daemon->socket_path() + ".fds");
  struct stat st;
  ASSERT_EQ(stat(daemon->fd_socket_path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_TRUE(FdChannelClient::Connect(daemon->fd_socket_path()).ok());
  const std::string path = daemon->fd_socket_path();
  daemon->Shutdown(absl::Seconds(5));
  daemon->Wait();
  EXPECT_FALSE(Exists(path));
}

TEST(FdChannelDaemonTest, AStaleChannelSocketIsRemovedAndALiveOneRefusesTheStart) {
  TempDir dir;
  DaemonOptions options = OptionsIn(dir);
  options.fd_socket_path = dir.File("fds");
  {  // A socket file nobody listens on, as a killed daemon leaves it.
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, options.fd_socket_path.data(), options.fd_socket_path.size());
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    close(fd);
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(options));
  EXPECT_TRUE(FdChannelClient::Connect(options.fd_socket_path).ok());
  // Another daemon (its own state directory) asked for the same channel path.
  TempDir other_dir;
  DaemonOptions other = OptionsIn(other_dir);
  other.fd_socket_path = options.fd_socket_path;
  EXPECT_ERROR(Daemon::Start(other), kFailedPrecondition, "SOCKET_IN_USE");
  EXPECT_TRUE(FdChannelClient::Connect(options.fd_socket_path).ok());
}

TEST(FdChannelDaemonTest, TheOwnerGetsTheDeviceFdOfItsAttachedGroup) {
  TempDir dir;
  PipeDeviceFds device_fds;
  DaemonOptions options = OptionsIn(dir);
  options.device_fds = &device_fds;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<FdChannelClient> channel,
                       FdChannelClient::Connect(daemon->fd_socket_path()));
  EXPECT_ERROR(channel->OpenDevice(kDevice, "vm1").status(), kFailedPrecondition,
               "GROUP_NOT_OWNED");
  // The owner as the gRPC service records it: the caller's principal and the name.
  const std::string owner = absl::StrCat("uid:", getuid(), "/vm1");
  ClaimAndAttach(*daemon, owner);
  EXPECT_ERROR(channel->OpenDevice(kDevice, "vm2").status(), kPermissionDenied, "NOT_OWNER");
  EXPECT_TRUE(device_fds.asked.empty());
  ASSERT_OK_AND_ASSIGN(host::UniqueFd fd, channel->OpenDevice(kDevice, "vm1"));
  EXPECT_EQ(device_fds.asked, std::vector<std::string>{kDevice});
  ASSERT_EQ(write(fd.get(), "x", 1), 1);
  char back = 0;
  ASSERT_EQ(read(device_fds.read_end.get(), &back, 1), 1);
  EXPECT_EQ(back, 'x');
  EXPECT_EQ(Counter(*daemon, "iommud_fd_channel_requests_total", "open_device", "OK"), 1);
  EXPECT_EQ(Counter(*daemon, "iommud_fd_channel_requests_total", "open_device", "NOT_OWNER"), 1);
}

TEST(FdChannelDaemonTest, WithoutVfioDevicesTheOwnerGetsNoDeviceFds) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir)));
  ClaimAndAttach(*daemon, absl::StrCat("uid:", getuid(), "/vm1"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<FdChannelClient> channel,
                       FdChannelClient::Connect(daemon->fd_socket_path()));
  EXPECT_ERROR(channel->OpenDevice(kDevice, "vm1").status(), kFailedPrecondition,
               "NO_DEVICE_FDS");
}

}  // namespace
}  // namespace iommud
