// IommuService: the iommu.v1.Iommu gRPC service (callback API, one unary reactor per call), a thin
// adapter of RequestHandlers onto the wire. Every reply's status goes through ToGrpcStatus
// (proto/status_codec.h), so every error carries a google.rpc.ErrorInfo with its reason.
//
// Every RPC is first authorized (authorizer.h): the caller's role must allow the method, and the
// owner field of a request is replaced by the caller's effective owner before the handler sees it;
// a denial finishes the call with PERMISSION_DENIED and changes nothing. Then the caller's
// principal is admitted by the ClientLimiter (limits.h: rate, calls in flight, watchers, request
// bounds); a refusal finishes the call with RESOURCE_EXHAUSTED (or INVALID_ARGUMENT for an
// oversized field) and changes nothing. A mutating request with a request_id then goes through the
// IdempotencyKeeper (idempotency.h): a retry is answered with the original reply, not run again.
//
// Handlers run on gRPC's callback threads; they may block briefly on a group mutex (the registry
// never holds one across anything slow). Thread-safe.
#ifndef IOMMUD_SERVER_IOMMU_SERVICE_H_
#define IOMMUD_SERVER_IOMMU_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/statusor.h"
#include "core/registry.h"
#include "iommu/v1/iommu.grpc.pb.h"
#include "core/event_bus.h"
#include "core/fault_injector.h"
#include "server/authorizer.h"
#include "server/daemon_metrics.h"
#include "server/idempotency.h"
#include "server/limits.h"
#include "server/request_handlers.h"

namespace iommud {

class IommuService final : public iommu::v1::Iommu::CallbackService {
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

  grpc::ServerUnaryReactor* ListUnits(grpc::CallbackServerContext* context,
                                      const iommu::v1::ListUnitsRequest* request,
                                      iommu::v1::ListUnitsResponse* response) override;
  grpc::ServerUnaryReactor* ListGroups(grpc::CallbackServerContext* context,
                                       const iommu::v1::ListGroupsRequest* request,
                                       iommu::v1::ListGroupsResponse* response) override;
  grpc::ServerUnaryReactor* GetGroup(grpc::CallbackServerContext* context,
                                     const iommu::v1::GetGroupRequest* request,
                                     iommu::v1::Group* response) override;
  grpc::ServerUnaryReactor* ListDevices(grpc::CallbackServerContext* context,
                                        const iommu::v1::ListDevicesRequest* request,
                                        iommu::v1::ListDevicesResponse* response) override;
  grpc::ServerUnaryReactor* GetDevice(grpc::CallbackServerContext* context,
                                      const iommu::v1::GetDeviceRequest* request,
                                      iommu::v1::Device* response) override;
  grpc::ServerUnaryReactor* ListDomains(grpc::CallbackServerContext* context,
                                        const iommu::v1::ListDomainsRequest* request,
                                        iommu::v1::ListDomainsResponse* response) override;
  grpc::ServerUnaryReactor* GetDomain(grpc::CallbackServerContext* context,
                                      const iommu::v1::GetDomainRequest* request,
                                      iommu::v1::Domain* response) override;
  grpc::ServerUnaryReactor* ProbeDevice(grpc::CallbackServerContext* context,
                                        const iommu::v1::ProbeDeviceRequest* request,
                                        iommu::v1::Device* response) override;
  grpc::ServerUnaryReactor* ReleaseDevice(grpc::CallbackServerContext* context,
                                          const iommu::v1::ReleaseDeviceRequest* request,
                                          iommu::v1::ReleaseDeviceResponse* response) override;
  grpc::ServerUnaryReactor* UseDefaultDomain(grpc::CallbackServerContext* context,
                                             const iommu::v1::UseDefaultDomainRequest* request,
                                             iommu::v1::Group* response) override;
  grpc::ServerUnaryReactor* UnuseDefaultDomain(grpc::CallbackServerContext* context,
                                               const iommu::v1::UnuseDefaultDomainRequest* request,
                                               iommu::v1::Group* response) override;
  grpc::ServerUnaryReactor* ClaimOwnership(grpc::CallbackServerContext* context,
                                           const iommu::v1::ClaimOwnershipRequest* request,
                                           iommu::v1::Group* response) override;
  grpc::ServerUnaryReactor* ReleaseOwnership(grpc::CallbackServerContext* context,
                                             const iommu::v1::ReleaseOwnershipRequest* request,
                                             iommu::v1::Group* response) override;
  grpc::ServerUnaryReactor* ClaimDevice(grpc::CallbackServerContext* context,
                                        const iommu::v1::ClaimDeviceRequest* request,
                                        iommu::v1::Group* response) override;
  grpc::ServerUnaryReactor* RenewLease(grpc::CallbackServerContext* context,
                                       const iommu::v1::RenewLeaseRequest* request,
                                       iommu::v1::Group* response) override;
  grpc::ServerUnaryReactor* ReleaseDeviceOwnership(
      grpc::CallbackServerContext* context, const iommu::v1::ReleaseDeviceOwnershipRequest* request,
      iommu::v1::Group* response) override;
  grpc::ServerUnaryReactor* AllocDomain(grpc::CallbackServerContext* context,
                                        const iommu::v1::AllocDomainRequest* request,
                                        iommu::v1::Domain* response) override;
  grpc::ServerUnaryReactor* FreeDomain(grpc::CallbackServerContext* context,
                                       const iommu::v1::FreeDomainRequest* request,
                                       iommu::v1::Domain* response) override;
  grpc::ServerUnaryReactor* AttachDevice(grpc::CallbackServerContext* context,
                                         const iommu::v1::AttachDeviceRequest* request,
                                         iommu::v1::Group* response) override;
  grpc::ServerUnaryReactor* AttachGroup(grpc::CallbackServerContext* context,
                                        const iommu::v1::AttachGroupRequest* request,
                                        iommu::v1::Group* response) override;
  grpc::ServerUnaryReactor* DetachGroup(grpc::CallbackServerContext* context,
                                        const iommu::v1::DetachGroupRequest* request,
                                        iommu::v1::Group* response) override;
  grpc::ServerUnaryReactor* Map(grpc::CallbackServerContext* context,
                                const iommu::v1::MapRequest* request,
                                iommu::v1::MapResponse* response) override;
  grpc::ServerUnaryReactor* Unmap(grpc::CallbackServerContext* context,
                                  const iommu::v1::UnmapRequest* request,
                                  iommu::v1::UnmapResponse* response) override;
  grpc::ServerUnaryReactor* ListMappings(grpc::CallbackServerContext* context,
                                         const iommu::v1::ListMappingsRequest* request,
                                         iommu::v1::ListMappingsResponse* response) override;
  grpc::ServerUnaryReactor* Translate(grpc::CallbackServerContext* context,
                                      const iommu::v1::TranslateRequest* request,
                                      iommu::v1::TranslateResponse* response) override;
  grpc::ServerUnaryReactor* ListTranslationFaults(grpc::CallbackServerContext* context,
                                       const iommu::v1::ListTranslationFaultsRequest* request,
                                       iommu::v1::ListTranslationFaultsResponse* response) override;

