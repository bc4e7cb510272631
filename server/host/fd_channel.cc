#include "server/host/fd_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/fd_passing.h"
#include "core/sync.h"
#include "proto/status_codec.h"

namespace iommud {
namespace {

// How long the serving thread pauses when accept fails for lack of descriptors or memory.
constexpr int kAcceptBackoffMs = 100;
// The smallest --fd_channel message limit that still fits a request.
constexpr size_t kMinMessageBytes = 64;

void LogLine(const std::string& line) {
  std::fprintf(stderr, "iommud: fd channel: %s\n", line.c_str());
}

}  // namespace

absl::StatusOr<std::unique_ptr<FdChannel>> FdChannel::Create(FdChannelOptions options,
                                                             const Authorizer* authorizer,
                                                             FdChannelOps* ops) {
  if (options.max_connections < 1) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFlag,
                 absl::StrCat("--fd_channel_max_connections must be at least 1, not ",
                              options.max_connections),
                 {{"flag", "fd_channel_max_connections"},
                  {"value", absl::StrCat(options.max_connections)}});
  }
  if (options.max_message_bytes < kMinMessageBytes) {
    // Not a flag: a caller's mistake (FdChannelOptions has a sane default).
    return absl::InvalidArgumentError(
        absl::StrCat("the fd channel's message limit must be at least ", kMinMessageBytes,
                     " bytes, not ", options.max_message_bytes));
  }
  std::unique_ptr<FdChannel> channel(new FdChannel(std::move(options), authorizer, ops));
  int wake[2];
  if (pipe2(wake, O_CLOEXEC) != 0) {
    return Error(absl::StatusCode::kUnavailable, reason::kListenFailed,
                 absl::StrCat("cannot listen on unix:", channel->socket_path(), ": pipe: ",
                              std::strerror(errno)),
                 {{"socket", channel->socket_path()}});
  }
  channel->wake_read_.Reset(wake[0]);
  channel->wake_write_.Reset(wake[1]);
  absl::StatusOr<host::UniqueFd> listening =
      ListenUnixSocket(channel->options_.socket, SOCK_SEQPACKET);
  if (!listening.ok()) return listening.status();
  channel->listen_fd_ = std::move(*listening);
  if (channel->options_.metrics != nullptr) {
    channel->requests_ = &prometheus::BuildCounter()
                              .Name("iommud_fd_channel_requests_total")
                              .Help("Requests of the fd side channel, by op (register_memory, "
                                    "open_device, malformed) and result (OK or the reason).")
                              .Register(*channel->options_.metrics);
    channel->closed_ = &prometheus::BuildCounter()
                            .Name("iommud_fd_channel_connections_closed_total")
                            .Help("Fd-channel connections the daemon closed or refused, by reason.")
                            .Register(*channel->options_.metrics);
  }
  return channel;
}

FdChannel::FdChannel(FdChannelOptions options, const Authorizer* authorizer, FdChannelOps* ops)
    : options_(std::move(options)), authorizer_(authorizer), handler_(authorizer, ops) {}

FdChannel::~FdChannel() { Stop(); }

void FdChannel::Start() {
  thread_ = std::thread([this] { Serve(); });
}

void FdChannel::Stop() {
  MutexLock lock(&stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  if (thread_.joinable()) {
    const char byte = 0;
    while (write(wake_write_.get(), &byte, 1) < 0 && errno == EINTR) {
    }
    thread_.join();  // closes every connection on its way out
  }
  if (listen_fd_.valid()) {
    listen_fd_.Reset();
    unlink(options_.socket.path.c_str());
  }
}

void FdChannel::CountClosed(const char* reason) {
  if (closed_ != nullptr) closed_->Add({{"reason", reason}}).Increment();
}

void FdChannel::Serve() {
  std::vector<Connection> connections;
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({wake_read_.get(), POLLIN, 0});
    fds.push_back({listen_fd_.get(), POLLIN, 0});
    absl::Time now = absl::Now();
    absl::Duration wait = options_.idle_timeout;
    for (const Connection& connection : connections) {
      fds.push_back({connection.fd.get(), POLLIN, 0});
      wait = std::min(wait, connection.last_active + options_.idle_timeout - now);
    }
    const int timeout_ms = static_cast<int>(
        std::max<int64_t>(0, absl::ToInt64Milliseconds(absl::Ceil(wait, absl::Milliseconds(1)))));
    if (poll(fds.data(), fds.size(), timeout_ms) < 0) {
      if (errno == EINTR) continue;
      LogLine(absl::StrCat("poll: ", std::strerror(errno)));
      return;
    }
    if (fds[0].revents != 0) return;  // Stop()
    now = absl::Now();
    std::vector<Connection> kept;
    kept.reserve(connections.size());
    for (size_t i = 0; i < connections.size(); ++i) {
      Connection& connection = connections[i];
      const short events = fds[i + 2].revents;
      const char* why = nullptr;
      if (events & POLLIN) {
        connection.last_active = now;
        if (!ServeOne(connection, &why)) {
          CountClosed(why);
          continue;
        }
      } else if (events & (POLLHUP | POLLERR | POLLNVAL)) {
        CountClosed("peer_closed");
        continue;
      } else if (now - connection.last_active >= options_.idle_timeout) {
        CountClosed("idle");
        continue;
      }
      kept.push_back(std::move(connection));
    }
    connections = std::move(kept);
    if (fds[1].revents & POLLIN) Accept(&connections);
  }
}

