// Limits: what one client, one call and one connection may use of the daemon, so that no client
// (buggy or hostile) can exhaust its memory or starve the others. Exceeding a limit is
// RESOURCE_EXHAUSTED, never a crash, and changes nothing.
//
// Transport (gRPC's own checks, set on the ServerBuilder by ApplyTransportLimits):
//   max_message_bytes       a received message larger than this is refused by gRPC itself
//                           (RESOURCE_EXHAUSTED, no ErrorInfo) before any handler runs;
//   max_send_message_bytes  a response larger than this fails its call (the C++ client's own
//                           receive limit is 4 MiB);
//   max_concurrent_streams  HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS of each connection (calls
//                           beyond it queue in the client);
//   max_grpc_memory_bytes   gRPC's ResourceQuota: the memory all connections' buffers may take;
//                           under pressure gRPC shrinks read buffers and refuses new
//                           connections and streams rather than growing.
// Per principal (the caller's identity, caller_identity.h), by ClientLimiter:
//   rate_per_client/burst_per_client  a token bucket over every iommu.v1.Iommu call, watch
//                           start, KeepLease stream start and KeepLease message (RATE_LIMITED;
//                           rate 0 = unlimited);
//   max_calls_per_client    unary calls and KeepLease streams in flight at once (TOO_MANY_CALLS;
//                           a stream holds its slot for its whole life);
//   max_watchers_per_client, max_watchers  open WatchEvents streams of one principal and of
//                           everyone (TOO_MANY_WATCHERS); each stream's queue is bounded too
//                           (WatchEventsRequest.queue_size <= 65536; a watcher that falls behind
//                           gets RESYNC and a new snapshot, core/event_bus.h);
//   max_tracked_clients     principals tracked at once; idle ones (nothing in flight, bucket full)
//                           are forgotten, and a new principal beyond the cap while all tracked
//                           ones are busy is TOO_MANY_CLIENTS.
// Per request (request_bounds.h): string/repeated field sizes, Map size, page sizes.
// grpc.health.v1.Health and reflection are not limited (apart from the transport limits).
//
// Every refusal carries an ErrorInfo with the reason and metadata {principal, limit, ...} and
// counts in iommud_limited_total{reason}.
#ifndef IOMMUD_SERVER_SECURITY_LIMITS_H_
#define IOMMUD_SERVER_SECURITY_LIMITS_H_

#include <grpcpp/grpcpp.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "iommu/v1/iommu.pb.h"
#include "server/api/request_bounds.h"

namespace iommud {

// Defaults are generous: the RPC benchmarks (tests/bench/rpc_bench.sh, ~60k calls/s from one
// principal) only pass --rate_per_client=0 to measure gRPC rather than the limit.
struct Limits {
  int max_message_bytes = 1 << 20;       // 1 MiB (requests are < 1 KiB)
  int max_send_message_bytes = 4 << 20;  // 4 MiB
  int max_concurrent_streams = 256;
  int64_t max_grpc_memory_bytes = int64_t{256} << 20;  // 256 MiB
  double rate_per_client = 20000;  // calls/s; 0 = unlimited
  double burst_per_client = 40000;
  int max_calls_per_client = 256;
  int max_watchers = 256;
  int max_watchers_per_client = 64;
  int max_tracked_clients = 4096;
  // Bytes of process memory (memory regions of the fd channel) one owner may have mapped at once;
  // beyond it Map is refused with PINNED_MEMORY_LIMIT (RegistryOptions). 0 = unlimited.
  uint64_t max_pinned_bytes_per_owner = 0;
  RequestBounds request;

