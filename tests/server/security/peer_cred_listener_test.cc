// The daemon's own unix listener (server/security/peer_cred_listener.h) on an in-process Daemon:
// file modes, callers identified by SO_PEERCRED (this process, and forked children that switched to
// other uids), the uid/gid allow-list, identity slots, stale and leftover sockets, many
// connections, and shutdown with connections open.
//
// Children of other uids need root (CI runs the tests as root); those tests skip otherwise. A
// child only connects and passes the connected socket back (SCM_RIGHTS): the kernel recorded its
// credentials at connect(), and no gRPC runs in a forked process.
#include "server/security/peer_cred_listener.h"

#include <grp.h>
#include <grpcpp/create_channel_posix.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/cpp/iommud_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/daemon.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::iommud::test::TempDir;
using ::testing::HasSubstr;

constexpr uint32_t kNobody = 65534;   // the child's uid (viewer in the policies below)
constexpr uint32_t kOther = 65533;    // a second child uid (operator)
constexpr uint32_t kNogroup = 65534;  // the children's gid, given the socket's group

constexpr char kDevice[] = "0000:01:00.0";

// Total of counter `name` over the series whose labels include `labels`.
double CounterValue(Daemon& daemon, const std::string& name,
                    const std::map<std::string, std::string>& labels = {}) {
  double total = 0;
  for (const prometheus::MetricFamily& family : daemon.metrics()->registry()->Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      size_t matched = 0;
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        auto it = labels.find(label.name);
        if (it != labels.end() && it->second == label.value) ++matched;
      }
      if (matched == labels.size()) total += metric.counter.value;
    }
  }
  return total;
}

mode_t Mode(const std::string& path) {
  struct stat st = {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st.st_mode & 07777;
}

gid_t Group(const std::string& path) {
  struct stat st = {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return st.st_gid;
}

bool Exists(const std::string& path) {
  struct stat st = {};
  return lstat(path.c_str(), &st) == 0;
}

// A socket connected to `path` by a forked child running as uid/gid (primary group only), or the
// child's failure. The caller owns the fd.
absl::StatusOr<int> ConnectAs(const std::string& path, uint32_t uid, uint32_t gid) {
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return absl::InternalError(absl::StrCat("socketpair: ", std::strerror(errno)));
  }
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {  // only async-signal-safe calls from here
    if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(10);
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) _exit(11);
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) _exit(12);
    char byte = 0;
    iovec iov = {&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr message = {};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &fd, sizeof(int));
    _exit(sendmsg(pair[1], &message, 0) == 1 ? 0 : 13);
  }
  close(pair[1]);
  char byte = 0;
  iovec iov = {&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message = {};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof(control);
  const ssize_t received = recvmsg(pair[0], &message, MSG_CMSG_CLOEXEC);
  close(pair[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("the child (uid ", uid, ") failed with status ",
                                            WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                                            " (10 setuid, 11 socket, 12 connect, 13 sendmsg)"));
  }
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  if (received != 1 || header == nullptr || header->cmsg_type != SCM_RIGHTS) {
    return absl::InternalError("no descriptor from the child");
  }
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(header), sizeof(int));
  return fd;
}

// A client on an already connected socket (gRPC owns `fd`).
std::unique_ptr<IommuClient> ClientOnFd(int fd) {
  return std::make_unique<IommuClient>(grpc::CreateInsecureChannelFromFd("iommud-test", fd),
                                       absl::Seconds(30));
}

// A client with its own connection (no subchannel shared with other channels).
std::unique_ptr<IommuClient> ClientOnOwnConnection(const std::string& target) {
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return std::make_unique<IommuClient>(
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments),
      absl::Seconds(30));
}

absl::StatusOr<iommu::v1::Group> Claim(IommuClient& client, uint64_t group,
                                       const std::string& owner) {
  iommu::v1::ClaimOwnershipRequest request;
  request.set_group_id(group);
  request.set_owner(owner);
  return client.ClaimOwnership(request);
}