void FdChannel::Accept(std::vector<Connection>* connections) {
  host::UniqueFd fd(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (!fd.valid()) {
    const int error = errno;
    if (error == EINTR || error == EAGAIN || error == ECONNABORTED) return;
    LogLine(absl::StrCat("accept: ", std::strerror(error)));
    // Out of descriptors or memory: give the daemon time to close some, unless stopping.
    pollfd wake = {wake_read_.get(), POLLIN, 0};
    poll(&wake, 1, kAcceptBackoffMs);
    return;
  }
  UnixPeer peer;
  int error = 0;
  if (!ReadUnixPeer(fd.get(), /*with_groups=*/!options_.allow_gids.empty(), &peer, &error)) {
    LogLine(absl::StrCat("refused a peer: no_credentials: SO_PEERCRED: ", std::strerror(error)));
    CountClosed("no_credentials");
    return;
  }
  const std::string who =
      absl::StrCat("uid ", peer.uid, " gid ", peer.gid, " pid ", peer.pid);
  if (!UnixPeerAllowed(peer, options_.allow_uids, options_.allow_gids)) {
    LogLine(absl::StrCat("refused peer ", who, ": not_allowed: not in --allow_uids / --allow_gids"));
    CountClosed("not_allowed");
    return;
  }
  if (connections->size() >= static_cast<size_t>(options_.max_connections)) {
    LogLine(absl::StrCat("refused peer ", who, ": too_many_connections: ",
                         options_.max_connections, " are open"));
    CountClosed("too_many_connections");
    return;
  }
  Connection connection;
  connection.fd = std::move(fd);
  connection.identity =
      UnixPeerIdentity(peer.uid, peer.gid, peer.pid, authorizer_->identity_options());
  connection.last_active = absl::Now();
  connections->push_back(std::move(connection));
}

bool FdChannel::ServeOne(Connection& connection, const char** why) {
  absl::StatusOr<host::ReceivedFds> received =
      host::ReceiveFds(connection.fd.get(), options_.max_message_bytes);
  FdReply reply;
  if (received.ok()) {
    reply = handler_.Handle(connection.identity, *std::move(received));
  } else if (received.status().code() == absl::StatusCode::kResourceExhausted) {
    // Too long, or too many descriptors: the datagram is consumed and its descriptors closed.
    reply.op = "malformed";
    *reply.response.mutable_status() = ToRpcStatus(received.status());
  } else {
    *why = received.status().code() == absl::StatusCode::kUnavailable ? "peer_closed"
                                                                       : "receive_failed";
    return false;
  }
  if (requests_ != nullptr) {
    const std::string reason = ErrorReason(FromRpcStatus(reply.response.status()));
    requests_->Add({{"op", reply.op}, {"result", reason.empty() ? "OK" : reason}}).Increment();
  }
  std::vector<int> fds;
  if (reply.fd.valid()) fds.push_back(reply.fd.get());
  // Non-blocking: a client that does not read its replies is dropped rather than waited for.
  if (!host::SendFds(connection.fd.get(), reply.response.SerializeAsString(), fds).ok()) {
    *why = "send_failed";
    return false;
  }
  return true;
}

}  // namespace iommud
