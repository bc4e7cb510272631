// PeerCredListener: the daemon's unix socket, accepted by the daemon itself so that every caller is
// identified by the kernel (SO_PEERCRED), not by anything it says.
//
// gRPC C++ does not read peer credentials, so the daemon binds and listens on the socket, and an
// accept thread reads SO_PEERCRED (and SO_PEERGROUPS) of each connection, checks the uid/gid
// allow-list and hands the fd to the gRPC server through an external connection acceptor.
//
// How the uid reaches the call: the auth context of a handed-over connection carries nothing about
// the peer, and an AuthMetadataProcessor never sees the fd. So the listener registers a fixed set
// of acceptors ("identity slots"), each with its own local (UDS) server credentials whose
// AuthMetadataProcessor stamps the auth-context properties iommud.peer_uid / iommud.peer_gid
// (server/security/caller_identity.h) with the (uid, gid) that slot stands for. A slot is bound to
// a (uid, gid) on that pair's first connection and stays bound for the listener's lifetime; a
// connection is handed to the acceptor of its own pair's slot, so every call on it sees exactly its
// peer's credentials. When all slots are bound, a connection of a new pair is refused (logged and
// counted). The peer's pid is not stamped: pids are reused, uid/gid are what authorize.
//
// Refused peers (not allowed, no credentials, no free slot) are closed at once — the client sees
// UNAVAILABLE — logged on stderr, and counted in iommud_unix_peers_refused_total{reason}
// (reason: not_allowed, no_credentials, identity_slots_exhausted); admitted ones in
// iommud_unix_peers_accepted_total.
//
// Life cycle (the order matters, the daemon follows it):
//   Create(..., &builder)   before builder.BuildAndStart(): binds, chmods, chowns, listens and
//                           registers the acceptors;
//   Start()                 after BuildAndStart(): starts the accept thread;
//   Stop()                  before Server::Shutdown(): joins the accept thread, closes the
//                           listening socket and unlinks its path (connections already handed over
//                           stay with gRPC, which ends them in its own Shutdown).
#ifndef IOMMUD_SERVER_SECURITY_PEER_CRED_LISTENER_H_
#define IOMMUD_SERVER_SECURITY_PEER_CRED_LISTENER_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/server_builder.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/unix_socket.h"

namespace iommud {

struct PeerCredListenerOptions {
  std::string socket_path;
  // The socket's owner and group: a name or a number; "" = the daemon's. The socket's mode is 0660.
  std::string socket_owner;
  std::string socket_group;
  // A directory (the state directory, when the socket lives in it) that gets --socket_group as its
  // group too, so the group's members can reach the socket; "" = none.
  std::string group_dir;
  // Which peers may connect. Both empty: everyone who can open the socket (the policy still
  // authorizes every call). Otherwise a peer is admitted when its uid is in allow_uids, or its
  // gid or one of its supplementary groups (SO_PEERGROUPS) is in allow_gids.
  std::vector<uint32_t> allow_uids;
  std::vector<uint32_t> allow_gids;
  // How many distinct (uid, gid) pairs the listener can tell apart over its lifetime.
  int max_identities = 64;
  // Where the refused/accepted counters go; nullptr = none.
  prometheus::Registry* metrics = nullptr;
};

inline constexpr int kMaxPeerIdentitiesLimit = 4096;

class PeerIdentitySlots;  // which (uid, gid) each acceptor stands for (peer_cred_listener.cc)

class PeerCredListener {
 public:
  // Binds `options.socket_path` (which must not exist: RemoveStaleSocket first), sets its mode 0660
  // and owner/group, listens, and adds max_identities external connection acceptors to `builder`.
  // Errors: INVALID_ARGUMENT (UNKNOWN_USER, UNKNOWN_GROUP, INVALID_FLAG for max_identities outside
  // [1, kMaxPeerIdentitiesLimit]); FAILED_PRECONDITION (SOCKET_CHOWN_FAILED, SOCKET_CHMOD_FAILED);
  // UNAVAILABLE (LISTEN_FAILED) when the socket cannot be created, bound or listened on. On error
  // nothing is left bound and the path is removed.
  static absl::StatusOr<std::unique_ptr<PeerCredListener>> Create(
      const PeerCredListenerOptions& options, grpc::ServerBuilder* builder);

  // Stop().
  ~PeerCredListener();
  PeerCredListener(const PeerCredListener&) = delete;
  PeerCredListener& operator=(const PeerCredListener&) = delete;

  // Starts the accept thread; call once, after the server is built and started.
  void Start();

  // Stops accepting: wakes and joins the accept thread, closes the listening socket, unlinks the
  // socket path. Idempotent; thread-safe.
  void Stop();

  const std::string& socket_path() const { return options_.socket_path; }
  // How many identity slots are bound so far.
  int bound_identities() const;

 private:
  explicit PeerCredListener(PeerCredListenerOptions options);
  absl::Status Listen();
  void AcceptLoop();
  void HandleConnection(int fd);
  void Refuse(int fd, const UnixPeer* peer, const char* reason, const std::string& why);

  PeerCredListenerOptions options_;
  int listen_fd_ = -1;
  int wake_fds_[2] = {-1, -1};  // a pipe: writing to [1] ends the accept loop
  // Shared with the slots' AuthMetadataProcessors, which gRPC may keep past the listener.
  std::shared_ptr<PeerIdentitySlots> slots_;
  // One per slot; filled by Create, read-only afterwards.
  std::vector<std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor>> acceptors_;
  std::thread accept_thread_;
  prometheus::Family<prometheus::Counter>* refused_ = nullptr;
  prometheus::Counter* accepted_ = nullptr;

  absl::Mutex stop_mu_;
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_SECURITY_PEER_CRED_LISTENER_H_
