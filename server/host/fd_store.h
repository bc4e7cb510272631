// FdStore: systemd's file-descriptor store (sd_notify(3) "FDSTORE=1", sd_listen_fds(3)), for file
// descriptors that must outlive one process of the daemon: the service manager keeps a copy of
// each stored fd while the unit restarts, and hands them all to the next process through
// LISTEN_FDS / LISTEN_FDNAMES / LISTEN_PID (fds 3, 4, ...), in the order they were stored.
//
// Why iommud needs it on a real host: the kernel keeps a VFIO group's ownership, its container and
// the container's mappings only while an fd of them is open (docs/semantics.md "Crash and restart
// on a real host"). Kept in the store, they survive a crash of the daemon, and the next process can
// take them back instead of finding the groups orphaned.
//
// It is the daemon's host::FdKeeper (core/host/fd_keeper.h) with --fd_store (server/daemon.h):
// the linux backend keeps its group and container fds in it, the fd channel its memory fds, and
// a restarted daemon adopts what it hands back (docs/semantics.md "Crash and restart on a real
// host").
//
// The unit needs FileDescriptorStoreMax= (the store is off at 0, systemd's default) and, for the
// sender to be accepted, NotifyAccess= that includes the daemon's main process.
//
// Thread safety: all methods are thread-safe.
// Errors: FD_STORE_UNAVAILABLE (FAILED_PRECONDITION: no NOTIFY_SOCKET, not under a service
// manager), FD_STORE_FAILED (INTERNAL: sending failed), INVALID_ARGUMENT (INVALID_ARGUMENT: a name
// systemd would refuse).
#ifndef IOMMUD_SERVER_HOST_FD_STORE_H_
#define IOMMUD_SERVER_HOST_FD_STORE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/host/fd_keeper.h"
#include "core/host/unique_fd.h"

namespace iommud {

class FdStore final : public host::FdKeeper {
 public:
  // Takes what a previous process stored (LISTEN_FDS etc. for this pid; the variables are unset,
  // the fds marked close-on-exec), and remembers whether NOTIFY_SOCKET names a service manager.
  static std::unique_ptr<FdStore> FromEnvironment();

  // Whether Store/Remove can reach a service manager.
  bool enabled() const { return enabled_; }

  // Hands a copy of `fd` to the service manager under `name` ("FDSTORE=1\nFDNAME=<name>"). The
  // caller keeps `fd`. A name is 1-255 printable ASCII characters without ':' (systemd's rule).
  absl::Status Store(absl::string_view name, int fd);
  // Drops every fd stored under `name` ("FDSTOREREMOVE=1\nFDNAME=<name>").
  absl::Status Remove(absl::string_view name);

  // The fd a previous process stored under `name`, now the caller's; invalid if there is none
  // (several under one name: the first, then the next).
  host::UniqueFd Take(absl::string_view name) ABSL_LOCKS_EXCLUDED(mu_);
  // The names of the handed-back fds nobody took (recovery reports and closes them).
  std::vector<std::string> Untaken() const override ABSL_LOCKS_EXCLUDED(mu_);

  // host::FdKeeper: Store, Remove, Take.
  absl::Status Keep(absl::string_view name, int fd) override { return Store(name, fd); }
  absl::Status Drop(absl::string_view name) override { return Remove(name); }
  host::UniqueFd TakeBack(absl::string_view name) override { return Take(name); }

 private:
  explicit FdStore(bool enabled) : enabled_(enabled) {}

  const bool enabled_;
  mutable absl::Mutex mu_;
  std::multimap<std::string, host::UniqueFd> adopted_ ABSL_GUARDED_BY(mu_);
};

// Whether `name` is a valid FDNAME.
bool ValidFdStoreName(absl::string_view name);

}  // namespace iommud

#endif  // IOMMUD_SERVER_HOST_FD_STORE_H_