class PeerCredListenerTest : public ::testing::Test {
 protected:
  DaemonOptions Options() {
    DaemonOptions options;
    options.state_dir = dir_.path() + "/state";
    options.topology = dir_.WriteFile("topology.textpb", test::kTestTopology);
    options.audit_interval = absl::ZeroDuration();
    return options;
  }
  void Start(const DaemonOptions& options) { ASSERT_OK_AND_ASSIGN(daemon_, Daemon::Start(options)); }
  uint64_t GroupOf(const std::string& device) {
    return daemon_->registry()->GetDevice(device)->group;
  }
  // Skips the test unless running as root; lets other uids through the temporary directory (0700
  // from mkdtemp) to the state dir, whose own mode (0750, group = the socket's) is what is tested.
  void RequireRoot() {
    if (getuid() != 0) GTEST_SKIP() << "needs root to run children as other uids";
    ASSERT_EQ(chmod(dir_.path().c_str(), 0711), 0);
  }

  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(PeerCredListenerTest, StateDirIs0750AndSocketIs0660) {
  Start(Options());
  EXPECT_EQ(Mode(dir_.path() + "/state"), 0750u);
  EXPECT_EQ(Mode(daemon_->socket_path()), 0660u);
  struct stat st = {};
  ASSERT_EQ(lstat(daemon_->socket_path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_uid, getuid());
}

TEST_F(PeerCredListenerTest, CallerIsIdentifiedByItsUid) {
  Start(Options());  // the default policy: this process's uid is admin
  ClientOptions client_options;
  client_options.target = daemon_->unix_target();
  ASSERT_OK_AND_ASSIGN(auto client, IommuClient::Connect(client_options));
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group group, Claim(*client, GroupOf(kDevice), "vm"));
  EXPECT_EQ(group.owner(), absl::StrCat("uid:", getuid(), "/vm"));
  EXPECT_EQ(CounterValue(*daemon_, "iommud_unix_peers_accepted_total"), 1);
}

TEST_F(PeerCredListenerTest, UidNotInAllowListIsRefused) {
  DaemonOptions options = Options();
  options.unix_listener.allow_uids = {getuid() + 4242};
  Start(options);
  std::unique_ptr<IommuClient> client = ClientOnOwnConnection(daemon_->unix_target());
  absl::StatusOr<std::vector<iommu::v1::Group>> groups = client->ListAllGroups();
  EXPECT_EQ(groups.status().code(), absl::StatusCode::kUnavailable) << groups.status();
  EXPECT_GE(CounterValue(*daemon_, "iommud_unix_peers_refused_total", {{"reason", "not_allowed"}}),
            1);
  EXPECT_EQ(CounterValue(*daemon_, "iommud_unix_peers_accepted_total"), 0);
  // The daemon itself is fine: the registry is untouched and it still shuts down cleanly.
  EXPECT_EQ(daemon_->registry()->GetDevice(kDevice)->group, GroupOf(kDevice));
}

TEST_F(PeerCredListenerTest, AllowListedUidIsAdmitted) {
  DaemonOptions options = Options();
  options.unix_listener.allow_uids = {getuid() + 4242, getuid()};
  Start(options);
  std::unique_ptr<IommuClient> client = ClientOnOwnConnection(daemon_->unix_target());
  EXPECT_OK(client->ListAllGroups().status());
}

TEST_F(PeerCredListenerTest, ChildrenOfOtherUidsAreIdentifiedAndAuthorizedByPolicy) {
  RequireRoot();
  if (IsSkipped()) return;
  DaemonOptions options = Options();
  options.policy_file = dir_.WriteFile(
      "policy.txt", absl::StrCat("admin uid:0\nviewer uid:", kNobody, "\noperator uid:", kOther,
                                 "\n"));
  options.unix_listener.socket_group = absl::StrCat(kNogroup);  // lets the children connect
  Start(options);
  EXPECT_EQ(Group(daemon_->socket_path()), kNogroup);
  EXPECT_EQ(Group(dir_.path() + "/state"), kNogroup);  // so that the group can reach the socket

  ASSERT_OK_AND_ASSIGN(int viewer_fd, ConnectAs(daemon_->socket_path(), kNobody, kNogroup));
  std::unique_ptr<IommuClient> viewer = ClientOnFd(viewer_fd);
  EXPECT_OK(viewer->ListAllGroups().status());  // viewers may read
  absl::StatusOr<iommu::v1::Group> denied = Claim(*viewer, GroupOf(kDevice), "vm");
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.status().message(), HasSubstr(absl::StrCat("uid:", kNobody)));
  EXPECT_EQ(daemon_->registry()->GetGroup(GroupOf(kDevice))->owner, "");

