// The iommud binary's behaviour as a process: flags, start-up topology, state directory and socket
// handling, signals and exit codes.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "clients/cpp/iommud_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::iommud::test::kDemoTopology;
using ::iommud::test::kEmptyTopology;
using ::iommud::test::SpawnDaemon;
using ::iommud::test::Subprocess;
using ::iommud::test::TempDir;
using ::iommud::test::TestDaemon;
using ::iommud::test::TestDaemonOptions;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

constexpr absl::Duration kExitTimeout = absl::Seconds(30);

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// Runs iommud with `options` on a fresh state dir to its exit; returns the exit status and the log.
int RunToExit(const TestDaemonOptions& options, std::string* log) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      SpawnDaemon(options, dir.path() + "/state", dir.path(), "iommud.log");
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return -1;
  absl::StatusOr<int> status = (*process)->WaitForExit(kExitTimeout);
  EXPECT_TRUE(status.ok()) << status.status();
  *log = (*process)->Log();
  return status.value_or(-1);
}

TEST(IommudLifecycleTest, SigtermExitsZeroAndRemovesTheSocket) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start());
  ASSERT_TRUE(Exists(daemon->socket_path()));
  {
    // A connected client does not keep the daemon from exiting.
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon->Connect());
    ASSERT_TRUE(client->ListAllUnits().ok());
    ASSERT_OK_AND_ASSIGN(int exit_status, daemon->Stop(SIGTERM));
    EXPECT_EQ(exit_status, 0) << daemon->Log();
  }
  EXPECT_FALSE(Exists(daemon->socket_path()));
  EXPECT_THAT(daemon->Log(), HasSubstr("iommud: stopped"));
}

TEST(IommudLifecycleTest, SigintExitsZero) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start());
  ASSERT_OK_AND_ASSIGN(int exit_status, daemon->Stop(SIGINT));
  EXPECT_EQ(exit_status, 0) << daemon->Log();
  EXPECT_FALSE(Exists(daemon->socket_path()));
}

// Waits until `needle` occurs `count` times in the daemon's log; false after 10 s.
bool WaitForLogCount(TestDaemon& daemon, const std::string& needle, size_t count) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    const std::string log = daemon.Log();
    size_t seen = 0;
    for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) {
      ++seen;
    }
    if (seen >= count) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

// SIGHUP (`systemctl reload iommud`) re-reads --policy_file: the daemon keeps serving, calls
// authorized afterwards get the new roles, and a file that does not parse is refused with the
// previous policy kept. (SIGHUP's default action would kill the daemon, leaving socket and lock.)
TEST(IommudLifecycleTest, SighupReloadsThePolicyAndTheDaemonKeepsServing) {
  TempDir dir;
  const std::string policy = dir.WriteFile("policy.txt", absl::StrCat("viewer uid:", getuid(), "\n"));
  TestDaemonOptions options;
  options.flags = {absl::StrCat("--policy_file=", policy)};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon->Connect());
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::IommuUnit> units, client->ListAllUnits());
  // A viewer may not reconcile (admin only).
  EXPECT_ERROR(client->Reconcile(iommu::v1::ReconcileRequest()), kPermissionDenied,
               "PERMISSION_DENIED");

  // The file now makes the caller admin: after SIGHUP the same connection may reconcile.
  dir.WriteFile("policy.txt", absl::StrCat("# reloaded\nadmin uid:", getuid(), "\n"));
  ASSERT_TRUE(daemon->process().Signal(SIGHUP).ok());
  ASSERT_TRUE(WaitForLogCount(*daemon, absl::StrCat("iommud: SIGHUP: policy reloaded from ", policy,
                                                    " (1 entry)"),
                              1))
      << daemon->Log();
  ASSERT_TRUE(daemon->process().running()) << daemon->Log();
  EXPECT_OK(client->Reconcile(iommu::v1::ReconcileRequest()));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> fresh, daemon->Connect());
  EXPECT_OK(fresh->Reconcile(iommu::v1::ReconcileRequest()));

  // A broken file is refused (logged as a warning) and the admin policy stays in force.
  dir.WriteFile("policy.txt", absl::StrCat("superuser uid:", getuid(), "\n"));
  ASSERT_TRUE(daemon->process().Signal(SIGHUP).ok());
  ASSERT_TRUE(WaitForLogCount(*daemon, "WARN iommud: SIGHUP: policy NOT reloaded", 1))
      << daemon->Log();
  EXPECT_THAT(daemon->Log(), HasSubstr("(INVALID_POLICY)"));
  ASSERT_TRUE(daemon->process().running()) << daemon->Log();
  EXPECT_TRUE(Exists(daemon->socket_path()));
  EXPECT_OK(client->Reconcile(iommu::v1::ReconcileRequest()));
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::IommuUnit> again, client->ListAllUnits());
  EXPECT_THAT(again, SizeIs(units.size()));

  // Back to viewer: refused again, so the reload really replaces the roles in both directions.
  dir.WriteFile("policy.txt", absl::StrCat("viewer uid:", getuid(), "\n"));
  ASSERT_TRUE(daemon->process().Signal(SIGHUP).ok());
  ASSERT_TRUE(WaitForLogCount(*daemon, "iommud: SIGHUP: policy reloaded from", 2)) << daemon->Log();
  EXPECT_ERROR(client->Reconcile(iommu::v1::ReconcileRequest()), kPermissionDenied,
               "PERMISSION_DENIED");

  client.reset();
  fresh.reset();
  ASSERT_OK_AND_ASSIGN(int exit_status, daemon->Stop(SIGTERM));
  EXPECT_EQ(exit_status, 0) << daemon->Log();
  EXPECT_FALSE(Exists(daemon->socket_path()));
}

