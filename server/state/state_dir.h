// The daemon's state directory and its unix socket: creating the directory, making sure one daemon
// at a time uses it, and clearing a socket file left behind by a daemon that died.
#ifndef IOMMUD_SERVER_STATE_STATE_DIR_H_
#define IOMMUD_SERVER_STATE_STATE_DIR_H_

#include <sys/socket.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace iommud {

// Creates `path` (and missing parents) with mode 0750. OK if it already is a directory (its mode is
// left alone); FAILED_PRECONDITION (STATE_DIR_UNUSABLE) if it is something else or cannot be
// created.
absl::Status EnsureStateDir(const std::string& path);

// An exclusive advisory lock (flock) on "<state_dir>/iommud.lock", held while the object lives and
// dropped by the kernel if the process dies, so a crashed daemon never blocks its successor.
class StateDirLock {
 public:
  // FAILED_PRECONDITION (STATE_DIR_LOCKED) while another process holds it, with that process's pid
  // (written into the file) in the message and metadata; STATE_DIR_UNUSABLE if it cannot be opened.
  static absl::StatusOr<std::unique_ptr<StateDirLock>> Acquire(const std::string& state_dir);
  ~StateDirLock();
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  StateDirLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

// Prepares `path` for a new listening unix socket: nothing there -> OK; a socket no process accepts
// on (left by a dead daemon) -> removed; a socket something still accepts on -> FAILED_PRECONDITION
// (SOCKET_IN_USE); any other kind of file -> FAILED_PRECONDITION (SOCKET_PATH_NOT_SOCKET), never
// removed; a path longer than sockaddr_un allows -> INVALID_ARGUMENT (SOCKET_PATH_TOO_LONG).
// `socket_type` is the type of the socket that will listen there (SOCK_STREAM for the gRPC socket,
// SOCK_SEQPACKET for the fd channel): the liveness probe connects with that type.
absl::Status RemoveStaleSocket(const std::string& path, int socket_type = SOCK_STREAM);

}  // namespace iommud

#endif  // IOMMUD_SERVER_STATE_STATE_DIR_H_
