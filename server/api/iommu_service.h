// IommuService: the iommu.v1.Iommu gRPC service (callback API, one unary reactor per call), a thin
// adapter of RequestHandlers and MaintenanceHandlers onto the wire. Its methods are registered
// from the RPC table (rpc_table.h), not from the generated service class: each takes its request as
// bytes and parses it (raw_request.h), so a request that is not valid protobuf is INVALID_ARGUMENT
// MALFORMED_REQUEST (gRPC's own handler would answer a bare UNIMPLEMENTED). Every reply's status
// goes through ToGrpcStatus (proto/status_codec.h), so every error carries a google.rpc.ErrorInfo
// with its reason.
//
// While the daemon recovers, every call is refused (UNAVAILABLE RECOVERING). Otherwise each is
// first authorized (authorizer.h): the caller's role must be at least the role of the method's table entry, and the
// owner field of a request is replaced by the caller's effective owner before the handler sees it;
// a denial finishes the call with PERMISSION_DENIED and changes nothing. Then the caller's
// principal is admitted by the ClientLimiter (limits.h: rate, calls in flight, watchers, request
// bounds); a refusal finishes the call with RESOURCE_EXHAUSTED (or INVALID_ARGUMENT for an
// oversized field) and changes nothing. A mutating request with a request_id then goes through the
// IdempotencyKeeper (idempotency.h): a retry is answered with the original reply, not run again.
//
// The streams go through the same admission: a WatchEvents stream holds a watcher permit for its
// life; a KeepLease stream is checked for readiness, authorized and holds a call permit for its
// life, and each of its messages is checked for readiness again, takes a rate token, is bounded
// and gets its owner rewritten before anything is renewed (keep_lease_reactor.h).
//
// Unary handlers run on gRPC's callback threads; they may block briefly on a group mutex (the
// registry never holds one across anything slow). Once RunMutatingCallsOffGrpcThreads was called
// (the daemon does), mutating calls run on per-group strands of the service's own instead
// (key_strands.h): a call is keyed to its group before it runs (the request's group_id, else its
// device's group, else its domain_id; none: the shared lane, outside every strand), a group's
// calls run one at a time in arrival order, and a call waiting for its group waits in the group's
// queue, not on a thread, so one busy group never holds the threads other groups' calls need. With
// a durable store each call waits there for the group commit that makes its change durable, and
// the calls of many groups waiting at once are what lets one commit carry many changes. With the
// memory store a call whose group is idle runs at once on gRPC's thread (nothing in it waits).
// KeepLease renewals run on a small executor of the service's own (blocking_executor.h), off
// gRPC's reactor threads. ReleaseDevice runs whole (admission included) on another executor of its
// own, never on a strand, since it may wait for the owner of the device (owned_device_release.h),
// whose own calls on that group must not queue behind it: up to kMaxReleaseWait, or until the call
// is cancelled, its deadline passes or the daemon shuts down. Thread-safe.
#ifndef IOMMUD_SERVER_API_IOMMU_SERVICE_H_
#define IOMMUD_SERVER_API_IOMMU_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/statusor.h"
#include "core/event_bus.h"
#include "core/fault_injector.h"
#include "core/registry.h"
#include "iommu/v1/iommu.grpc.pb.h"
#include "server/api/blocking_executor.h"
#include "server/api/key_strands.h"
#include "server/api/idempotency.h"
#include "server/api/maintenance_handlers.h"
#include "server/api/owned_device_release.h"
#include "server/api/request_handlers.h"
#include "server/api/rpc_table.h"
#include "server/observability/daemon_metrics.h"
#include "server/security/authorizer.h"
#include "server/host/release_request.h"
#include "server/security/limits.h"

namespace iommud {

class IommuService final : public grpc::Service {
 public:
  // None is owned; each must outlive the service. `events` (WatchEvents) and `metrics` (the
  // audit gauges) may be null: WatchEvents is then UNIMPLEMENTED.
  // `injector` null: the fault-injection RPCs are refused (FAULT_INJECTION_DISABLED).
  // `authorizer` null: no authorization and owners are passed through unchanged (in-process tests
  // of the service only; the daemon always has one).
  // `idempotency` null: request ids are validated but not remembered (every request runs).
  explicit IommuService(Registry* registry, EventBus* events = nullptr,
                        DaemonMetrics* metrics = nullptr, FaultInjector* injector = nullptr,
                        const Authorizer* authorizer = nullptr,
                        ClientLimiter* limiter = nullptr,
                        IdempotencyKeeper* idempotency = nullptr);

