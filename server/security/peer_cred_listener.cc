#include "server/security/peer_cred_listener.h"

#include <fcntl.h>
#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/server_credentials.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/sync.h"
#include "server/observability/log.h"
#include "server/security/caller_identity.h"
#include "server/unix_socket.h"

namespace iommud {
namespace {

// How long the accept loop pauses when the process is out of descriptors or memory.
constexpr int kAcceptBackoffMs = 100;

void LogLine(const std::string& line) { LogToStderr(LogLevel::kWarning, line); }

}  // namespace

// The (uid, gid) each identity slot stands for. Bound on a pair's first connection, never unbound.
class PeerIdentitySlots {
 public:
  explicit PeerIdentitySlots(int count) : identities_(count) {}

  // The slot of (uid, gid), binding a free one on first use; -1 when all are bound to others.
  int Bind(uint32_t uid, uint32_t gid) ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    auto it = index_.find({uid, gid});
    if (it != index_.end()) return it->second;
    if (index_.size() >= identities_.size()) return -1;
    const int slot = static_cast<int>(index_.size());
    identities_[slot] = Identity{true, uid, gid};
    index_.emplace(std::make_pair(uid, gid), slot);
    return slot;
  }

  // The pair slot `index` is bound to; false while it is free.
  bool Get(int index, uint32_t* uid, uint32_t* gid) const ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    const Identity& identity = identities_[index];
    *uid = identity.uid;
    *gid = identity.gid;
    return identity.bound;
  }

  int bound() const ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return static_cast<int>(index_.size());
  }

  // Serializes the check-then-stamp of auth contexts: gRPC hands every call of a connection the
  // connection's one auth context, and calls on one connection may be processed concurrently.
  absl::Mutex stamp_mu;

 private:
  struct Identity {
    bool bound = false;
    uint32_t uid = 0;
    uint32_t gid = 0;
  };
  mutable absl::Mutex mu_;
  std::vector<Identity> identities_ ABSL_GUARDED_BY(mu_);  // fixed size
  std::map<std::pair<uint32_t, uint32_t>, int> index_ ABSL_GUARDED_BY(mu_);
};

namespace {

// Runs for every call on a connection handed to slot `index`'s acceptor: adds iommud.peer_uid and
// iommud.peer_gid to the connection's auth context (once) from the slot's pair.
class SlotProcessor final : public grpc::AuthMetadataProcessor {
 public:
  SlotProcessor(std::shared_ptr<PeerIdentitySlots> slots, int index) : slots_(std::move(slots)), index_(index) {}

  bool IsBlocking() const override { return false; }  // no I/O: run inline

  grpc::Status Process(const InputMetadata& /*auth_metadata*/, grpc::AuthContext* context,
                       OutputMetadata* /*consumed_auth_metadata*/,
                       OutputMetadata* /*response_metadata*/) override {
    uint32_t uid = 0;
    uint32_t gid = 0;
    if (!slots_->Get(index_, &uid, &gid)) {
      // Cannot happen: a connection only reaches a bound slot's acceptor.
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no peer credentials");
    }
    MutexLock lock(&slots_->stamp_mu);
    if (context->FindPropertyValues(kPeerUidProperty).empty()) {
      context->AddProperty(kPeerUidProperty, absl::StrCat(uid));
      context->AddProperty(kPeerGidProperty, absl::StrCat(gid));
    }
    return grpc::Status::OK;
  }

 private:
  std::shared_ptr<PeerIdentitySlots> slots_;
  const int index_;
};

}  // namespace

PeerCredListener::PeerCredListener(PeerCredListenerOptions options)
    : options_(std::move(options)), slots_(std::make_shared<PeerIdentitySlots>(options_.max_identities)) {}

absl::StatusOr<std::unique_ptr<PeerCredListener>> PeerCredListener::Create(
    const PeerCredListenerOptions& options, grpc::ServerBuilder* builder) {
  if (options.max_identities < 1 || options.max_identities > kMaxPeerIdentitiesLimit) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFlag,
                 absl::StrCat("--max_unix_peer_identities must be in [1, ", kMaxPeerIdentitiesLimit,
                              "], not ", options.max_identities),
                 {{"flag", "max_unix_peer_identities"}});
  }
  std::unique_ptr<PeerCredListener> listener(new PeerCredListener(options));
  if (absl::Status listening = listener->Listen(); !listening.ok()) return listening;
  for (int i = 0; i < options.max_identities; ++i) {
    std::shared_ptr<grpc::ServerCredentials> credentials =
        grpc::experimental::LocalServerCredentials(UDS);
    credentials->SetAuthMetadataProcessor(std::make_shared<SlotProcessor>(listener->slots_, i));
    listener->acceptors_.push_back(builder->experimental().AddExternalConnectionAcceptor(
        grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD,
        std::move(credentials)));
  }
  if (options.metrics != nullptr) {
    listener->refused_ = &prometheus::BuildCounter()
                              .Name("iommud_unix_peers_refused_total")
                              .Help("Unix-socket connections closed at accept, by reason "
                                    "(not_allowed, no_credentials, identity_slots_exhausted).")
                              .Register(*options.metrics);
    listener->accepted_ = &prometheus::BuildCounter()
                               .Name("iommud_unix_peers_accepted_total")
                               .Help("Unix-socket connections admitted and handed to gRPC.")
                               .Register(*options.metrics)
                               .Add({});
  }
  return listener;
}

