// The iommud binary over its state file: a restart (graceful or kill -9) recovers the registry, and
// a state file that cannot be used (garbage, truncated, locked by another daemon, missing while the
// emulated hardware survived, --init_state over an existing one) makes iommud exit non-zero with a
// one-line error naming the file and the reason, never start empty, and leave no socket serving.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "clients/cpp/iommud_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::grpc::health::v1::HealthCheckResponse;
using ::iommud::test::SpawnDaemon;
using ::iommud::test::Subprocess;
using ::iommud::test::TempDir;
using ::iommud::test::TestDaemon;
using ::iommud::test::TestDaemonOptions;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr absl::Duration kExitTimeout = absl::Seconds(30);

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

// A state dir in `dir` whose store a daemon created, probed a device into and stopped gracefully.
std::string PopulatedStateDir(const TempDir& dir) {
  TestDaemonOptions options;
  options.state_dir = dir.path() + "/state";
  absl::StatusOr<std::unique_ptr<TestDaemon>> daemon = TestDaemon::Start(options);
  EXPECT_TRUE(daemon.ok()) << daemon.status();
  if (!daemon.ok()) return options.state_dir;
  absl::StatusOr<std::unique_ptr<IommuClient>> client = (*daemon)->Connect();
  EXPECT_TRUE(client.ok()) << client.status();
  iommu::v1::ProbeDeviceRequest probe;
  probe.set_unit("u1");
  probe.set_device("0000:82:00.0");
  probe.set_rid(0x30);
  EXPECT_OK((*client)->ProbeDevice(probe));
  client->reset();
  absl::StatusOr<int> status = (*daemon)->Stop(SIGTERM);
  EXPECT_TRUE(status.ok() && *status == 0) << (*daemon)->Log();
  return options.state_dir;
}

// Runs iommud on `state_dir` with `flags` to its exit; returns the exit status and the log.
int RunToExit(const TempDir& dir, const std::string& state_dir, std::vector<std::string> flags,
              std::string* log) {
  TestDaemonOptions options;
  options.flags = std::move(flags);
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      SpawnDaemon(options, state_dir, dir.path(), "refused.log");
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return -1;
  absl::StatusOr<int> status = (*process)->WaitForExit(kExitTimeout);
  EXPECT_TRUE(status.ok()) << status.status();
  *log = (*process)->Log();
  return status.value_or(-1);
}

// The daemon's one error line: "<time> ERROR iommud: cannot start: <message> (<REASON>)", from
// "iommud: " on.
std::string ErrorLine(const std::string& log) {
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    const size_t at = line.find("iommud: cannot start: ");
    if (at != absl::string_view::npos) return std::string(line.substr(at));
  }
  return "";
}

TEST(IommudStateTest, GracefulRestartRecoversTheRegistry) {
  TempDir dir;
  const std::string state_dir = PopulatedStateDir(dir);
  TestDaemonOptions options;
  options.state_dir = state_dir;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
  EXPECT_THAT(daemon->Log(), HasSubstr("iommud: recovered 2 units, 5 devices"));
  EXPECT_THAT(daemon->Log(), HasSubstr("not applied: the state store is authoritative"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon->Connect());
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::Device> devices, client->ListAllDevices());
  EXPECT_THAT(devices, SizeIs(5));
  for (const char* service : {"", "iommu.v1.Iommu"}) {
    ASSERT_OK_AND_ASSIGN(auto status, client->CheckHealth(service));
    EXPECT_EQ(status, HealthCheckResponse::SERVING) << service;
  }
}

TEST(IommudStateTest, Kill9RestartRecoversTheRegistry) {
  TempDir dir;
  TestDaemonOptions options;
  options.state_dir = dir.path() + "/state";
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon->Connect());
    iommu::v1::ReleaseDeviceRequest release;
    release.set_device("0000:81:00.0");
    ASSERT_OK(client->ReleaseDevice(release));
    ASSERT_OK_AND_ASSIGN(int status, daemon->Stop(SIGKILL));
    EXPECT_EQ(status, 128 + SIGKILL);
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon->Connect());
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::Device> devices, client->ListAllDevices());
  EXPECT_THAT(devices, SizeIs(3));
}

struct BrokenFile {
  const char* name;
  void (*breaks)(const std::string& state_file);
  const char* reason;
};

