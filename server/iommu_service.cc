#include "server/iommu_service.h"

#include "core/error.h"
#include "core/error_reasons.h"
#include "core/status_macros.h"
#include "proto/status_codec.h"
#include "server/fault_injection_convert.h"
#include "server/keep_lease_reactor.h"
#include "server/observability_convert.h"
#include "server/rebuilt_replies.h"
#include "server/watch_events_reactor.h"

namespace iommud {
namespace {

// Finishes the call with `status` (as a grpc::Status with ErrorInfo); the response message has been
// filled by the handler when the status is OK.
grpc::ServerUnaryReactor* FinishCall(grpc::CallbackServerContext* context,
                                     const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Whether a request message has an `owner` field (then the authorizer rewrites it).
template <typename T, typename = void>
struct HasOwnerField : std::false_type {};
template <typename T>
struct HasOwnerField<T, std::void_t<decltype(std::declval<T&>().set_owner(std::string()))>>
    : std::true_type {};

}  // namespace

IommuService::IommuService(Registry* registry, EventBus* events, DaemonMetrics* metrics,
                           FaultInjector* injector, const Authorizer* authorizer,
                           ClientLimiter* limiter, IdempotencyKeeper* idempotency)
    : registry_(registry),
      events_(events),
      metrics_(metrics),
      injector_(injector),
      authorizer_(authorizer),
      limiter_(limiter),
      idempotency_(idempotency),
      handlers_(registry, limiter != nullptr ? limiter->limits().request : RequestBounds{}) {}

template <typename Request>
absl::Status IommuService::Admit(const AuthorizedCaller& caller, const Request& request,
                                 ClientLimiter::Permit* permit) const {
  if (limiter_ == nullptr) return absl::OkStatus();
  const std::string& principal = caller.identity.principal;
  if constexpr (std::is_same_v<Request, iommu::v1::WatchEventsRequest>) {
    ASSIGN_OR_RETURN(*permit, limiter_->AdmitWatcher(principal));
  } else {
    ASSIGN_OR_RETURN(*permit, limiter_->AdmitCall(principal));
  }
  return limiter_->CheckRequest(principal, request);
}

absl::Status IommuService::CheckReady() const {
  if (!recovering_.load()) return absl::OkStatus();
  return Error(absl::StatusCode::kUnavailable, reason::kRecovering,
               "iommud is recovering its registry from the state store; retry shortly");
}

template <typename Request>
absl::StatusOr<const Request*> IommuService::AuthorizeCall(const grpc::ServerContextBase& context,
                                                           absl::string_view method,
                                                           const Request* request,
                                                           Request* rewritten,
                                                           ClientLimiter::Permit* permit,
                                                           std::string* principal) const {
  RETURN_IF_ERROR(CheckReady());
  if (authorizer_ == nullptr) return request;
  ASSIGN_OR_RETURN(const AuthorizedCaller caller, authorizer_->Authorize(context, method));
  *principal = caller.identity.principal;
  RETURN_IF_ERROR(Admit(caller, *request, permit));
  RETURN_IF_ERROR(CheckTarget(caller, method, *request));
  if constexpr (HasOwnerField<Request>::value) {
    ASSIGN_OR_RETURN(std::string owner,
                     authorizer_->EffectiveOwner(caller, method, request->owner()));
    *rewritten = *request;
    rewritten->set_owner(std::move(owner));
    return rewritten;
  }
  return request;
}

absl::Status IommuService::CheckTarget(const AuthorizedCaller& caller, absl::string_view method,
                                       const iommu::v1::ReleaseDeviceRequest& request) const {
  if (caller.role >= Role::kAdmin) return absl::OkStatus();
  absl::StatusOr<DeviceInfo> device = registry_->GetDevice(request.device());
  if (!device.ok()) return absl::OkStatus();  // the handler reports it
  absl::StatusOr<GroupInfo> group = registry_->GetGroup(device->group);
  if (!group.ok()) return absl::OkStatus();
  // Racy by design: an owner that claims the group after this check and before the release is
  // treated like one that claimed it just after (the release records the leak either way).
  return authorizer_->CheckMayTouch(caller, method, group->owner);
}

template <typename Request, typename Response, typename Handler>
absl::Status IommuService::RunMutating(absl::string_view method, absl::string_view principal,
                                       const Request& request, Response* response,
                                       Handler handler) const {
  if (idempotency_ == nullptr) {
    RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
    return handler(request, response);
  }
  return idempotency_->Run<Request, Response>(
      method, principal, request, response, handler,
      [&](uint64_t result_ref, Response* out) {
        return RebuildReply(handlers_, request, result_ref, out);
      });
}

template <typename Request>
absl::Status IommuService::AuthorizeMethod(const grpc::ServerContextBase& context,
                                           absl::string_view method, const Request& request,
                                           ClientLimiter::Permit* permit) const {
  RETURN_IF_ERROR(CheckReady());
  if (authorizer_ == nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(const AuthorizedCaller caller, authorizer_->Authorize(context, method));
  return Admit(caller, request, permit);
}

template <typename Request, typename Response, typename Run>
grpc::ServerUnaryReactor* IommuService::Serve(grpc::CallbackServerContext* context,
                                              absl::string_view method, const Request* request,
                                              Response* response, Run run) {
  Request rewritten;
  ClientLimiter::Permit permit;  // held until the handler returns
  std::string principal;
  absl::StatusOr<const Request*> authorized =
      AuthorizeCall(*context, method, request, &rewritten, &permit, &principal);
  if (!authorized.ok()) return FinishCall(context, authorized.status());
  return FinishCall(context, run(principal, **authorized, response));
}

// Each RPC: authorize it (and rewrite its owner), run its handler to completion, finish the call.
#define IOMMUD_UNARY_RPC(method, Request, Response)                                              \
  grpc::ServerUnaryReactor* IommuService::method(grpc::CallbackServerContext* context,           \
                                                 const iommu::v1::Request* request,              \
                                                 iommu::v1::Response* response) {                \
    return Serve(context, #method, request, response,                                            \
                 [this](const std::string& /*principal*/, const auto& authorized, auto* out) {   \
                   return handlers_.method(authorized, out);                                     \
                 });                                                                             \
  }

// A mutating RPC: the same, with the handler run through the IdempotencyKeeper.
#define IOMMUD_MUTATING_RPC(method, Request, Response)                                           \
  grpc::ServerUnaryReactor* IommuService::method(grpc::CallbackServerContext* context,           \
                                                 const iommu::v1::Request* request,              \
                                                 iommu::v1::Response* response) {                \
    return Serve(context, #method, request, response,                                            \
                 [this](const std::string& principal, const auto& authorized, auto* out) {       \
                   return RunMutating(#method, principal, authorized, out,                       \
                                      [this](const auto& r, auto* o) {                           \
                                        return handlers_.method(r, o);                           \
                                      });                                                        \
                 });                                                                             \
  }

IOMMUD_UNARY_RPC(ListUnits, ListUnitsRequest, ListUnitsResponse)
IOMMUD_UNARY_RPC(ListGroups, ListGroupsRequest, ListGroupsResponse)
IOMMUD_UNARY_RPC(GetGroup, GetGroupRequest, Group)
IOMMUD_UNARY_RPC(ListDevices, ListDevicesRequest, ListDevicesResponse)
IOMMUD_UNARY_RPC(GetDevice, GetDeviceRequest, Device)
IOMMUD_UNARY_RPC(ListDomains, ListDomainsRequest, ListDomainsResponse)
IOMMUD_UNARY_RPC(GetDomain, GetDomainRequest, Domain)
IOMMUD_MUTATING_RPC(ProbeDevice, ProbeDeviceRequest, Device)
IOMMUD_MUTATING_RPC(ReleaseDevice, ReleaseDeviceRequest, ReleaseDeviceResponse)
IOMMUD_MUTATING_RPC(UseDefaultDomain, UseDefaultDomainRequest, Group)
IOMMUD_MUTATING_RPC(UnuseDefaultDomain, UnuseDefaultDomainRequest, Group)
IOMMUD_MUTATING_RPC(ClaimOwnership, ClaimOwnershipRequest, Group)
IOMMUD_MUTATING_RPC(ReleaseOwnership, ReleaseOwnershipRequest, Group)
IOMMUD_MUTATING_RPC(ClaimDevice, ClaimDeviceRequest, Group)
IOMMUD_MUTATING_RPC(ReleaseDeviceOwnership, ReleaseDeviceOwnershipRequest, Group)
IOMMUD_MUTATING_RPC(RenewLease, RenewLeaseRequest, Group)
IOMMUD_MUTATING_RPC(AllocDomain, AllocDomainRequest, Domain)
IOMMUD_MUTATING_RPC(FreeDomain, FreeDomainRequest, Domain)
IOMMUD_MUTATING_RPC(AttachDevice, AttachDeviceRequest, Group)
IOMMUD_MUTATING_RPC(AttachGroup, AttachGroupRequest, Group)
IOMMUD_MUTATING_RPC(DetachGroup, DetachGroupRequest, Group)
IOMMUD_MUTATING_RPC(Map, MapRequest, MapResponse)
IOMMUD_MUTATING_RPC(Unmap, UnmapRequest, UnmapResponse)
IOMMUD_UNARY_RPC(ListMappings, ListMappingsRequest, ListMappingsResponse)
IOMMUD_UNARY_RPC(Translate, TranslateRequest, TranslateResponse)
IOMMUD_UNARY_RPC(ListTranslationFaults, ListTranslationFaultsRequest, ListTranslationFaultsResponse)

#undef IOMMUD_UNARY_RPC
#undef IOMMUD_MUTATING_RPC

grpc::ServerUnaryReactor* IommuService::Audit(grpc::CallbackServerContext* context,
                                              const iommu::v1::AuditRequest* request,
                                              iommu::v1::AuditResponse* response) {
  ClientLimiter::Permit permit;
  if (absl::Status allowed = AuthorizeMethod(*context, "Audit", *request, &permit);
      !allowed.ok()) {
    return FinishCall(context, allowed);
  }
  const std::vector<LeakRecord> leaks = registry_->Audit();
  if (metrics_ != nullptr) {
    metrics_->CountAudit();
    metrics_->SetCurrentLeaks(leaks);
  }
  for (const LeakRecord& leak : leaks) LeakToProto(leak, response->add_leaks());
  return FinishCall(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* IommuService::Reconcile(grpc::CallbackServerContext* context,
                                                  const iommu::v1::ReconcileRequest* request,
                                                  iommu::v1::ReconcileResponse* response) {
  ClientLimiter::Permit permit;
  if (absl::Status allowed = AuthorizeMethod(*context, "Reconcile", *request, &permit);
      !allowed.ok()) {
    return FinishCall(context, allowed);
  }
  const Registry::ReconcileResult result = registry_->Reconcile();
  if (metrics_ != nullptr) metrics_->SetCurrentLeaks(result.remaining);
  for (const LeakRecord& leak : result.repaired) LeakToProto(leak, response->add_repaired());
  for (const LeakRecord& leak : result.remaining) LeakToProto(leak, response->add_remaining());
  return FinishCall(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* IommuService::ListContendedGroups(
    grpc::CallbackServerContext* context, const iommu::v1::ListContendedGroupsRequest* request,
    iommu::v1::ListContendedGroupsResponse* response) {
  ClientLimiter::Permit permit;
  if (absl::Status allowed = AuthorizeMethod(*context, "ListContendedGroups", *request, &permit);
      !allowed.ok()) {
    return FinishCall(context, allowed);
  }
  const size_t max_groups = request->max_groups() == 0 ? 10 : request->max_groups();
  for (const Registry::GroupContention& group : registry_->MostContendedGroups(max_groups)) {
    ContentionToProto(group, response->add_groups());
  }
  return FinishCall(context, absl::OkStatus());
}

namespace {

absl::Status InjectionDisabled() {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kFaultInjectionDisabled,
               "fault injection is off: start iommud with --allow_fault_injection");
}

}  // namespace

grpc::ServerUnaryReactor* IommuService::InjectFault(grpc::CallbackServerContext* context,
                                                    const iommu::v1::InjectFaultRequest* request,
                                                    iommu::v1::InjectFaultResponse* response) {
  ClientLimiter::Permit permit;
  if (absl::Status allowed = AuthorizeMethod(*context, "InjectFault", *request, &permit);
      !allowed.ok()) {
    return FinishCall(context, allowed);
  }
  if (injector_ == nullptr) return FinishCall(context, InjectionDisabled());
  absl::StatusOr<FaultSpec> spec = FaultSpecFromProto(request->spec());
  if (!spec.ok()) return FinishCall(context, spec.status());
  absl::StatusOr<uint64_t> id = injector_->Add(*spec);
  if (id.ok()) response->set_fault_id(*id);
  return FinishCall(context, id.status());
}

grpc::ServerUnaryReactor* IommuService::ListFaults(
    grpc::CallbackServerContext* context, const iommu::v1::ListFaultsRequest* request,
    iommu::v1::ListFaultsResponse* response) {
  ClientLimiter::Permit permit;
  if (absl::Status allowed = AuthorizeMethod(*context, "ListFaults", *request, &permit);
      !allowed.ok()) {
    return FinishCall(context, allowed);
  }
  if (injector_ == nullptr) return FinishCall(context, InjectionDisabled());
  for (const FaultState& fault : injector_->List()) {
    FaultStateToProto(fault, response->add_faults());
  }
  for (const std::string& point : FaultPoints()) response->add_points(point);
  return FinishCall(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* IommuService::ClearFaults(
    grpc::CallbackServerContext* context, const iommu::v1::ClearFaultsRequest* request,
    iommu::v1::ClearFaultsResponse* response) {
  ClientLimiter::Permit permit;
  if (absl::Status allowed = AuthorizeMethod(*context, "ClearFaults", *request, &permit);
      !allowed.ok()) {
    return FinishCall(context, allowed);
  }
  if (injector_ == nullptr) return FinishCall(context, InjectionDisabled());
  response->set_cleared(injector_->Clear());
  return FinishCall(context, absl::OkStatus());
}

namespace {

// A stream that fails at once (bad request, or no event bus).
class FailedStream : public grpc::ServerWriteReactor<iommu::v1::Event> {
 public:
  explicit FailedStream(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerBidiReactor<iommu::v1::KeepLeaseRequest, iommu::v1::Group>* IommuService::KeepLease(
    grpc::CallbackServerContext* context) {
  KeepLeaseReactor::OwnerOf owner_of = [](const std::string& owner) -> absl::StatusOr<std::string> {
    return owner;
  };
  if (authorizer_ != nullptr) {
    absl::StatusOr<AuthorizedCaller> caller = authorizer_->Authorize(*context, "KeepLease");
    if (!caller.ok()) return KeepLeaseReactor::Failed(caller.status());
    owner_of = [authorizer = authorizer_, caller = *caller](const std::string& owner) {
      return authorizer->EffectiveOwner(caller, "KeepLease", owner);
    };
  }
  return new KeepLeaseReactor(&handlers_, std::move(owner_of));
}

grpc::ServerWriteReactor<iommu::v1::Event>* IommuService::WatchEvents(
    grpc::CallbackServerContext* context, const iommu::v1::WatchEventsRequest* request) {
  ClientLimiter::Permit permit;
  if (absl::Status allowed = AuthorizeMethod(*context, "WatchEvents", *request, &permit);
      !allowed.ok()) {
    return new FailedStream(allowed);
  }
  if (events_ == nullptr) {
    return new FailedStream(Error(absl::StatusCode::kUnimplemented, reason::kNoEventStream,
                                  "this server has no event stream"));
  }
  absl::StatusOr<WatchSpec> spec = WatchSpecFromProto(*request);
  if (!spec.ok()) return new FailedStream(spec.status());
  return new WatchEventsReactor(registry_, events_, *spec, std::move(permit));
}

}  // namespace iommud