absl::Status PeerCredListener::Listen() {
  const std::string& path = options_.socket_path;
  if (pipe2(wake_fds_, O_CLOEXEC) != 0) {
    return Error(absl::StatusCode::kUnavailable, reason::kListenFailed,
                 absl::StrCat("cannot listen on unix:", path, ": pipe: ", std::strerror(errno)),
                 {{"socket", path}});
  }
  UnixSocketOptions socket;
  socket.path = path;
  socket.owner = options_.socket_owner;
  socket.group = options_.socket_group;
  socket.group_dir = options_.group_dir;
  absl::StatusOr<host::UniqueFd> listening = ListenUnixSocket(socket, SOCK_STREAM);
  if (!listening.ok()) return listening.status();
  listen_fd_ = listening->Release();
  return absl::OkStatus();
}

PeerCredListener::~PeerCredListener() {
  Stop();
  for (int& fd : wake_fds_) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
}

void PeerCredListener::Start() {
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

void PeerCredListener::Stop() {
  MutexLock lock(&stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  if (accept_thread_.joinable()) {
    const char byte = 0;
    while (write(wake_fds_[1], &byte, 1) < 0 && errno == EINTR) {
    }
    accept_thread_.join();
  }
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
    unlink(options_.socket_path.c_str());
  }
}

int PeerCredListener::bound_identities() const { return slots_->bound(); }

void PeerCredListener::AcceptLoop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fds_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      LogLine(absl::StrCat("unix listener: poll: ", std::strerror(errno)));
      return;
    }
    if (fds[1].revents != 0) return;  // Stop()
    if (fds[0].revents == 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int error = errno;
      if (error == EINTR || error == EAGAIN || error == ECONNABORTED) continue;
      LogLine(absl::StrCat("unix listener: accept: ", std::strerror(error)));
      // Out of descriptors or memory: give the server time to close some, unless stopping.
      pollfd wake = {wake_fds_[0], POLLIN, 0};
      if (poll(&wake, 1, kAcceptBackoffMs) > 0) return;
      continue;
    }
    HandleConnection(fd);
  }
}

void PeerCredListener::HandleConnection(int fd) {
  UnixPeer peer;
  int error = 0;
  if (!ReadUnixPeer(fd, /*with_groups=*/!options_.allow_gids.empty(), &peer, &error)) {
    Refuse(fd, nullptr, "no_credentials", absl::StrCat("SO_PEERCRED: ", std::strerror(error)));
    return;
  }
  if (!UnixPeerAllowed(peer, options_.allow_uids, options_.allow_gids)) {
    Refuse(fd, &peer, "not_allowed", "not in --allow_uids / --allow_gids");
    return;
  }
  const int slot = slots_->Bind(peer.uid, peer.gid);
  if (slot < 0) {
    Refuse(fd, &peer, "identity_slots_exhausted",
           absl::StrCat("all ", options_.max_identities,
                        " identity slots are taken by other uid/gid pairs "
                        "(--max_unix_peer_identities)"));
    return;
  }
  if (accepted_ != nullptr) accepted_->Increment();  // before the client can see its first reply
  grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters parameters;
  parameters.listener_fd = listen_fd_;
  parameters.fd = fd;  // gRPC owns it from here
  acceptors_[slot]->HandleNewConnection(&parameters);
}

void PeerCredListener::Refuse(int fd, const UnixPeer* peer, const char* reason,
                              const std::string& why) {
  // Logged and counted before the close, so that a client which sees its connection end can
  // already see why.
  LogLine(peer == nullptr
              ? absl::StrCat("refused a unix peer: ", reason, ": ", why)
              : absl::StrCat("refused unix peer uid ", peer->uid, " gid ", peer->gid, " pid ",
                             peer->pid, ": ", reason, ": ", why));
  if (refused_ != nullptr) refused_->Add({{"reason", reason}}).Increment();
  close(fd);
}

}  // namespace iommud
