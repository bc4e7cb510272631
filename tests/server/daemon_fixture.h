// Spawning the real `iommud` binary for integration tests (and for later crash-recovery and
// security tests): a fresh state directory, a topology file, the daemon's stderr captured to a
// file, waiting for its "serving on" line, stopping it with a signal and collecting its exit
// status.
#ifndef IOMMUD_TESTS_SERVER_DAEMON_FIXTURE_H_
#define IOMMUD_TESTS_SERVER_DAEMON_FIXTURE_H_

#include <sys/types.h>

#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "clients/cpp/iommud_client.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace test {

// The iommud binary under test (IOMMUD_BINARY, set by CMake).
std::string IommudBinary();

// A small topology for tests: unit "u0" (4K|2M pages, 32-bit IOVA, 256 RIDs) with a single-device
// group (0000:01:00.0, RID 0x10) and a two-device group sharing RID 0x20 (0000:02:00.0, .1); unit
// "u1" (defaults) with 0000:81:00.0 (RID 0x10).
extern const char kTestTopology[];

// A child process with stdout and stderr sent to a log file. Killed (SIGKILL) and reaped when
// destroyed if still running; also killed if the test process dies (PR_SET_PDEATHSIG).
class Subprocess {
 public:
  static absl::StatusOr<std::unique_ptr<Subprocess>> Spawn(const std::vector<std::string>& argv,
                                                           const std::string& log_path);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  std::string Log() const;  // everything written so far
  // Waits until the log contains `text`. FAILED_PRECONDITION if the process exits first,
  // DEADLINE_EXCEEDED after `timeout`.
  absl::Status WaitForLog(absl::string_view text, absl::Duration timeout);
  absl::Status Signal(int signo);
  // Waits for the exit: the exit code, or 128 + the signal that killed it. DEADLINE_EXCEEDED after
  // `timeout` (the process is left running).
  absl::StatusOr<int> WaitForExit(absl::Duration timeout);

 private:
  Subprocess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  bool Reap(bool block);  // true once reaped

  pid_t pid_;
  std::string log_path_;
  bool reaped_ = false;
  int exit_status_ = -1;
};

// The full owner cookie the daemon gives a request of this process naming owner `name`: callers
// are identified as this process's uid, so "uid:<getuid()>/<name>" (server/security/authorizer.h).
std::string OwnOwner(absl::string_view name);

// TestDaemonOptions::topology values besides a topology's text.
inline constexpr char kEmptyTopology[] = "none";   // --topology=none
inline constexpr char kDemoTopology[] = "<demo>";  // no --topology: the embedded demo topology

struct TestDaemonOptions {
  std::string topology = kTestTopology;  // text of the --topology file, or one of the above
  std::vector<std::string> flags;        // extra flags, e.g. "--allow_fault_injection"
  std::string state_dir;                 // empty: a fresh directory, removed with the TestDaemon
};

// One running iommud. Start() returns once its "iommud: serving on unix:<socket>" line appeared.
// Destroying it kills the daemon (SIGKILL) if it still runs; use Stop() for a graceful exit.
class TestDaemon {
 public:
  static absl::StatusOr<std::unique_ptr<TestDaemon>> Start(TestDaemonOptions options = {});

  const std::string& state_dir() const { return state_dir_; }
  std::string socket_path() const { return state_dir_ + "/iommud.sock"; }
  std::string target() const { return "unix:" + socket_path(); }
  Subprocess& process() { return *process_; }
  std::string Log() const { return process_->Log(); }

  // A client on the daemon's unix socket.
  absl::StatusOr<std::unique_ptr<IommuClient>> Connect() const;

  // Sends `signo` and returns the exit status (see Subprocess::WaitForExit).
  absl::StatusOr<int> Stop(int signo = SIGTERM, absl::Duration timeout = absl::Seconds(30));

 private:
  TestDaemon() = default;

  std::unique_ptr<TempDir> temp_;  // holds the state directory when the options named none
  std::string state_dir_;
  std::unique_ptr<Subprocess> process_;
};

// Spawns iommud with `options` on `state_dir` without waiting for it to serve (for runs expected to
// fail, or a second daemon). Topology files and the log (<log_name>) go to `files_dir`.
absl::StatusOr<std::unique_ptr<Subprocess>> SpawnDaemon(const TestDaemonOptions& options,
                                                        const std::string& state_dir,
                                                        const std::string& files_dir,
                                                        absl::string_view log_name);

}  // namespace test
}  // namespace iommud

#endif  // IOMMUD_TESTS_SERVER_DAEMON_FIXTURE_H_
