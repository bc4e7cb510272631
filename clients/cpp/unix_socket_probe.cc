#include "clients/cpp/unix_socket_probe.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {

std::string UnixSocketPath(const std::string& target) {
  if (!absl::StartsWith(target, "unix:")) return "";
  std::string path = target.substr(5);
  if (absl::StartsWith(path, "//")) path = path.substr(2);  // unix:///abs/path
  return path;
}

absl::Status CheckUnixSocketAccess(const std::string& target) {
  const std::string path = UnixSocketPath(target);
  if (path.empty()) return absl::OkStatus();
  if (access(path.c_str(), W_OK) != 0) {
    const int error = errno;
    if (error == EACCES || error == EPERM) {
      return Error(absl::StatusCode::kPermissionDenied, reason::kSocketPermissionDenied,
                   absl::StrCat("permission denied on ", path,
                                " (iommud's socket: connecting needs write permission on it and "
                                "search permission on its directories; is this user in the "
                                "socket's group?)"),
                   {{"socket", path}, {"target", target}});
    }
    return absl::OkStatus();  // ENOENT and the like: the channel's wait says it
  }
  struct stat info {};
  if (stat(path.c_str(), &info) == 0 && !S_ISSOCK(info.st_mode)) {
    return Error(absl::StatusCode::kUnavailable, reason::kConnectFailed,
                 absl::StrCat(path, " is not a socket (is the target right?)"),
                 {{"socket", path}, {"target", target}});
  }
  return absl::OkStatus();
}

bool UnixSocketExists(const std::string& target) {
  const std::string path = UnixSocketPath(target);
  struct stat info {};
  return !path.empty() && stat(path.c_str(), &info) == 0;
}

}  // namespace iommud
