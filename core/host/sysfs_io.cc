#include "core/host/sysfs_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/error_reasons.h"
#include "core/host/errno_error.h"
#include "core/host/unique_fd.h"

namespace iommud {
namespace host {

absl::StatusOr<std::string> ReadSysfsAttribute(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    return ErrnoError(err == ENOENT ? absl::StatusCode::kNotFound : CodeForErrno(err),
                      reason::kSysfsReadFailed, absl::StrCat("cannot open ", path), err,
                      {{"path", path}});
  }
  std::string content;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      return ErrnoError(CodeForErrno(err), reason::kSysfsReadFailed,
                        absl::StrCat("cannot read ", path), err, {{"path", path}});
    }
    if (n == 0) break;
    content.append(buffer, static_cast<size_t>(n));
  }
  absl::StripTrailingAsciiWhitespace(&content);
  return content;
}

absl::Status WriteSysfsAttribute(const std::string& path, absl::string_view value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    return ErrnoError(err == ENOENT ? absl::StatusCode::kNotFound : CodeForErrno(err),
                      reason::kSysfsWriteFailed,
                      absl::StrCat("cannot open ", path, " for writing"), err, {{"path", path}});
  }
  ssize_t n;
  do {
    n = ::write(fd.get(), value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kSysfsWriteFailed,
                      absl::StrCat("writing \"", value, "\" to ", path, " failed"), err,
                      {{"path", path}});
  }
  if (static_cast<size_t>(n) != value.size()) {
    return Error(absl::StatusCode::kInternal, reason::kSysfsWriteFailed,
                 absl::StrCat("short write of \"", value, "\" to ", path), {{"path", path}});
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadSysfsLinkName(const std::string& path) {
  char target[PATH_MAX];
  const ssize_t n = ::readlink(path.c_str(), target, sizeof(target) - 1);
  if (n < 0) {
    const int err = errno;
    if (err == ENOENT) return std::string();
    return ErrnoError(CodeForErrno(err), reason::kSysfsReadFailed,
                      absl::StrCat("cannot read link ", path), err, {{"path", path}});
  }
  const std::string link(target, static_cast<size_t>(n));
  const size_t slash = link.find_last_of('/');
  return slash == std::string::npos ? link : link.substr(slash + 1);
}

absl::StatusOr<std::vector<std::string>> ListSysfsDirectory(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    const int err = errno;
    return ErrnoError(err == ENOENT ? absl::StatusCode::kNotFound : CodeForErrno(err),
                      reason::kSysfsReadFailed, absl::StrCat("cannot list ", path), err,
                      {{"path", path}});
  }
  std::vector<std::string> names;
  while (const dirent* entry = ::readdir(dir)) {
    const absl::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

bool SysfsPathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace host
}  // namespace iommud
