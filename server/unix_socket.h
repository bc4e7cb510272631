// The daemon's listening unix sockets and their peers, shared by the gRPC socket
// (server/security/peer_cred_listener.h) and the fd channel (server/host/fd_channel.h): binding a
// socket with its mode, owner and group, and reading and admitting a connected peer's kernel
// credentials. Stateless functions; thread-safe.
#ifndef IOMMUD_SERVER_UNIX_SOCKET_H_
#define IOMMUD_SERVER_UNIX_SOCKET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/host/unique_fd.h"

namespace iommud {

struct UnixSocketOptions {
  std::string path;
  // The socket's owner and group: a name or a number; "" = the daemon's. The mode is always 0660.
  std::string owner;
  std::string group;
  // A directory (the state directory, when the socket lives in it) that gets `group` as its group
  // too, so that the group's members can reach the socket; "" = none.
  std::string group_dir;
};

// Creates a unix socket of `type` (SOCK_STREAM, SOCK_SEQPACKET), binds it to options.path (which
// must not exist: RemoveStaleSocket first), sets mode 0660 and the owner/group before listening
// (nobody can connect while they are still the defaults), and listens. The returned listening
// socket is close-on-exec and blocking; the caller owns it and unlinks the path when done.
// Errors: INVALID_ARGUMENT (SOCKET_PATH_TOO_LONG, UNKNOWN_USER, UNKNOWN_GROUP); FAILED_PRECONDITION
// (SOCKET_CHMOD_FAILED, SOCKET_CHOWN_FAILED); UNAVAILABLE (LISTEN_FAILED) when the socket cannot be
// created, bound or listened on. On error nothing is left bound and a path this call bound is
// removed.
absl::StatusOr<host::UniqueFd> ListenUnixSocket(const UnixSocketOptions& options, int type);

// What the kernel says about the process at the other end of a connected unix socket.
struct UnixPeer {
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t pid = 0;
  std::vector<uint32_t> groups;  // supplementary groups, when asked for and the kernel reports them
};

// SO_PEERCRED of `fd` (and SO_PEERGROUPS when `with_groups`: left empty if the kernel cannot say).
// The errno of getsockopt when the credentials cannot be read (returned as its positive value in
// `*error`; then the result is meaningless and false is returned).
bool ReadUnixPeer(int fd, bool with_groups, UnixPeer* peer, int* error);

// The allow-list of --allow_uids/--allow_gids: both empty admits everyone; otherwise the peer's
// uid must be in `allow_uids`, or its gid or one of its supplementary groups in `allow_gids`.
bool UnixPeerAllowed(const UnixPeer& peer, const std::vector<uint32_t>& allow_uids,
                     const std::vector<uint32_t>& allow_gids);

}  // namespace iommud

#endif  // IOMMUD_SERVER_UNIX_SOCKET_H_
