#include "tests/server/daemon_fixture.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace iommud {
namespace test {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(10);
constexpr absl::Duration kStartTimeout = absl::Seconds(30);

}  // namespace

std::string IommudBinary() { return IOMMUD_BINARY; }

std::string OwnOwner(absl::string_view name) { return absl::StrCat("uid:", getuid(), "/", name); }

const char kTestTopology[] = R"textpb(
units {
  name: "u0"
  caps { pgsize_bitmap: 0x201000 iova_bits: 32 max_rids: 256 }
}
units { name: "u1" }
devices { unit: "u0" name: "0000:01:00.0" rid: 0x10 }
devices { unit: "u0" name: "0000:02:00.0" rid: 0x20 }
devices { unit: "u0" name: "0000:02:00.1" rid: 0x20 }
devices { unit: "u1" name: "0000:81:00.0" rid: 0x10 }
)textpb";

// --- Subprocess ---

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Spawn(const std::vector<std::string>& argv,
                                                              const std::string& log_path) {
  // Everything the child needs is prepared before fork(): only async-signal-safe calls after it.
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0)
    return absl::InternalError(absl::StrCat("open ", log_path, ": ", strerror(errno)));
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(args[0], args.data());
    _exit(127);
  }
  close(log_fd);
  return std::unique_ptr<Subprocess>(new Subprocess(pid, log_path));
}

Subprocess::~Subprocess() {
  if (!Reap(false)) {
    kill(pid_, SIGKILL);
    Reap(true);
  }
}

bool Subprocess::Reap(bool block) {
  if (reaped_) return true;
  int status = 0;
  pid_t done;
  do {
    done = waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (done < 0 && errno == EINTR);
  if (done != pid_) return false;
  reaped_ = true;
  exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return true;
}

bool Subprocess::running() { return !Reap(false); }

std::string Subprocess::Log() const {
  std::ifstream file(log_path_);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

absl::Status Subprocess::WaitForLog(absl::string_view text, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (absl::StrContains(Log(), text)) return absl::OkStatus();
    if (!running()) {
      if (absl::StrContains(Log(), text)) return absl::OkStatus();
      return absl::FailedPreconditionError(absl::StrCat(
          "exited with status ", exit_status_, " before logging '", text, "'; log:\n", Log()));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "no '", text, "' in the log after ", absl::FormatDuration(timeout), "; log:\n", Log()));
    }
    absl::SleepFor(kPollInterval);
  }
}

absl::Status Subprocess::Signal(int signo) {
  if (reaped_) return absl::FailedPreconditionError("already exited");
  if (kill(pid_, signo) != 0) return absl::InternalError(strerror(errno));
  return absl::OkStatus();
}

absl::StatusOr<int> Subprocess::WaitForExit(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!Reap(false)) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("still running after ", absl::FormatDuration(timeout), "; log:\n", Log()));
    }
    absl::SleepFor(kPollInterval);
  }
  return exit_status_;
}

// --- Daemons ---

absl::StatusOr<std::unique_ptr<Subprocess>> SpawnDaemon(const TestDaemonOptions& options,
                                                        const std::string& state_dir,
                                                        const std::string& files_dir,
                                                        absl::string_view log_name) {
  // Metrics on a free port, so that daemons of tests running in parallel do not collide.
  std::vector<std::string> argv = {IommudBinary(), absl::StrCat("--state_dir=", state_dir),
                                   // Callers are this test process (SO_PEERCRED): the daemon's
                                   // uid, admin under the default policy.
                                   "--metrics_port=-1"};
  if (options.topology == kEmptyTopology) {
    argv.push_back("--topology=none");
  } else if (options.topology != kDemoTopology) {
    const std::string path = absl::StrCat(files_dir, "/", log_name, ".topology.textpb");
    std::ofstream(path) << options.topology;
    argv.push_back(absl::StrCat("--topology=", path));
  }
  argv.insert(argv.end(), options.flags.begin(), options.flags.end());
  return Subprocess::Spawn(argv, absl::StrCat(files_dir, "/", log_name));
}

absl::StatusOr<std::unique_ptr<TestDaemon>> TestDaemon::Start(TestDaemonOptions options) {
  std::unique_ptr<TestDaemon> daemon(new TestDaemon());
  daemon->temp_ = std::make_unique<TempDir>();
  daemon->state_dir_ =
      options.state_dir.empty() ? daemon->temp_->path() + "/state" : options.state_dir;
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      SpawnDaemon(options, daemon->state_dir_, daemon->temp_->path(), "iommud.log");
  if (!process.ok()) return process.status();
  daemon->process_ = std::move(*process);
  absl::Status serving = daemon->process_->WaitForLog(
      absl::StrCat("iommud: serving on ", daemon->target(), "\n"), kStartTimeout);
  if (!serving.ok()) return serving;
  return daemon;
}

absl::StatusOr<std::unique_ptr<IommuClient>> TestDaemon::Connect() const {
  ClientOptions options;
  options.target = target();
  return IommuClient::Connect(options);
}

absl::StatusOr<int> TestDaemon::Stop(int signo, absl::Duration timeout) {
  absl::Status signalled = process_->Signal(signo);
  if (!signalled.ok()) return signalled;
  return process_->WaitForExit(timeout);
}

}  // namespace test
}  // namespace iommud
