// Starts and stops the iommud under test in the VM (host_api_vm_test, host_map_bench): the
// build's binary (run.sh names it in IOMMUD_BIN) with --backend=linux --state=memory, its state
// directory, socket and log in one directory.
#ifndef IOMMUD_TESTS_HOST_VM_DAEMON_H_
#define IOMMUD_TESTS_HOST_VM_DAEMON_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace iommud {
namespace host {
namespace test {

// Forks and execs `binary --backend=linux --state=memory --state_dir=<state_dir>
// --audit_interval=0 <extra_args...>` (stdout and stderr to <state_dir>/iommud.log), then waits
// up to `timeout` until its health service reports SERVING on unix:<state_dir>/iommud.sock.
// Returns the daemon's pid; an error (with the log) if it exits or does not serve in time (then
// it is killed).
// With `append_log`, the log is appended to (a restart keeps the previous process's lines).
absl::StatusOr<pid_t> StartVmDaemon(const std::string& binary, const std::string& state_dir,
                                    const std::vector<std::string>& extra_args = {},
                                    absl::Duration timeout = absl::Seconds(60),
                                    bool append_log = false);

// Waits up to `timeout` until the daemon `pid` (a child of this process, started elsewhere, e.g.
// by tests/host/fd_store_supervisor.h) serves on unix:<state_dir>/iommud.sock; an error (with the
// log) if it exits or does not serve in time (then it is killed).
absl::Status WaitForVmDaemon(pid_t pid, const std::string& state_dir,
                             absl::Duration timeout = absl::Seconds(60));

// SIGTERM, then waits: an error (with the log) unless it exits with status 0.
absl::Status StopVmDaemon(pid_t pid, const std::string& state_dir);

// SIGKILL (a crash: no clean-up of any kind), then waits: an error unless it died of SIGKILL.
absl::Status Kill9VmDaemon(pid_t pid);

// The daemon's log (<state_dir>/iommud.log), "" if unreadable.
std::string ReadVmDaemonLog(const std::string& state_dir);

}  // namespace test
}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_TESTS_HOST_VM_DAEMON_H_
