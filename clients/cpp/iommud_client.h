// IommuClient: a small synchronous C++ client of iommud (iommu.v1.Iommu), the library iommuctl,
// the load generator and the integration tests are built on.
//
// Every call has a deadline (ClientOptions::rpc_timeout), which a call that asks the daemon to wait
// gets on top of that wait: ReleaseDevice of an owned device waits for the owner (its wait_millis,
// else the daemon's --release_request_timeout; at most kMaxReleaseDeviceWait), so its deadline is
// rpc_timeout plus wait_millis (plus kMaxReleaseDeviceWait when wait_millis is unset), and a
// release the owner does not let go of ends with the daemon's DEVICE_IN_USE, not
// DEADLINE_EXCEEDED. Errors come back as absl::Status built by FromGrpcStatus
// (proto/status_codec.h), so iommud::ErrorReason(status) is the google.rpc.ErrorInfo reason the
// daemon sent (e.g. "GROUP_IN_USE"). Thread-safe: one client may be shared by threads (gRPC
// channels and stubs are).
#ifndef IOMMUD_CLIENTS_CPP_IOMMUD_CLIENT_H_
#define IOMMUD_CLIENTS_CPP_IOMMUD_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "iommu/v1/iommu.grpc.pb.h"

namespace iommud {

// The daemon's cap on ReleaseDevice's wait for the device's owner (docs/semantics.md).
inline constexpr absl::Duration kMaxReleaseDeviceWait = absl::Seconds(60);

struct ClientOptions {
  std::string target;                              // "unix:/path/iommud.sock" or "host:port"
  absl::Duration rpc_timeout = absl::Seconds(10);  // deadline of each call
  absl::Duration connect_timeout = absl::Seconds(5);
  // TLS for host:port targets (iommud's TCP listener requires mTLS): PEM files of the CA that
  // signed the daemon's certificate, and this client's certificate and key. All empty: plaintext
  // (unix sockets, or a daemon started with --insecure-tcp).
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;  // checked against the daemon's certificate instead of the host
  // Mutating calls (those whose request has a request_id field; see iommu.proto's "Request ids"):
  // a request sent without an id gets `request_id` when it is set (so set it only for a client
  // that makes one mutating call, like iommuctl: a second call under the same id with other
  // fields is REQUEST_ID_REUSED), else, when retry_mutations > 0, a random one ("c-" and 32 hex
  // digits). A call that fails with UNAVAILABLE (the daemon restarting or RECOVERING, a dropped
  // connection) or ABORTED REQUEST_IN_PROGRESS is sent again with the same id, up to
  // `retry_mutations` more times, `retry_backoff` x attempt apart: the daemon acts on it at most
  // once. 0 = no retries, and ids only when the caller sets them.
  std::string request_id;
  int retry_mutations = 0;
  absl::Duration retry_backoff = absl::Milliseconds(200);
  // HTTP/2 keepalive: the channel pings the daemon after `keepalive_time` without activity, idle
  // or not, and drops the connection when no answer comes within `keepalive_timeout`, so that a
  // WatchEvents or KeepLease stream over TCP notices a vanished daemon or network path. At least
  // iommud's --keepalive_min_client_interval (10s; pinging more often gets GOAWAY too_many_pings).
  // Zero: no client pings (gRPC's default).
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
};

// Adds the keepalive channel arguments of `options` to `arguments` (nothing when
// options.keepalive_time is zero).
void ApplyClientKeepalive(const ClientOptions& options, grpc::ChannelArguments* arguments);

// The channel credentials and arguments `options` ask for: TLS when any tls_* field is set (then
// tls_ca is required, tls_cert and tls_key go together, and the target must not be unix:),
// else insecure. INVALID_ARGUMENT (INVALID_TLS_OPTIONS, TLS_FILE_UNREADABLE) otherwise.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const ClientOptions& options, grpc::ChannelArguments* arguments);

class IommuClient {
 public:
  // Creates the channel and waits until it is READY: UNAVAILABLE (reason CONNECT_FAILED)
  // otherwise, INVALID_ARGUMENT (INVALID_TARGET) for an empty target, and at once, without
  // waiting, PERMISSION_DENIED (SOCKET_PERMISSION_DENIED) for a unix: socket the caller may not
  // connect to (unix_socket_probe.h).
  static absl::StatusOr<std::unique_ptr<IommuClient>> Connect(const ClientOptions& options);
  IommuClient(std::shared_ptr<grpc::Channel> channel, absl::Duration rpc_timeout);
  // With the request-id and retry options of `options` (its target and TLS fields are unused).
  IommuClient(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options);

#define IOMMUD_CLIENT_RPC(Method, Request, Response) \
  absl::StatusOr<iommu::v1::Response> Method(const iommu::v1::Request& request);
#include "clients/cpp/iommu_rpcs.inc"
#undef IOMMUD_CLIENT_RPC

  // The List* calls followed through every page.
  absl::StatusOr<std::vector<iommu::v1::IommuUnit>> ListAllUnits();
  absl::StatusOr<std::vector<iommu::v1::Group>> ListAllGroups();
  absl::StatusOr<std::vector<iommu::v1::Device>> ListAllDevices();
  absl::StatusOr<std::vector<iommu::v1::Domain>> ListAllDomains();

  // WatchEvents: calls `on_event` for each event until it returns false, the stream ends, or
  // `timeout` (no deadline when infinite) passes; returns the stream's final status (OK when
  // `on_event` stopped it or the deadline passed after at least one event).
  absl::Status WatchEvents(const iommu::v1::WatchEventsRequest& request,
                           const std::function<bool(const iommu::v1::Event&)>& on_event,
                           absl::Duration timeout = absl::InfiniteDuration());

  // KeepLease: keeps the ownership lease of `request.group_id()` alive over one keepalive stream,
  // sending `request` every `every` (so `every` must be well below the lease's TTL) and calling
  // `on_renewed` with each answer, until it returns false (OK), `duration` passes (OK; no limit
  // when infinite) or the daemon refuses a renewal (its error: NOT_OWNER, LEASE_EXPIRED, ...).
  // Ending the stream releases nothing (without renewals the lease then lapses), unless
  // `request.bind()`: then the ownership is bound to the stream, and its end, by whatever path
  // (a return from here, this process dying, the connection dropping), releases it at once.
  absl::Status KeepLease(const iommu::v1::KeepLeaseRequest& request, absl::Duration every,
                         const std::function<bool(const iommu::v1::Group&)>& on_renewed,
                         absl::Duration duration = absl::InfiniteDuration());

  // grpc.health.v1.Health/Check of `service` ("" = the whole server).
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> CheckHealth(
      const std::string& service = "");

  iommu::v1::Iommu::Stub* stub() { return stub_.get(); }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  // A context with this client's deadline, `asked_wait` later for a call that asks the daemon to
  // wait that long.
  std::unique_ptr<grpc::ClientContext> NewContext(
      absl::Duration asked_wait = absl::ZeroDuration()) const;
  // One unary call; a mutating one gets its request id and retries (ClientOptions).
  template <typename Request, typename Response>
  absl::StatusOr<Response> Unary(
      grpc::Status (iommu::v1::Iommu::Stub::*method)(grpc::ClientContext*, const Request&,
                                                     Response*),
      const Request& request);

  std::shared_ptr<grpc::Channel> channel_;
  absl::Duration rpc_timeout_;
  std::string request_id_;
  int retry_mutations_ = 0;
  absl::Duration retry_backoff_;
  std::unique_ptr<iommu::v1::Iommu::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace iommud

#endif  // IOMMUD_CLIENTS_CPP_IOMMUD_CLIENT_H_