// Without --policy_file there is nothing to re-read: SIGHUP says so and the daemon keeps serving.
TEST(IommudLifecycleTest, SighupWithoutPolicyFileKeepsServing) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon->Connect());
  for (size_t hangup = 1; hangup <= 2; ++hangup) {
    ASSERT_TRUE(daemon->process().Signal(SIGHUP).ok());
    ASSERT_TRUE(WaitForLogCount(*daemon, "SIGHUP: policy: the default policy", hangup))
        << daemon->Log();
    ASSERT_TRUE(daemon->process().running()) << daemon->Log();
    EXPECT_TRUE(client->ListAllUnits().ok());
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> fresh, daemon->Connect());
    EXPECT_TRUE(fresh->ListAllGroups().ok());
  }
  client.reset();
  ASSERT_OK_AND_ASSIGN(int exit_status, daemon->Stop(SIGTERM));
  EXPECT_EQ(exit_status, 0) << daemon->Log();
}

TEST(IommudLifecycleTest, CreatesTheStateDirectory0750) {
  TempDir dir;
  TestDaemonOptions options;
  options.state_dir = dir.path() + "/run/iommud";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
  struct stat st;
  ASSERT_EQ(stat(options.state_dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777 & ~0750, 0u);
  EXPECT_EQ(daemon->socket_path(), options.state_dir + "/iommud.sock");
  EXPECT_TRUE(Exists(daemon->socket_path()));
}

TEST(IommudLifecycleTest, SecondDaemonOnTheSameStateDirIsRefused) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> first, TestDaemon::Start());
  TempDir logs;
  TestDaemonOptions options;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> second,
                       SpawnDaemon(options, first->state_dir(), logs.path(), "second.log"));
  ASSERT_OK_AND_ASSIGN(int exit_status, second->WaitForExit(kExitTimeout));
  EXPECT_EQ(exit_status, 1);
  EXPECT_THAT(second->Log(), HasSubstr("STATE_DIR_LOCKED"));
  EXPECT_THAT(second->Log(), HasSubstr(absl::StrCat("pid ", first->process().pid())));
  // The first one is untouched and still serving.
  ASSERT_TRUE(Exists(first->socket_path()));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, first->Connect());
  ASSERT_OK_AND_ASSIGN(auto health, client->CheckHealth(""));
  EXPECT_EQ(health, grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST(IommudLifecycleTest, LiveSocketAtTheSocketPathIsNotStolen) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> first, TestDaemon::Start());
  TempDir other;
  TestDaemonOptions options;
  options.flags = {absl::StrCat("--socket=", first->socket_path())};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> second,
                       SpawnDaemon(options, other.path() + "/state", other.path(), "second.log"));
  ASSERT_OK_AND_ASSIGN(int exit_status, second->WaitForExit(kExitTimeout));
  EXPECT_EQ(exit_status, 1);
  EXPECT_THAT(second->Log(), HasSubstr("SOCKET_IN_USE"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, first->Connect());
  EXPECT_TRUE(client->ListAllUnits().ok());
}