  ASSERT_OK_AND_ASSIGN(int operator_fd, ConnectAs(daemon_->socket_path(), kOther, kNogroup));
  std::unique_ptr<IommuClient> op = ClientOnFd(operator_fd);
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group claimed, Claim(*op, GroupOf(kDevice), "vm"));
  EXPECT_EQ(claimed.owner(), absl::StrCat("uid:", kOther, "/vm"));

  // The viewer's connection still says who it is after the operator's was stamped.
  EXPECT_EQ(Claim(*viewer, GroupOf(kDevice), "vm").status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(PeerCredListenerTest, ChildOutsideTheAllowListIsRefusedAndAGroupAdmits) {
  RequireRoot();
  if (IsSkipped()) return;
  DaemonOptions options = Options();
  options.unix_listener.socket_group = absl::StrCat(kNogroup);
  options.unix_listener.allow_uids = {0};
  Start(options);
  ASSERT_OK_AND_ASSIGN(int fd, ConnectAs(daemon_->socket_path(), kNobody, kNogroup));
  std::unique_ptr<IommuClient> refused = ClientOnFd(fd);
  EXPECT_EQ(refused->ListAllGroups().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(CounterValue(*daemon_, "iommud_unix_peers_refused_total", {{"reason", "not_allowed"}}),
            1);
  daemon_.reset();

  options.unix_listener.allow_uids = {0};
  options.unix_listener.allow_gids = {kNogroup};
  options.policy_file = dir_.WriteFile("policy.txt", absl::StrCat("viewer uid:", kNobody, "\n"));
  Start(options);
  ASSERT_OK_AND_ASSIGN(fd, ConnectAs(daemon_->socket_path(), kNobody, kNogroup));
  std::unique_ptr<IommuClient> admitted = ClientOnFd(fd);
  EXPECT_OK(admitted->ListAllGroups().status());
}

TEST_F(PeerCredListenerTest, NewIdentityBeyondTheSlotsIsRefused) {
  RequireRoot();
  if (IsSkipped()) return;
  DaemonOptions options = Options();
  options.unix_listener.socket_group = absl::StrCat(kNogroup);
  options.unix_listener.max_identities = 1;
  Start(options);
  std::unique_ptr<IommuClient> first = ClientOnOwnConnection(daemon_->unix_target());
  EXPECT_OK(first->ListAllGroups().status());  // binds the only slot to this process's uid/gid
  ASSERT_OK_AND_ASSIGN(int fd, ConnectAs(daemon_->socket_path(), kNobody, kNogroup));
  std::unique_ptr<IommuClient> second = ClientOnFd(fd);
  EXPECT_EQ(second->ListAllGroups().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(CounterValue(*daemon_, "iommud_unix_peers_refused_total",
                         {{"reason", "identity_slots_exhausted"}}),
            1);
  // The same pair again reuses its slot.
  std::unique_ptr<IommuClient> third = ClientOnOwnConnection(daemon_->unix_target());
  EXPECT_OK(third->ListAllGroups().status());
}

TEST_F(PeerCredListenerTest, StaleSocketIsRemovedAtStartAndSocketUnlinkedAtExit) {
  const std::string state = dir_.path() + "/state";
  ASSERT_EQ(mkdir(state.c_str(), 0750), 0);
  const std::string path = state + "/iommud.sock";
  {  // a socket nobody listens on, as a killed daemon leaves it
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.data(), path.size());
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    close(fd);
  }
  ASSERT_TRUE(Exists(path));
  Start(Options());
  std::unique_ptr<IommuClient> client = ClientOnOwnConnection(daemon_->unix_target());
  EXPECT_OK(client->ListAllGroups().status());
  EXPECT_EQ(Mode(path), 0660u);
  daemon_->Shutdown(absl::ZeroDuration());
  EXPECT_FALSE(Exists(path));
  daemon_.reset();
  EXPECT_FALSE(Exists(path));
}

TEST_F(PeerCredListenerTest, LiveSocketRefusesStartUp) {
  Start(Options());
  EXPECT_ERROR(Daemon::Start(Options()).status(), kFailedPrecondition,
               "STATE_DIR_LOCKED");
  DaemonOptions other = Options();
  other.state_dir = dir_.path() + "/other";
  other.socket_path = daemon_->socket_path();  // another state dir, the same live socket
  EXPECT_ERROR(Daemon::Start(other).status(), kFailedPrecondition,
               "SOCKET_IN_USE");
  EXPECT_TRUE(Exists(daemon_->socket_path()));  // the failed start removed nothing of ours
  std::unique_ptr<IommuClient> client = ClientOnOwnConnection(daemon_->unix_target());
  EXPECT_OK(client->ListAllGroups().status());
}

TEST_F(PeerCredListenerTest, BadOwnerOrGroupIsAStartUpError) {
  DaemonOptions options = Options();
  options.unix_listener.socket_owner = "no-such-user-iommud";
  EXPECT_ERROR(Daemon::Start(options).status(), kInvalidArgument,
               "UNKNOWN_USER");
  options.unix_listener.socket_owner = "";
  options.unix_listener.socket_group = "no-such-group-iommud";
  EXPECT_ERROR(Daemon::Start(options).status(), kInvalidArgument,
               "UNKNOWN_GROUP");
  options.unix_listener.socket_group = "";
  options.unix_listener.max_identities = 0;
  EXPECT_ERROR(Daemon::Start(options).status(), kInvalidArgument,
               "INVALID_FLAG");
  EXPECT_FALSE(Exists(dir_.path() + "/state/iommud.sock"));  // nothing left behind
  options.unix_listener.max_identities = 64;
  Start(options);  // and the directory is usable afterwards
}

TEST_F(PeerCredListenerTest, ManyConcurrentConnectionsAndCalls) {
  Start(Options());
  constexpr int kConnections = 32;
  constexpr int kCallsPerConnection = 8;
  std::vector<std::unique_ptr<IommuClient>> clients;
  for (int i = 0; i < kConnections; ++i) {
    clients.push_back(ClientOnOwnConnection(daemon_->unix_target()));
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kConnections; ++i) {
    for (int j = 0; j < 2; ++j) {  // two threads per connection: concurrent calls on one
      threads.emplace_back([&, i] {
        for (int k = 0; k < kCallsPerConnection; ++k) {
          iommu::v1::GetDeviceRequest request;
          request.set_device(kDevice);
          if (!clients[i]->GetDevice(request).ok()) failures.fetch_add(1);
        }
      });
    }
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(CounterValue(*daemon_, "iommud_unix_peers_accepted_total"), kConnections);
  // Every call was identified: none was denied.
  EXPECT_EQ(CounterValue(*daemon_, "iommud_authz_denied_total"), 0);
}

TEST_F(PeerCredListenerTest, ShutdownWithOpenConnectionsReturns) {
  Start(Options());
  std::vector<std::unique_ptr<IommuClient>> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(ClientOnOwnConnection(daemon_->unix_target()));
    ASSERT_OK(clients.back()->ListAllGroups().status());
  }
  // A stream the server has to end itself (its snapshot events show it is open).
  std::atomic<bool> watching{false};
  std::thread watcher([&] {
    iommu::v1::WatchEventsRequest request;
    (void)clients[0]->WatchEvents(request, [&](const iommu::v1::Event&) {
      watching = true;
      return true;
    });
  });
  while (!watching) std::this_thread::yield();
  // An idle connection the server accepted but that never sent a byte.
  const int raw = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, daemon_->socket_path().data(), daemon_->socket_path().size());
  ASSERT_EQ(connect(raw, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  daemon_->Shutdown(absl::ZeroDuration());
  watcher.join();
  close(raw);
  EXPECT_FALSE(Exists(dir_.path() + "/state/iommud.sock"));
}

}  // namespace
}  // namespace iommud