TEST(IommudStateTest, UnusableStateFilesStopTheStart) {
  const std::vector<BrokenFile> cases = {
      {"garbage",
       [](const std::string& file) {
         WriteFile(file, std::string(8192, 'x'));
         unlink((file + "-wal").c_str());
         unlink((file + "-shm").c_str());
       },
       "STATE_CORRUPT"},
      {"truncated",
       [](const std::string& file) {
         const std::string content = ReadFile(file);
         WriteFile(file, content.substr(0, 100));
         unlink((file + "-wal").c_str());
         unlink((file + "-shm").c_str());
       },
       "STATE_CORRUPT"},
  };
  for (const BrokenFile& broken : cases) {
    SCOPED_TRACE(broken.name);
    TempDir dir;
    const std::string state_dir = PopulatedStateDir(dir);
    const std::string state_file = state_dir + "/state.db";
    broken.breaks(state_file);
    std::string log;
    EXPECT_EQ(RunToExit(dir, state_dir, {}, &log), 1) << log;
    const std::string line = ErrorLine(log);
    EXPECT_THAT(line, HasSubstr(state_file)) << log;
    EXPECT_THAT(line, HasSubstr(absl::StrCat("(", broken.reason, ")"))) << log;
    EXPECT_THAT(log, Not(HasSubstr("serving on"))) << log;
    EXPECT_FALSE(Exists(state_dir + "/iommud.sock"));
  }
}

TEST(IommudStateTest, AStateFileAnotherDaemonUsesIsLocked) {
  TempDir dir;
  TestDaemonOptions options;
  options.state_dir = dir.path() + "/state";
  const std::string state_file = dir.path() + "/shared.db";
  options.flags = {"--state_file=" + state_file};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> first, TestDaemon::Start(options));
  // Another state directory, the same state file.
  std::string log;
  EXPECT_EQ(RunToExit(dir, dir.path() + "/other", {"--state_file=" + state_file}, &log), 1);
  const std::string line = ErrorLine(log);
  EXPECT_THAT(line, HasSubstr(state_file)) << log;
  EXPECT_THAT(line, HasSubstr("(STATE_LOCKED)")) << log;
  EXPECT_FALSE(Exists(dir.path() + "/other/iommud.sock"));
  // The same state directory: its lock says so first.
  EXPECT_EQ(RunToExit(dir, options.state_dir, {"--state_file=" + state_file}, &log), 1);
  EXPECT_THAT(ErrorLine(log), HasSubstr("(STATE_DIR_LOCKED)")) << log;
  // The first daemon was not disturbed.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, first->Connect());
  EXPECT_TRUE(client->ListAllUnits().ok());
}

TEST(IommudStateTest, MissingStateWithSurvivingEmulatedMemoryIsRefused) {
  TempDir dir;
  const std::string memory_file = dir.path() + "/hw.mem";
  TestDaemonOptions options;
  options.state_dir = dir.path() + "/state";
  options.flags = {"--backend=emulated", "--backend_opt=memory_file=" + memory_file,
                   "--backend_opt=memory_bytes=16M"};
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
    ASSERT_OK_AND_ASSIGN(int status, daemon->Stop(SIGKILL));
    EXPECT_EQ(status, 128 + SIGKILL);
  }
  const std::string state_file = options.state_dir + "/state.db";
  for (const char* suffix : {"", "-wal", "-shm"}) unlink((state_file + suffix).c_str());
  std::string log;
  EXPECT_EQ(RunToExit(dir, options.state_dir, options.flags, &log), 1);
  const std::string line = ErrorLine(log);
  EXPECT_THAT(line, HasSubstr(state_file)) << log;
  EXPECT_THAT(line, HasSubstr(memory_file)) << log;
  EXPECT_THAT(line, HasSubstr("(STATE_MISSING)")) << log;
  EXPECT_FALSE(Exists(state_file));
  EXPECT_FALSE(Exists(options.state_dir + "/iommud.sock"));
}

TEST(IommudStateTest, InitStateOverAnExistingFileIsRefused) {
  TempDir dir;
  const std::string state_dir = PopulatedStateDir(dir);
  std::string log;
  EXPECT_EQ(RunToExit(dir, state_dir, {"--init_state"}, &log), 1);
  EXPECT_THAT(ErrorLine(log), HasSubstr("(STATE_EXISTS)")) << log;
  EXPECT_FALSE(Exists(state_dir + "/iommud.sock"));
}

TEST(IommudStateTest, BadStateFlagsAreUsageErrors) {
  TempDir dir;
  std::string log;
  EXPECT_EQ(RunToExit(dir, dir.path() + "/state", {"--state=tape"}, &log), 2);
  EXPECT_THAT(log, HasSubstr("--state=tape"));
  EXPECT_EQ(RunToExit(dir, dir.path() + "/state", {"--state_sync=sometimes"}, &log), 2);
  EXPECT_THAT(log, HasSubstr("--state_sync=sometimes"));
}

}  // namespace
}  // namespace iommud