TEST(IommudLifecycleTest, StaleSocketFileIsReplaced) {
  TempDir dir;
  const std::string state_dir = dir.path() + "/state";
  ASSERT_EQ(mkdir(state_dir.c_str(), 0750), 0);
  // A socket whose listener is gone, as a crashed daemon leaves it.
  const std::string socket_path = state_dir + "/iommud.sock";
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, socket_path.c_str(), sizeof(address.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  close(fd);
  ASSERT_TRUE(Exists(socket_path));

  TestDaemonOptions options;
  options.state_dir = state_dir;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon->Connect());
  EXPECT_TRUE(client->ListAllUnits().ok());
}

TEST(IommudLifecycleTest, RestartAfterACrash) {
  TempDir dir;
  TestDaemonOptions options;
  options.state_dir = dir.path() + "/state";
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> crashed, TestDaemon::Start(options));
    ASSERT_OK_AND_ASSIGN(int exit_status, crashed->Stop(SIGKILL));
    EXPECT_EQ(exit_status, 128 + SIGKILL);
    EXPECT_TRUE(Exists(crashed->socket_path()));  // left behind
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> restarted, TestDaemon::Start(options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, restarted->Connect());
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::Device> devices, client->ListAllDevices());
  EXPECT_THAT(devices, SizeIs(4));
  ASSERT_OK_AND_ASSIGN(int exit_status, restarted->Stop());
  EXPECT_EQ(exit_status, 0);
}

TEST(IommudLifecycleTest, NonSocketAtTheSocketPathIsLeftAlone) {
  TempDir dir;
  const std::string precious = dir.WriteFile("precious.txt", "keep me");
  TestDaemonOptions options;
  options.flags = {absl::StrCat("--socket=", precious)};
  std::string log;
  EXPECT_EQ(RunToExit(options, &log), 1);
  EXPECT_THAT(log, HasSubstr("SOCKET_PATH_NOT_SOCKET"));
  std::ifstream file(precious);
  std::string content;
  std::getline(file, content);
  EXPECT_EQ(content, "keep me");
}

TEST(IommudLifecycleTest, ExplicitSocketPathAndTcp) {
  TempDir dir;
  TestDaemonOptions options;
  options.state_dir = dir.path() + "/state";
  const std::string socket_path = dir.path() + "/elsewhere.sock";
  options.flags = {absl::StrCat("--socket=", socket_path), "--listen_tcp=127.0.0.1:0",
                   "--insecure_tcp",
                   absl::StrCat("--policy_file=",
                                dir.WriteFile("policy.txt", absl::StrCat("admin uid:", getuid(),
                                                                         "\nviewer insecure\n")))};
  TempDir logs;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> process,
                       SpawnDaemon(options, options.state_dir, logs.path(), "iommud.log"));
  ASSERT_TRUE(process->WaitForLog(absl::StrCat("serving on unix:", socket_path), kExitTimeout).ok())
      << process->Log();
  const std::string log = process->Log();
  const std::string marker = "listening on tcp port ";
  const size_t at = log.find(marker);
  ASSERT_NE(at, std::string::npos) << log;
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      log.substr(at + marker.size(), log.find('\n', at) - at - marker.size()), &port));
  ASSERT_GT(port, 0);

  for (const std::string& target :
       {absl::StrCat("unix:", socket_path), absl::StrCat("127.0.0.1:", port)}) {
    ClientOptions client_options;
    client_options.target = target;
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, IommuClient::Connect(client_options));
    ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::IommuUnit> units, client->ListAllUnits());
    EXPECT_THAT(units, SizeIs(2)) << target;
  }
  ASSERT_TRUE(process->Signal(SIGTERM).ok());
  ASSERT_OK_AND_ASSIGN(int exit_status, process->WaitForExit(kExitTimeout));
  EXPECT_EQ(exit_status, 0);
  EXPECT_FALSE(Exists(socket_path));
}

TEST(IommudLifecycleTest, EmbeddedDemoTopologyByDefault) {
  TestDaemonOptions options;
  options.topology = kDemoTopology;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon->Connect());
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::IommuUnit> units, client->ListAllUnits());
  ASSERT_THAT(units, SizeIs(2));
  EXPECT_EQ(units[0].name(), "smmu0");
  EXPECT_EQ(units[1].name(), "smmu1");
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::Device> devices, client->ListAllDevices());
  EXPECT_THAT(devices, SizeIs(8));
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::Group> groups, client->ListAllGroups());
  EXPECT_THAT(groups, SizeIs(6));
  int multi_device_groups = 0;
  for (const iommu::v1::Group& group : groups) multi_device_groups += group.devices_size() > 1;
  EXPECT_EQ(multi_device_groups, 2);
}

