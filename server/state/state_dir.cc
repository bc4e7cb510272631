#include "server/state/state_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {
namespace {

constexpr mode_t kStateDirMode = 0750;

absl::Status Unusable(const std::string& path, absl::string_view what, int error) {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kStateDirUnusable,
               absl::StrCat(what, " '", path, "': ", std::strerror(error)), {{"path", path}});
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

absl::Status EnsureStateDir(const std::string& path) {
  if (path.empty()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kStateDirUnusable,
                 "the state directory path is empty", {{"path", path}});
  }
  if (IsDirectory(path)) return absl::OkStatus();
  // Create each missing component in turn, like mkdir -p.
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string prefix = path.substr(0, slash);
    if (!prefix.empty() && mkdir(prefix.c_str(), kStateDirMode) != 0 && errno != EEXIST) {
      return Unusable(path, "cannot create the state directory", errno);
    }
    if (slash == std::string::npos) break;
  }
  if (!IsDirectory(path)) return Unusable(path, "the state directory is not a directory", ENOTDIR);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<StateDirLock>> StateDirLock::Acquire(const std::string& state_dir) {
  std::string path = absl::StrCat(state_dir, "/iommud.lock");
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return Unusable(path, "cannot open the lock file", errno);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    char buffer[32] = {};
    const ssize_t n = pread(fd, buffer, sizeof(buffer) - 1, 0);
    close(fd);
    if (error != EWOULDBLOCK) return Unusable(path, "cannot lock", error);
    std::string holder = n > 0 ? std::string(absl::StripAsciiWhitespace(buffer)) : "unknown";
    return Error(absl::StatusCode::kFailedPrecondition, reason::kStateDirLocked,
                 absl::StrCat("another iommud (pid ", holder, ") is using the state directory '",
                              state_dir, "'"),
                 {{"path", path}, {"pid", holder}});
  }
  const std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    const int error = errno;
    close(fd);
    return Unusable(path, "cannot write the lock file", error);
  }
  return std::unique_ptr<StateDirLock>(new StateDirLock(std::move(path), fd));
}

StateDirLock::~StateDirLock() {
  // Emptied, not removed: removing would race with a successor that already opened it.
  if (ftruncate(fd_, 0) != 0) {
    // Nothing to do: the pid is informational only.
  }
  close(fd_);  // drops the flock
}

absl::Status RemoveStaleSocket(const std::string& path, int socket_type) {
  sockaddr_un address = {};
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kSocketPathTooLong,
                 absl::StrCat("unix socket path '", path, "' must have 1 to ",
                              sizeof(address.sun_path) - 1, " bytes"),
                 {{"path", path}});
  }
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return Error(absl::StatusCode::kFailedPrecondition, reason::kSocketPathNotSocket,
                 absl::StrCat("cannot inspect '", path, "': ", std::strerror(errno)),
                 {{"path", path}});
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kSocketPathNotSocket,
                 absl::StrCat("'", path, "' exists and is not a unix socket; not removing it"),
                 {{"path", path}});
  }
  // A live daemon accepts connections (or has its backlog full); a dead one's socket refuses them.
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  const int fd = socket(AF_UNIX, socket_type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return Error(absl::StatusCode::kInternal, reason::kSocketCheckFailed,
                 absl::StrCat("socket(): ", std::strerror(errno)), {{"path", path}});
  }
  const int connected = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  const int error = errno;
  close(fd);
  if (connected == 0 || error == EAGAIN) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kSocketInUse,
                 absl::StrCat("something is serving on '", path, "' already"), {{"path", path}});
  }
  if (error != ECONNREFUSED) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kSocketInUse,
                 absl::StrCat("cannot tell whether '", path, "' is in use: ", std::strerror(error)),
                 {{"path", path}});
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Error(
        absl::StatusCode::kFailedPrecondition, reason::kSocketInUse,
        absl::StrCat("cannot remove the stale socket '", path, "': ", std::strerror(errno)),
        {{"path", path}});
  }
  return absl::OkStatus();
}

}  // namespace iommud
