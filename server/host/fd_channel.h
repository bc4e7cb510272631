// FdChannel: the daemon's fd side channel, a unix SOCK_SEQPACKET socket (--fd_socket, default the
// gRPC socket's path + ".fds") over which VMMs pass what gRPC cannot carry: file descriptors
// (SCM_RIGHTS). Requests and replies are proto/iommu/v1/fd_channel.proto, one per datagram; the
// request path is FdChannelHandler's (server/host/fd_channel_handler.h).
//
// Callers are identified exactly as on the gRPC unix socket: the socket has the same mode, owner
// and group (and the state directory the same group), a connection is admitted by the same
// --allow_uids/--allow_gids list at accept, and each request is authorized from SO_PEERCRED by the
// daemon's Authorizer (the same principal "uid:<n>", role and denial reasons).
//
// Threads: one serving thread accepts and serves every connection with poll(), so a slow or
// malicious client cannot hold up the others:
//   - at most `max_connections` connections at once; a further one is closed at accept;
//   - a connection is only read when poll says a datagram is there, and each datagram is at most
//     `max_message_bytes` (a longer one is answered RESOURCE_EXHAUSTED FD_RECEIVE_FAILED; its
//     descriptors are closed) with at most 16 descriptors;
//   - replies are sent without blocking: a client whose socket buffer is full (it does not read
//     its replies) or that went away is disconnected (the op it asked for did happen);
//   - a connection idle for `idle_timeout` is closed.
// The ops (FdChannelOps) run on the serving thread, one request at a time.
//
// Metrics (when options.metrics is set): iommud_fd_channel_requests_total{op,result} (op:
// register_memory, open_device, malformed; result: OK or the error's reason) and
// iommud_fd_channel_connections_closed_total{reason} (too_many_connections, not_allowed,
// no_credentials, idle, send_failed, peer_closed, receive_failed).
//
// Life cycle: Create binds and listens (the path must not exist: RemoveStaleSocket first), Start
// starts the thread, Stop (or the destructor) joins it, closes every connection and unlinks the
// path.
#ifndef IOMMUD_SERVER_HOST_FD_CHANNEL_H_
#define IOMMUD_SERVER_HOST_FD_CHANNEL_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/host/unique_fd.h"
#include "server/host/fd_channel_handler.h"
#include "server/host/fd_channel_ops.h"
#include "server/security/authorizer.h"
#include "server/unix_socket.h"

namespace iommud {

struct FdChannelOptions {
  UnixSocketOptions socket;  // path, owner, group, group_dir: as the gRPC socket's
  // Which peers may connect (as PeerCredListenerOptions): both empty = everyone who can open it.
  std::vector<uint32_t> allow_uids;
  std::vector<uint32_t> allow_gids;
  int max_connections = 64;
  size_t max_message_bytes = 4096;
  absl::Duration idle_timeout = absl::Minutes(10);
  prometheus::Registry* metrics = nullptr;  // not owned; null: no metrics
};

class FdChannel {
 public:
  // Binds and listens (errors of ListenUnixSocket, server/unix_socket.h; INVALID_ARGUMENT
  // INVALID_FLAG for max_connections < 1, INVALID_ARGUMENT for max_message_bytes < 64). `authorizer` and `ops` are
  // not owned and must outlive the channel.
  static absl::StatusOr<std::unique_ptr<FdChannel>> Create(FdChannelOptions options,
                                                           const Authorizer* authorizer,
                                                           FdChannelOps* ops);
  ~FdChannel();  // Stop()
  FdChannel(const FdChannel&) = delete;
  FdChannel& operator=(const FdChannel&) = delete;

  // Starts the serving thread; call once.
  void Start();
  // Stops serving: joins the thread, closes the listening socket and every connection, unlinks
  // the path. Idempotent; thread-safe.
  void Stop();

  const std::string& socket_path() const { return options_.socket.path; }

 private:
  struct Connection {
    host::UniqueFd fd;
    CallerIdentity identity;
    absl::Time last_active;
  };

  FdChannel(FdChannelOptions options, const Authorizer* authorizer, FdChannelOps* ops);
  void Serve();
  void Accept(std::vector<Connection>* connections);
  // Serves one datagram of `connection`; false when the connection is to be closed (`*why` says why).
  bool ServeOne(Connection& connection, const char** why);
  void CountClosed(const char* reason);

  const FdChannelOptions options_;
  const Authorizer* const authorizer_;
  const FdChannelHandler handler_;
  host::UniqueFd listen_fd_;
  host::UniqueFd wake_read_;   // Stop() writes to wake_write_ to end the serving thread
  host::UniqueFd wake_write_;
  std::thread thread_;
  prometheus::Family<prometheus::Counter>* requests_ = nullptr;
  prometheus::Family<prometheus::Counter>* closed_ = nullptr;

  absl::Mutex stop_mu_;
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_HOST_FD_CHANNEL_H_