TEST(IommudLifecycleTest, EmptyTopologyAndDefaultDomainTypeFlag) {
  TestDaemonOptions options;
  options.topology = kEmptyTopology;
  options.flags = {"--default_domain_type=IDENTITY"};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon->Connect());
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::IommuUnit> units, client->ListAllUnits());
  EXPECT_THAT(units, SizeIs(0));
  iommu::v1::ProbeDeviceRequest probe;
  probe.set_unit("u0");
  probe.set_device("0000:01:00.0");
  EXPECT_ERROR(client->ProbeDevice(probe), kNotFound, "UNIT_NOT_FOUND");
}

TEST(IommudLifecycleTest, DefaultDomainTypeFlagAppliesToNewGroups) {
  TestDaemonOptions options;
  options.flags = {"--default_domain_type=identity"};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon->Connect());
  iommu::v1::GetDeviceRequest get;
  get.set_device("0000:01:00.0");
  ASSERT_OK_AND_ASSIGN(iommu::v1::Device device, client->GetDevice(get));
  iommu::v1::GetDomainRequest domain;
  domain.set_domain_id(device.domain_id());
  ASSERT_OK_AND_ASSIGN(iommu::v1::Domain default_domain, client->GetDomain(domain));
  EXPECT_EQ(default_domain.type(), iommu::v1::DOMAIN_TYPE_IDENTITY);
}

TEST(IommudLifecycleTest, BadTopologyFileFailsWithItsLine) {
  TestDaemonOptions options;
  options.topology = "units { name: \"u0\" }\nunits { nme: \"u1\" }\n";
  std::string log;
  EXPECT_EQ(RunToExit(options, &log), 1);
  EXPECT_THAT(log, HasSubstr(".topology.textpb:2:"));
  EXPECT_THAT(log, HasSubstr("INVALID_TOPOLOGY"));

  options.topology = "units { name: \"u0\" }\ndevices { unit: \"u7\" name: \"d\" rid: 1 }\n";
  EXPECT_EQ(RunToExit(options, &log), 1);
  EXPECT_THAT(log, HasSubstr(".topology.textpb:2: device 'd'"));
}

TEST(IommudLifecycleTest, MissingTopologyFile) {
  TestDaemonOptions options;
  options.topology = kEmptyTopology;
  options.flags = {"--topology=/nonexistent/topology.textpb"};
  std::string log;
  EXPECT_EQ(RunToExit(options, &log), 1);
  EXPECT_THAT(log, HasSubstr("TOPOLOGY_UNREADABLE"));
}

TEST(IommudLifecycleTest, BadFlagsExitTwo) {
  for (const char* flag :
       {"--default_domain_type=PURPLE", "--backend_opt=novalue", "--no_such_flag", "positional"}) {
    TestDaemonOptions options;
    options.flags = {flag};
    std::string log;
    EXPECT_NE(RunToExit(options, &log), 0) << flag;
    EXPECT_THAT(log, Not(HasSubstr("serving on"))) << flag;
  }
  TestDaemonOptions options;
  options.flags = {"--default_domain_type=PURPLE"};
  std::string log;
  EXPECT_EQ(RunToExit(options, &log), 2);
  EXPECT_THAT(log, HasSubstr("--default_domain_type=PURPLE"));
}

TEST(IommudLifecycleTest, UnknownBackendOrBackendOptionFails) {
  TestDaemonOptions options;
  options.flags = {"--backend=quantum"};
  std::string log;
  EXPECT_EQ(RunToExit(options, &log), 1);
  EXPECT_THAT(log, HasSubstr("UNKNOWN_BACKEND"));

  options.flags = {"--backend=software", "--backend_opt=colour=blue"};
  EXPECT_EQ(RunToExit(options, &log), 1);
  EXPECT_THAT(log, HasSubstr("colour"));
}

TEST(IommudLifecycleTest, HelpListsTheFlags) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Subprocess> process,
      Subprocess::Spawn({test::IommudBinary(), "--help"}, dir.path() + "/help.log"));
  ASSERT_OK_AND_ASSIGN(int exit_status, process->WaitForExit(kExitTimeout));
  (void)exit_status;  // absl's --help exits 1 by design
  const std::string help = process->Log();
  for (const char* flag : {"--state_dir", "--socket", "--listen_tcp", "--backend", "--backend_opt",
                           "--topology", "--default_domain_type", "--tls_cert", "--tls_key",
                           "--tls_client_ca", "--tls_refresh_interval", "--insecure_tcp"}) {
    EXPECT_THAT(help, HasSubstr(flag)) << help;
  }
  EXPECT_THAT(help, Not(HasSubstr("serving on")));
}

}  // namespace
}  // namespace iommud
