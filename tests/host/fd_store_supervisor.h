// FdStoreSupervisor: what systemd does for a Type=notify service with FileDescriptorStoreMax= > 0,
// reduced to the fd store, for the VM (a busybox initramfs: no systemd to run; see
// tests/host/README.md). It follows systemd's documented protocol (sd_notify(3),
// sd_pid_notify_with_fds(3), sd_listen_fds(3)):
//   - NOTIFY_SOCKET: an AF_UNIX datagram socket it creates, with SO_PASSCRED; a message is
//     accepted only from the main process's pid (NotifyAccess=main), others are counted rejected;
//   - "FDSTORE=1" + "FDNAME=<name>" with SCM_RIGHTS: the fds are kept, in arrival order, under
//     the name ("stored" when FDNAME is absent); "FDSTOREREMOVE=1" + "FDNAME=<name>" closes every
//     fd kept under that name; at most `max_fds` are kept (FileDescriptorStoreMax=), more are
//     closed and counted refused;
//   - on Start: the kept fds are passed to the new process as fds 3, 4, ... in storing order,
//     with LISTEN_FDS=<n>, LISTEN_FDNAMES=<names joined by ':'> and LISTEN_PID=<its pid> (set in
//     the child after fork, as systemd does), and NOTIFY_SOCKET.
// What it does not reproduce: READY=1 and the other notify states (ignored), the watchdog,
// EPOLL-checking stored fds for hang-ups (FDPOLL), dedup of an fd stored twice, persisting the
// store across its own restart, and the unit's cgroup, sandboxing and DeviceAllow=.
//
// Thread safety: a thread drains the socket (a sender blocks once ~10 datagrams queue up);
// the public methods are thread-safe.
#ifndef IOMMUD_TESTS_HOST_FD_STORE_SUPERVISOR_H_
#define IOMMUD_TESTS_HOST_FD_STORE_SUPERVISOR_H_

#include <sys/types.h>

#include <atomic>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/host/unique_fd.h"

namespace iommud {
namespace host {
namespace test {

class FdStoreSupervisor {
 public:
  // Creates the notify socket at `socket_path` (replacing a stale one) and the draining thread.
  static absl::StatusOr<std::unique_ptr<FdStoreSupervisor>> Create(const std::string& socket_path,
                                                                    size_t max_fds = 64);
  ~FdStoreSupervisor();

  // Forks and execs `argv` (stdout and stderr appended to `log_path`) with the kept fds and the
  // environment above; the child becomes the main pid. Returns its pid.
  absl::StatusOr<pid_t> Start(const std::vector<std::string>& argv, const std::string& log_path);
  // Waits until every datagram the main process sent before now is processed (a round trip through
  // the socket: a marker datagram of our own).
  void Sync();

  // The names kept now, in storing order (one entry per fd).
  std::vector<std::string> Names() const;
  int rejected() const { return rejected_.load(); }
  int refused() const { return refused_.load(); }
  const std::string& socket_path() const { return path_; }

 private:
  FdStoreSupervisor(std::string path, UniqueFd socket, size_t max_fds);
  void Drain();
  void Handle(pid_t sender, const std::string& message, std::vector<UniqueFd> fds);

  const std::string path_;
  const UniqueFd socket_;
  const size_t max_fds_;
  std::atomic<bool> stop_{false};
  std::atomic<int> rejected_{0};
  std::atomic<int> refused_{0};
  mutable absl::Mutex mu_;
  pid_t main_pid_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::pair<std::string, UniqueFd>> kept_ ABSL_GUARDED_BY(mu_);
  uint64_t markers_seen_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t markers_sent_ = 0;  // Sync's, from the caller's thread only
  std::thread drainer_;
};

}  // namespace test
}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_TESTS_HOST_FD_STORE_SUPERVISOR_H_
