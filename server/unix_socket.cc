#include "server/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "server/security/unix_ids.h"

namespace iommud {
namespace {

constexpr mode_t kSocketMode = 0660;

absl::Status ListenFailed(const std::string& path, absl::string_view step, int error) {
  return Error(absl::StatusCode::kUnavailable, reason::kListenFailed,
               absl::StrCat("cannot listen on unix:", path, ": ", step, ": ", std::strerror(error)),
               {{"socket", path}});
}

bool Contains(const std::vector<uint32_t>& ids, uint32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

absl::StatusOr<host::UniqueFd> ListenUnixSocket(const UnixSocketOptions& options, int type) {
  const std::string& path = options.path;
  sockaddr_un address = {};
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kSocketPathTooLong,
                 absl::StrCat("unix socket path '", path, "' must have 1 to ",
                              sizeof(address.sun_path) - 1, " bytes"),
                 {{"path", path}});
  }
  int owner = -1;
  int group = -1;
  if (!options.owner.empty()) {
    absl::StatusOr<uint32_t> uid = ResolveUser(options.owner);
    if (!uid.ok()) return uid.status();
    owner = static_cast<int>(*uid);
  }
  if (!options.group.empty()) {
    absl::StatusOr<uint32_t> gid = ResolveGroup(options.group);
    if (!gid.ok()) return gid.status();
    group = static_cast<int>(*gid);
  }
  host::UniqueFd fd(socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ListenFailed(path, "socket", errno);
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    // Nothing of ours to remove: the path was someone else's.
    return ListenFailed(path, "bind", errno);
  }
  // Not listening yet, so nobody can connect while the mode and owner are still the defaults.
  auto fail = [&](absl::Status status) {
    unlink(path.c_str());
    return status;
  };
  if (chmod(path.c_str(), kSocketMode) != 0) {
    return fail(Error(absl::StatusCode::kFailedPrecondition, reason::kSocketChmodFailed,
                      absl::StrCat("cannot set mode 0660 on '", path, "': ", std::strerror(errno)),
                      {{"path", path}}));
  }
  if ((owner != -1 || group != -1) && chown(path.c_str(), owner, group) != 0) {
    return fail(Error(absl::StatusCode::kFailedPrecondition, reason::kSocketChownFailed,
                      absl::StrCat("cannot give '", path, "' owner '", options.owner, "' group '",
                                   options.group, "': ", std::strerror(errno)),
                      {{"path", path},
                       {"socket_owner", options.owner},
                       {"socket_group", options.group}}));
  }
  if (group != -1 && !options.group_dir.empty() &&
      chown(options.group_dir.c_str(), -1, group) != 0) {
    return fail(Error(absl::StatusCode::kFailedPrecondition, reason::kSocketChownFailed,
                      absl::StrCat("cannot give '", options.group_dir, "' group '", options.group,
                                   "': ", std::strerror(errno)),
                      {{"path", options.group_dir}, {"socket_group", options.group}}));
  }
  if (listen(fd.get(), SOMAXCONN) != 0) return fail(ListenFailed(path, "listen", errno));
  return fd;
}

bool ReadUnixPeer(int fd, bool with_groups, UnixPeer* peer, int* error) {
  ucred credentials = {};
  socklen_t length = sizeof(credentials);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    *error = errno;
    return false;
  }
  peer->uid = credentials.uid;
  peer->gid = credentials.gid;
  peer->pid = credentials.pid;
  peer->groups.clear();
  if (!with_groups) return true;
  std::vector<gid_t> groups(32);
  for (;;) {
    socklen_t size = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &size) == 0) {
      groups.resize(size / sizeof(gid_t));
      peer->groups.assign(groups.begin(), groups.end());
      return true;
    }
    if (errno != ERANGE || size / sizeof(gid_t) <= groups.size()) return true;  // primary gid only
    groups.resize(size / sizeof(gid_t));
  }
}

bool UnixPeerAllowed(const UnixPeer& peer, const std::vector<uint32_t>& allow_uids,
                     const std::vector<uint32_t>& allow_gids) {
  if (allow_uids.empty() && allow_gids.empty()) return true;
  if (Contains(allow_uids, peer.uid)) return true;
  if (Contains(allow_gids, peer.gid)) return true;
  for (uint32_t gid : peer.groups) {
    if (Contains(allow_gids, gid)) return true;
  }
  return false;
}

}  // namespace iommud