  grpc::ServerUnaryReactor* Audit(grpc::CallbackServerContext* context,
                                  const iommu::v1::AuditRequest* request,
                                  iommu::v1::AuditResponse* response) override;
  grpc::ServerUnaryReactor* Reconcile(grpc::CallbackServerContext* context,
                                      const iommu::v1::ReconcileRequest* request,
                                      iommu::v1::ReconcileResponse* response) override;
  grpc::ServerUnaryReactor* ListContendedGroups(
      grpc::CallbackServerContext* context, const iommu::v1::ListContendedGroupsRequest* request,
      iommu::v1::ListContendedGroupsResponse* response) override;
  grpc::ServerUnaryReactor* InjectFault(grpc::CallbackServerContext* context,
                                        const iommu::v1::InjectFaultRequest* request,
                                        iommu::v1::InjectFaultResponse* response) override;
  grpc::ServerUnaryReactor* ListFaults(
      grpc::CallbackServerContext* context, const iommu::v1::ListFaultsRequest* request,
      iommu::v1::ListFaultsResponse* response) override;
  grpc::ServerUnaryReactor* ClearFaults(
      grpc::CallbackServerContext* context, const iommu::v1::ClearFaultsRequest* request,
      iommu::v1::ClearFaultsResponse* response) override;
  grpc::ServerBidiReactor<iommu::v1::KeepLeaseRequest, iommu::v1::Group>* KeepLease(
      grpc::CallbackServerContext* context) override;
  grpc::ServerWriteReactor<iommu::v1::Event>* WatchEvents(
      grpc::CallbackServerContext* context,
      const iommu::v1::WatchEventsRequest* request) override;

 private:
  // Authorizes `method` for the caller of `context`. For a request with an owner field, returns
  // `rewritten` (a copy of `request` with the effective owner); otherwise `request`. The call's
  // admission by the limiter is held by `permit` until it is destroyed. `principal` gets the
  // caller's identity ("" without an authorizer).
  template <typename Request>
  absl::StatusOr<const Request*> AuthorizeCall(const grpc::ServerContextBase& context,
                                               absl::string_view method, const Request* request,
                                               Request* rewritten, ClientLimiter::Permit* permit,
                                               std::string* principal) const;
  // The limiter's admission of one call (or, for WatchEvents, one watcher) of `caller`.
  template <typename Request>
  absl::Status Admit(const AuthorizedCaller& caller, const Request& request,
                     ClientLimiter::Permit* permit) const;
  // Per-request checks beyond the role: ReleaseDevice of a device in a group another principal
  // owns needs admin. Other requests: nothing.
  absl::Status CheckTarget(const AuthorizedCaller& caller, absl::string_view method,
                           const iommu::v1::ReleaseDeviceRequest& request) const;
  template <typename Request>
  absl::Status CheckTarget(const AuthorizedCaller&, absl::string_view, const Request&) const {
    return absl::OkStatus();
  }
  // The role check and the admission, for the hand-written RPCs (no owner field).
  template <typename Request>
  absl::Status AuthorizeMethod(const grpc::ServerContextBase& context, absl::string_view method,
                               const Request& request, ClientLimiter::Permit* permit) const;

  // One unary call: authorizes it (AuthorizeCall), then finishes it with
  // run(principal, authorized request, response).
  template <typename Request, typename Response, typename Run>
  grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* context, absl::string_view method,
                                  const Request* request, Response* response, Run run);
  // Runs `handler` for a mutating request: through the IdempotencyKeeper when there is one (a
  // retry with the same request_id gets the original reply), else after checking the id's form.
  template <typename Request, typename Response, typename Handler>
  absl::Status RunMutating(absl::string_view method, absl::string_view principal,
                           const Request& request, Response* response, Handler handler) const;

  // UNAVAILABLE (RECOVERING) while recovering_, else OK; checked first by every call.
  absl::Status CheckReady() const;

  std::atomic<bool> recovering_{false};
  Registry* const registry_;
  EventBus* const events_;
  DaemonMetrics* const metrics_;
  FaultInjector* const injector_;
  const Authorizer* const authorizer_;
  ClientLimiter* const limiter_;
  IdempotencyKeeper* const idempotency_;
  RequestHandlers handlers_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_IOMMU_SERVICE_H_