  // While set, every call fails with UNAVAILABLE (RECOVERING) and touches nothing: the daemon is
  // still loading the registry from its state store. Thread-safe.
  void SetRecovering(bool recovering) { recovering_.store(recovering); }
  // Called by the daemon before it stops the server: from then on, the end of a KeepLease stream
  // that bound an ownership releases nothing (the server's shutdown cancels every stream; the
  // clients did not go away, so their leases' TTLs decide, as across a restart). Thread-safe.
  void SetShuttingDown() { shutting_down_.store(true); }
  // The wait of a ReleaseDevice of an owned device that sets no wait_millis (the daemon's
  // --release_request_timeout; 10 s unless set). Thread-safe.
  void SetDefaultReleaseWait(absl::Duration wait) { owned_release_.set_default_wait(wait); }

  // From now on, mutating unary calls run on per-group strands over `threads` threads of the
  // service's own rather than on gRPC's callback threads (see above): at most `threads` groups'
  // calls run (or wait for a commit) at once. `per_group` false puts every call in the shared
  // lane (a plain pool, the earlier threading; for measurements). `inline_when_idle` (for a store
  // whose commits never wait: the memory store) runs a call on gRPC's thread when its group has
  // nothing running or queued, and shared-lane calls always, saving the hand-off; a call of a busy
  // group still waits in its queue, not on a thread. Call once, before the server starts.
  void RunMutatingCallsOffGrpcThreads(int threads, bool per_group = true,
                                      bool inline_when_idle = false);

 private:
  // Registers `handler` (owned by the method) as the method `name` of iommu.v1.Iommu, taking its
  // requests as bytes (raw_request.h).
  void AddRawMethod(absl::string_view name, grpc::internal::RpcMethod::RpcType type,
                    grpc::internal::MethodHandler* handler);
  // Register one unary entry of kUnaryRpcs (rpc_table.h), and the two streams.
  template <typename Rpc>
  void AddUnary(const Rpc& rpc);
  void AddKeepLease();
  void AddWatchEvents();

  // One unary call of `rpc`: authorizes and admits it (AuthorizeCall), then runs its handler, for
  // a kMutating one through RunMutating.
  template <typename Rpc>
  absl::Status Serve(const grpc::ServerContextBase& context, const Rpc& rpc,
                     const typename Rpc::RequestType& request,
                     typename Rpc::ResponseType* response) const;
  // The handler object of a table entry's Handlers type.
  template <typename Handlers>
  const Handlers& HandlersOf() const;

  // The reactor of a new stream; one that finishes at once when the call is refused.
  grpc::ServerBidiReactor<grpc::ByteBuffer, iommu::v1::Group>* KeepLease(
      grpc::CallbackServerContext* context);
  grpc::ServerWriteReactor<iommu::v1::Event>* WatchEvents(
      const grpc::ServerContextBase& context, const iommu::v1::WatchEventsRequest& request);

