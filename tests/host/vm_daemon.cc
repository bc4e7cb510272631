#include "tests/host/vm_daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "clients/cpp/iommud_client.h"
#include "core/host/unique_fd.h"

namespace iommud {
namespace host {
namespace test {

std::string ReadVmDaemonLog(const std::string& state_dir) {
  std::string log;
  UniqueFd fd(::open(absl::StrCat(state_dir, "/iommud.log").c_str(), O_RDONLY | O_CLOEXEC));
  char buffer[4096];
  ssize_t n;
  while (fd.valid() && (n = ::read(fd.get(), buffer, sizeof(buffer))) > 0) log.append(buffer, n);
  return log;
}

absl::StatusOr<pid_t> StartVmDaemon(const std::string& binary, const std::string& state_dir,
                                    const std::vector<std::string>& extra_args,
                                    absl::Duration timeout, bool append_log) {
  ::mkdir(state_dir.c_str(), 0750);
  const std::string log = absl::StrCat(state_dir, "/iommud.log");
  std::vector<std::string> args = {binary, "--backend=linux", "--state=memory",
                                   absl::StrCat("--state_dir=", state_dir), "--audit_interval=0"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError("fork of iommud failed");
  if (pid == 0) {
    const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | (append_log ? O_APPEND : O_TRUNC), 0644);
    if (log_fd < 0 || ::dup2(log_fd, 1) < 0 || ::dup2(log_fd, 2) < 0) ::_exit(120);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  absl::Status serving = WaitForVmDaemon(pid, state_dir, timeout);
  if (!serving.ok()) return serving;
  return pid;
}

absl::Status WaitForVmDaemon(pid_t pid, const std::string& state_dir, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return absl::InternalError(absl::StrCat("iommud exited at start-up (status ", status,
                                              "); its log:\n", ReadVmDaemonLog(state_dir)));
    }
    ClientOptions options;
    options.target = absl::StrCat("unix:", state_dir, "/iommud.sock");
    options.connect_timeout = absl::Seconds(1);
    absl::StatusOr<std::unique_ptr<IommuClient>> client = IommuClient::Connect(options);
    if (client.ok()) {
      absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> health =
          (*client)->CheckHealth();
      if (health.ok() && *health == grpc::health::v1::HealthCheckResponse::SERVING) {
        return absl::OkStatus();
      }
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return absl::DeadlineExceededError(absl::StrCat("iommud did not serve within ",
                                                  absl::FormatDuration(timeout), "; its log:\n",
                                                  ReadVmDaemonLog(state_dir)));
}

absl::Status Kill9VmDaemon(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return absl::InternalError("waitpid on iommud failed");
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
    return absl::InternalError(absl::StrCat("iommud did not die of SIGKILL (status ", status, ")"));
  }
  return absl::OkStatus();
}

absl::Status StopVmDaemon(pid_t pid, const std::string& state_dir) {
  ::kill(pid, SIGTERM);
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return absl::InternalError("waitpid on iommud failed");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("iommud did not stop cleanly (status ", status,
                                            "); its log:\n", ReadVmDaemonLog(state_dir)));
  }
  return absl::OkStatus();
}

}  // namespace test
}  // namespace host
}  // namespace iommud
