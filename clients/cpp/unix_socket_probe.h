// A look at the socket file of a unix: target before a channel waits for it, so that a client can
// say "permission denied on SOCKET" at once instead of waiting out its connect timeout.
#ifndef IOMMUD_CLIENTS_CPP_UNIX_SOCKET_PROBE_H_
#define IOMMUD_CLIENTS_CPP_UNIX_SOCKET_PROBE_H_

#include <string>

#include "absl/status/status.h"

namespace iommud {

// The socket path of a "unix:PATH" or "unix:///PATH" target; "" for any other target (host:port,
// unix-abstract:, dns:, ...).
std::string UnixSocketPath(const std::string& target);

// For a unix: target, whether the caller may connect to its socket (access(2) with W_OK on the
// path, which also needs search permission on every directory above it):
//  - PERMISSION_DENIED (SOCKET_PERMISSION_DENIED, metadata socket, target) when it may not;
//  - UNAVAILABLE (CONNECT_FAILED, metadata socket, target) when the path exists and is not a
//    socket;
//  - OK otherwise, including when the socket does not exist (yet: the caller may be waiting for
//    the daemon to start) and for targets that are not unix:.
absl::Status CheckUnixSocketAccess(const std::string& target);

// Whether a unix: target's socket path exists (false for other targets).
bool UnixSocketExists(const std::string& target);

}  // namespace iommud

#endif  // IOMMUD_CLIENTS_CPP_UNIX_SOCKET_PROBE_H_