  // Checks readiness, authorizes the caller of `context` for the table entry `rpc` (its name and
  // role), takes the entry's limiter slot into `permit` (held until it is destroyed) and checks
  // the request's bounds. For a request with an owner field, returns `rewritten` (a copy of
  // `request` with the effective owner); otherwise `request`. `principal` gets the caller's
  // identity ("" without an authorizer).
  template <typename Rpc, typename Request>
  absl::StatusOr<const Request*> AuthorizeCall(const grpc::ServerContextBase& context,
                                               const Rpc& rpc, const Request* request,
                                               Request* rewritten, ClientLimiter::Permit* permit,
                                               std::string* principal) const;
  // The limiter's admission of one call or stream of `principal` holding `slot`.
  absl::StatusOr<ClientLimiter::Permit> Admit(const std::string& principal,
                                              LimiterSlot slot) const;
  // Per-request checks beyond the role: ReleaseDevice of a device in a group another principal
  // owns needs admin; so do a Map of a raw paddr (no region_id: PERMISSION_DENIED
  // RAW_PADDR_ADMIN_ONLY) and AllocDomain of an IDENTITY domain (IDENTITY_DOMAIN_ADMIN_ONLY),
  // which reach all physical memory (issue #15). Other requests: nothing.
  absl::Status CheckTarget(const AuthorizedCaller& caller, absl::string_view method,
                           const iommu::v1::ReleaseDeviceRequest& request) const;
  absl::Status CheckTarget(const AuthorizedCaller& caller, absl::string_view method,
                           const iommu::v1::MapRequest& request) const;
  // Any entry of a raw paddr: the Map rule.
  absl::Status CheckTarget(const AuthorizedCaller& caller, absl::string_view method,
                           const iommu::v1::MapBatchRequest& request) const;
  absl::Status CheckTarget(const AuthorizedCaller& caller, absl::string_view method,
                           const iommu::v1::AllocDomainRequest& request) const;
  // ProbeDevice asking for an IDENTITY default domain: the same rule (the kernel lets only
  // CAP_SYS_ADMIN change a group's default domain type through sysfs).
  absl::Status CheckTarget(const AuthorizedCaller& caller, absl::string_view method,
                           const iommu::v1::ProbeDeviceRequest& request) const;
  // HandOverGroup to a uid:gid other than the caller's own (its unix peer credentials) needs admin
  // (HANDOVER_UID_NOT_CALLERS): a VMM's manager may hand a group only to itself.
  absl::Status CheckTarget(const AuthorizedCaller& caller, absl::string_view method,
                           const iommu::v1::HandOverGroupRequest& request) const;
  template <typename Request>
  absl::Status CheckTarget(const AuthorizedCaller&, absl::string_view, const Request&) const {
    return absl::OkStatus();
  }

  // Runs `handler` for a mutating request: through the IdempotencyKeeper when there is one (a
  // retry with the same request_id gets the original reply), else after checking the id's form.
  template <typename Request, typename Response, typename Handler>
  absl::Status RunMutating(absl::string_view method, absl::string_view principal,
                           const Request& request, Response* response, Handler handler) const;

  // UNAVAILABLE (RECOVERING) while recovering_, else OK; checked first by every call.
  absl::Status CheckReady() const;
  // Whether a ReleaseDevice waiting for an owner stops: the daemon is shutting down
  // (SERVER_SHUTTING_DOWN), the call was cancelled (CANCELLED RELEASE_WAIT_CANCELLED) or its
  // deadline passed (DEADLINE_PASSED); OK to go on waiting.
  absl::Status StopWaiting(const grpc::ServerContextBase& context,
                           const iommu::v1::ReleaseDeviceRequest& request) const;
  // The strand of a mutating request (see above); nullopt for the shared lane. Takes no group
  // mutex (Registry::GroupOfDevice).
  template <typename Request>
  std::optional<uint64_t> StrandKeyOf(const Request& request) const;
  // A KeepLease stream that bound `group` ended: unless shutting down, schedules its
  // ReleaseBoundLease on the KeepLease executor (counted in DaemonMetrics, a failure logged).
  // Does not block.
  void ReleaseBound(uint64_t group, uint64_t stream);

  std::atomic<bool> recovering_{false};
  std::atomic<bool> shutting_down_{false};
  DaemonMetrics* const metrics_;
  Registry* const registry_;
  EventBus* const events_;
  const Authorizer* const authorizer_;
  ClientLimiter* const limiter_;
  IdempotencyKeeper* const idempotency_;
  RequestHandlers handlers_;
  MaintenanceHandlers maintenance_;
  // ReleaseDevice's announcement, revocation and resolution (shared with the kernel's removal
  // path) and its wait for the owner.
  ReleaseRequests release_requests_;
  OwnedDeviceRelease owned_release_;
  // KeepLease renewals; after handlers_, so that it drains before they go.
  BlockingExecutor keep_lease_executor_{/*threads=*/2};
  // ReleaseDevice calls (each may wait for an owner); after what they use.
  BlockingExecutor release_executor_{/*threads=*/4};
  // Mutating unary calls when set (RunMutatingCallsOffGrpcThreads); set before the server starts,
  // read by every call after. After handlers_, so that it drains before they go.
  std::unique_ptr<KeyStrands> mutating_strands_;
  bool per_group_strands_ = true;  // set with mutating_strands_
  std::deque<std::string> method_paths_;  // "/iommu.v1.Iommu/<name>": the methods point into it
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_IOMMU_SERVICE_H_