  // INVALID_ARGUMENT (INVALID_FLAG, naming the flag) for a non-positive size or count, a negative
  // rate, or a burst below 1 with a rate set.
  absl::Status Validate() const;
};

// Sets the transport limits on `builder`.
void ApplyTransportLimits(const Limits& limits, grpc::ServerBuilder* builder);

// The reasons of the refusals (ErrorInfo.reason and the iommud_limited_total label) are
// reason::kRateLimited, kTooManyCalls, kTooManyWatchers, kTooManyClients and kRequestTooLarge
// (core/error_reasons.h, "Limits").

class ClientLimiter {
 public:
  // `clock` (not owned; Clock::Real() in the daemon, a ManualClock in tests) drives the token
  // buckets. iommud_limited_total is registered on `metrics` (not owned; null: not counted).
  explicit ClientLimiter(const Limits& limits, const Clock* clock = Clock::Real(),
                         prometheus::Registry* metrics = nullptr);
  ClientLimiter(const ClientLimiter&) = delete;
  ClientLimiter& operator=(const ClientLimiter&) = delete;

  // One admitted call or watcher; gives its slot back when destroyed (or reset). Move-only. Must
  // not outlive the limiter.
  class Permit {
   public:
    Permit() = default;
    Permit(Permit&& other) noexcept { *this = std::move(other); }
    Permit& operator=(Permit&& other) noexcept;
    ~Permit() { reset(); }
    void reset();
    bool held() const { return limiter_ != nullptr; }

   private:
    friend class ClientLimiter;
    enum class Kind { kCall, kWatcher };
    Permit(ClientLimiter* limiter, std::string principal, Kind kind)
        : limiter_(limiter), principal_(std::move(principal)), kind_(kind) {}
    ClientLimiter* limiter_ = nullptr;
    std::string principal_;
    Kind kind_ = Kind::kCall;
  };

  // A unary call of `principal`: one token (RATE_LIMITED) and one in-flight slot (TOO_MANY_CALLS)
  // held by the permit.
  absl::StatusOr<Permit> AdmitCall(absl::string_view principal) ABSL_LOCKS_EXCLUDED(mu_);
  // One message of a stream `principal` holds a call permit for (a KeepLease renewal): one token
  // (RATE_LIMITED).
  absl::Status AdmitMessage(absl::string_view principal) ABSL_LOCKS_EXCLUDED(mu_);
  // A WatchEvents stream: one token, and a watcher slot of the principal and of the daemon
  // (TOO_MANY_WATCHERS) held by the permit for the stream's life.
  absl::StatusOr<Permit> AdmitWatcher(absl::string_view principal) ABSL_LOCKS_EXCLUDED(mu_);

  // The request bounds of `request` (CheckFieldBounds; CheckMapSize for a MapRequest), with the
  // principal added to the error's metadata and the refusal counted.
  template <typename Request>
  absl::Status CheckRequest(absl::string_view principal, const Request& request) const {
    absl::Status status = CheckFieldBounds(request, limits_.request);
    if constexpr (std::is_same_v<Request, iommu::v1::MapRequest>) {
      if (status.ok()) status = CheckMapSize(request.size(), limits_.request);
    }
    return status.ok() ? status : Refused(status, principal);
  }

  const Limits& limits() const { return limits_; }
  size_t tracked_clients() const ABSL_LOCKS_EXCLUDED(mu_);
  int watchers() const ABSL_LOCKS_EXCLUDED(mu_);  // open watchers of everyone

 private:
  struct Client {
    double tokens = 0;
    absl::Time refilled;
    int calls = 0;
    int watchers = 0;
  };

  // The tracked entry of `principal`, created with a full bucket if new (evicting idle entries
  // when at the cap); TOO_MANY_CLIENTS when the cap is reached and none is idle.
  absl::StatusOr<Client*> Track(absl::string_view principal, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Refills `client`'s bucket up to `now`, then takes a token: RATE_LIMITED if there is none.
  absl::Status TakeToken(absl::string_view principal, Client* client, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Nothing in flight and a full bucket: the entry equals a fresh one and can be forgotten.
  bool Idle(Client* client, absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(const std::string& principal, Permit::Kind kind) ABSL_LOCKS_EXCLUDED(mu_);
  // Counts `status` (a refusal) under its reason and adds the principal to its metadata.
  absl::Status Refused(const absl::Status& status, absl::string_view principal) const;

  const Limits limits_;
  const Clock* const clock_;
  prometheus::Family<prometheus::Counter>* limited_ = nullptr;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Client> clients_ ABSL_GUARDED_BY(mu_);
  int watchers_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_SECURITY_LIMITS_H_
