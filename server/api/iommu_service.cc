#include "server/api/iommu_service.h"

#include <optional>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/status_macros.h"
#include "proto/status_codec.h"
#include "server/api/deadline_check.h"
#include "server/api/keep_lease_reactor.h"
#include "server/api/raw_request.h"
#include "server/api/rebuilt_replies.h"
#include "server/api/watch_events_reactor.h"
#include "server/observability/daemon_metrics.h"
#include "server/observability/log.h"

namespace iommud {
namespace {

// Whether a request message has an `owner` field (then the authorizer rewrites it).
template <typename T, typename = void>
struct HasOwnerField : std::false_type {};
template <typename T>
struct HasOwnerField<T, std::void_t<decltype(std::declval<T&>().set_owner(std::string()))>>
    : std::true_type {};

constexpr char kReleaseDeviceMethod[] = "ReleaseDevice";

// Which of the fields that name a group (directly, or through a device or a domain) a request has.
template <typename T, typename = void>
struct HasGroupIdField : std::false_type {};
template <typename T>
struct HasGroupIdField<T, std::void_t<decltype(std::declval<const T&>().group_id())>>
    : std::true_type {};
template <typename T, typename = void>
struct HasDeviceField : std::false_type {};
template <typename T>
struct HasDeviceField<T, std::void_t<decltype(std::declval<const T&>().device())>>
    : std::true_type {};
template <typename T, typename = void>
struct HasDomainIdField : std::false_type {};
template <typename T>
struct HasDomainIdField<T, std::void_t<decltype(std::declval<const T&>().domain_id())>>
    : std::true_type {};

// Strand keys: a group's id, or a domain's id with this bit set (ids are far below it).
constexpr uint64_t kDomainStrandBit = uint64_t{1} << 63;

}  // namespace

IommuService::IommuService(Registry* registry, EventBus* events, DaemonMetrics* metrics,
                           FaultInjector* injector, const Authorizer* authorizer,
                           ClientLimiter* limiter, IdempotencyKeeper* idempotency)
    : metrics_(metrics),
      registry_(registry),
      events_(events),
      authorizer_(authorizer),
      limiter_(limiter),
      idempotency_(idempotency),
      handlers_(registry, limiter != nullptr ? limiter->limits().request : RequestBounds{}),
      maintenance_(registry, metrics, injector),
      release_requests_(registry, metrics,
                        [metrics](absl::string_view outcome) {
                          if (metrics != nullptr) metrics->CountReleaseRequest(outcome);
                        }),
      owned_release_(&release_requests_) {
  std::apply([this](const auto&... rpc) { (AddUnary(rpc), ...); }, kUnaryRpcs);
  AddKeepLease();
  AddWatchEvents();
}

void IommuService::AddRawMethod(absl::string_view name, grpc::internal::RpcMethod::RpcType type,
                                grpc::internal::MethodHandler* handler) {
  const std::string& path = method_paths_.emplace_back(
      absl::StrCat("/", iommu::v1::Iommu::service_full_name(), "/", name));
  auto* method = new grpc::internal::RpcServiceMethod(path.c_str(), type, handler);
  method->SetServerApiType(grpc::internal::RpcServiceMethod::ApiType::RAW_CALL_BACK);
  AddMethod(method);
}

template <typename Rpc>
void IommuService::AddUnary(const Rpc& rpc) {
  using Request = typename Rpc::RequestType;
  using Response = typename Rpc::ResponseType;
  UnaryFunction<Request, Response> serve = [this, rpc](grpc::CallbackServerContext* context,
                                                       const Request& request,
                                                       Response* response) {
    return Serve(*context, rpc, request, response);
  };
  grpc::internal::MethodHandler* handler;
  if constexpr (std::is_same_v<Request, iommu::v1::ReleaseDeviceRequest>) {
    // May wait for the device's owner: off gRPC's callback threads, and never on a strand (the
    // owner's own calls on the group would queue behind it).
    handler = NewUnaryHandler<Request, Response>(
        std::move(serve), [this](const Request&, std::function<void()> work) {
          release_executor_.Schedule(std::move(work));
        });
  } else if constexpr (Rpc::kind == RpcKind::kMutating) {
    handler = NewUnaryHandler<Request, Response>(
        std::move(serve), [this](const Request& request, std::function<void()> work) {
          if (KeyStrands* strands = mutating_strands_.get(); strands != nullptr) {
            strands->Run(StrandKeyOf(request), std::move(work));
          } else {
            work();
          }
        });
  } else {
    handler = NewUnaryHandler<Request, Response>(std::move(serve));
  }
  AddRawMethod(rpc.name, grpc::internal::RpcMethod::NORMAL_RPC, handler);
}

void IommuService::RunMutatingCallsOffGrpcThreads(int threads, bool per_group,
                                                  bool inline_when_idle) {
  per_group_strands_ = per_group;
  mutating_strands_ = std::make_unique<KeyStrands>(threads, inline_when_idle);
}

template <typename Request>
std::optional<uint64_t> IommuService::StrandKeyOf(const Request& request) const {
  if (!per_group_strands_) return std::nullopt;
  if constexpr (HasGroupIdField<Request>::value) {
    if (request.group_id() != 0) return request.group_id();
  }
  if constexpr (HasDeviceField<Request>::value) {
    if (std::optional<GroupId> group = registry_->GroupOfDevice(request.device())) return *group;
  }
  if constexpr (HasDomainIdField<Request>::value) {
    if (request.domain_id() != 0 && request.domain_id() < kDomainStrandBit) {
      return kDomainStrandBit | request.domain_id();
    }
  }
  return std::nullopt;  // no single group: the shared lane
}

void IommuService::AddKeepLease() {
  AddRawMethod(kKeepLeaseRpc.name, grpc::internal::RpcMethod::BIDI_STREAMING,
               NewBidiStreamHandler<iommu::v1::Group>(
                   [this](grpc::CallbackServerContext* context) { return KeepLease(context); }));
}

void IommuService::AddWatchEvents() {
  AddRawMethod(kWatchEventsRpc.name, grpc::internal::RpcMethod::SERVER_STREAMING,
               NewServerStreamHandler<iommu::v1::WatchEventsRequest, iommu::v1::Event>(
                   [this](grpc::CallbackServerContext* context,
                          const iommu::v1::WatchEventsRequest& request) {
                     return WatchEvents(*context, request);
                   }));
}

template <typename Handlers>
const Handlers& IommuService::HandlersOf() const {
  if constexpr (std::is_same_v<Handlers, RequestHandlers>) {
    return handlers_;
  } else {
    static_assert(std::is_same_v<Handlers, MaintenanceHandlers>, "a handler class of rpc_table.h");
    return maintenance_;
  }
}

absl::StatusOr<ClientLimiter::Permit> IommuService::Admit(const std::string& principal,
                                                          LimiterSlot slot) const {
  return slot == LimiterSlot::kWatcher ? limiter_->AdmitWatcher(principal)
                                       : limiter_->AdmitCall(principal);
}

absl::Status IommuService::CheckReady() const {
  if (!recovering_.load()) return absl::OkStatus();
  return Error(absl::StatusCode::kUnavailable, reason::kRecovering,
               "iommud is recovering its registry from the state store; retry shortly");
}

template <typename Rpc, typename Request>
absl::StatusOr<const Request*> IommuService::AuthorizeCall(const grpc::ServerContextBase& context,
                                                           const Rpc& rpc, const Request* request,
                                                           Request* rewritten,
                                                           ClientLimiter::Permit* permit,
                                                           std::string* principal) const {
  RETURN_IF_ERROR(CheckReady());
  if (authorizer_ == nullptr) return request;
  ASSIGN_OR_RETURN(const AuthorizedCaller caller,
                   authorizer_->Authorize(context, rpc.name, rpc.role));
  *principal = caller.identity.principal;
  if (limiter_ != nullptr) {
    ASSIGN_OR_RETURN(*permit, Admit(*principal, SlotOf(rpc)));
    RETURN_IF_ERROR(limiter_->CheckRequest(*principal, *request));
  }
  RETURN_IF_ERROR(CheckTarget(caller, rpc.name, *request));
  if constexpr (HasOwnerField<Request>::value) {
    ASSIGN_OR_RETURN(std::string owner,
                     authorizer_->EffectiveOwner(caller, rpc.name, request->owner()));
    *rewritten = *request;
    rewritten->set_owner(std::move(owner));
    return rewritten;
  }
  return request;
}

absl::Status IommuService::CheckTarget(const AuthorizedCaller& caller, absl::string_view method,
                                       const iommu::v1::ReleaseDeviceRequest& request) const {
  if (request.force()) {
    RETURN_IF_ERROR(authorizer_->RequireAdminFor(
        caller, method, reason::kForceReleaseAdminOnly, "force_release",
        absl::StrCat("forcing the release of '", request.device(),
                     "' (revoking its owner's mappings) needs the admin role: release it without "
                     "force, which asks the owner and waits for it")));
  }
  if (caller.role >= Role::kAdmin) return absl::OkStatus();
  absl::StatusOr<DeviceInfo> device = registry_->GetDevice(request.device());
  if (!device.ok()) return absl::OkStatus();  // the handler reports it
  absl::StatusOr<GroupInfo> group = registry_->GetGroup(device->group);
  if (!group.ok()) return absl::OkStatus();
  // Racy by design: an owner that claims the group after this check and before the release is
  // treated like one that claimed it just after (the release records the leak either way).
  return authorizer_->CheckMayTouch(caller, method, group->owner);
}

absl::Status IommuService::CheckTarget(const AuthorizedCaller& caller, absl::string_view method,
                                       const iommu::v1::MapRequest& request) const {
  if (request.region_id() != 0) return absl::OkStatus();
  return authorizer_->RequireAdminFor(
      caller, method, reason::kRawPaddrAdminOnly, "raw_paddr",
      "mapping a raw physical address needs the admin role: register the memory "
      "(RegisterMemory) and map (region_id, region_offset)");
}

absl::Status IommuService::CheckTarget(const AuthorizedCaller& caller, absl::string_view method,
                                       const iommu::v1::MapBatchRequest& request) const {
  for (const iommu::v1::MapBatchEntry& entry : request.entries()) {
    if (entry.region_id() != 0) continue;
    return authorizer_->RequireAdminFor(
        caller, method, reason::kRawPaddrAdminOnly, "raw_paddr",
        "mapping a raw physical address needs the admin role: register the memory "
        "(RegisterMemory) and map (region_id, region_offset)");
  }
  return absl::OkStatus();
}

absl::Status IommuService::CheckTarget(const AuthorizedCaller& caller, absl::string_view method,
                                       const iommu::v1::AllocDomainRequest& request) const {
  if (request.type() != iommu::v1::DOMAIN_TYPE_IDENTITY) return absl::OkStatus();
  return authorizer_->RequireAdminFor(
      caller, method, reason::kIdentityDomainAdminOnly, "identity_domain",
      "an IDENTITY domain lets devices reach all physical memory: it needs the admin role");
}

absl::Status IommuService::CheckTarget(const AuthorizedCaller& caller, absl::string_view method,
                                       const iommu::v1::ProbeDeviceRequest& request) const {
  if (request.default_domain_type() != iommu::v1::DOMAIN_TYPE_IDENTITY) return absl::OkStatus();
  return authorizer_->RequireAdminFor(
      caller, method, reason::kIdentityDomainAdminOnly, "identity_domain",
      "an IDENTITY default domain lets the device reach all physical memory: it needs the admin "
      "role");
}

absl::Status IommuService::CheckTarget(const AuthorizedCaller& caller, absl::string_view method,
                                       const iommu::v1::HandOverGroupRequest& request) const {
  const CallerIdentity& identity = caller.identity;
  if (identity.uid.has_value() && identity.gid.has_value() && *identity.uid == request.uid() &&
      *identity.gid == request.gid()) {
    return absl::OkStatus();
  }
  return authorizer_->RequireAdminFor(
      caller, method, reason::kHandoverUidNotCallers, "foreign_uid",
      absl::StrCat("handing group ", request.group_id(), " to uid ", request.uid(), " gid ",
                   request.gid(),
                   " needs the admin role: a caller below admin may hand a group only to its own "
                   "uid and gid (its unix peer credentials)"));
}

absl::Status IommuService::StopWaiting(const grpc::ServerContextBase& context,
                                       const iommu::v1::ReleaseDeviceRequest& request) const {
  if (shutting_down_.load()) {
    return Error(absl::StatusCode::kUnavailable, reason::kServerShuttingDown,
                 absl::StrCat("iommud is shutting down: the release of '", request.device(),
                              "' stopped waiting for its owner; nothing changed"));
  }
  if (context.IsCancelled()) {
    return Error(absl::StatusCode::kCancelled, reason::kReleaseWaitCancelled,
                 absl::StrCat("the release of '", request.device(),
                              "' was cancelled while it waited for its owner; nothing changed"),
                 {{"device", request.device()}});
  }
  return CheckDeadline(context, kReleaseDeviceMethod);
}

template <typename Request, typename Response, typename Handler>
absl::Status IommuService::RunMutating(absl::string_view method, absl::string_view principal,
                                       const Request& request, Response* response,
                                       Handler handler) const {
  if (idempotency_ == nullptr) {
    RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
    CallContext none;  // no record to keep
    return handler(request, response, &none);
  }
  return idempotency_->Run<Request, Response>(
      method, principal, request, response, handler,
      [&](uint64_t result_ref, Response* out) {
        return RebuildReply(handlers_, request, result_ref, out);
      });
}

template <typename Rpc>
absl::Status IommuService::Serve(const grpc::ServerContextBase& context, const Rpc& rpc,
                                 const typename Rpc::RequestType& request,
                                 typename Rpc::ResponseType* response) const {
  using Request = typename Rpc::RequestType;
  using Response = typename Rpc::ResponseType;
  Request rewritten;
  ClientLimiter::Permit permit;  // held until the handler returns
  std::string principal;
  ASSIGN_OR_RETURN(const Request* authorized,
                   AuthorizeCall(context, rpc, &request, &rewritten, &permit, &principal));
  // Last step before the handler: a call its client has given up on is not executed.
  RETURN_IF_ERROR(CheckDeadline(context, rpc.name));
  const auto& handlers = HandlersOf<typename Rpc::HandlersType>();
  if constexpr (Rpc::kind == RpcKind::kMutating) {
    const auto run = [&] {
      return RunMutating(rpc.name, principal, *authorized, response,
                         [&](const Request& r, Response* out, CallContext* call) {
                           return (handlers.*rpc.handler)(r, out, call);
                         });
    };
    if constexpr (std::is_same_v<Request, iommu::v1::ReleaseDeviceRequest>) {
      // VFIO's vfio_unregister_group_dev: ask the owner, wait for it (this runs on
      // release_executor_), then release; refused or forced when it does not let go in time.
      const std::optional<absl::Duration> wait =
          authorized->has_wait_millis()
              ? std::optional<absl::Duration>(absl::Milliseconds(authorized->wait_millis()))
              : std::nullopt;
      ASSIGN_OR_RETURN(const OwnedDeviceRelease::Plan plan,
                       owned_release_.WaitForOwner(authorized->device(), owned_release_.WaitFor(wait),
                                            authorized->force(),
                                            [&] { return StopWaiting(context, *authorized); }));
      const absl::Status released = run();
      owned_release_.Finish(authorized->device(), plan, released);
      return released;
    } else {
      return run();
    }
  } else {
    return (handlers.*rpc.handler)(*authorized, response);
  }
}

grpc::ServerBidiReactor<grpc::ByteBuffer, iommu::v1::Group>* IommuService::KeepLease(
    grpc::CallbackServerContext* context) {
  if (absl::Status ready = CheckReady(); !ready.ok()) return KeepLeaseReactor::Failed(ready);
  std::optional<AuthorizedCaller> caller;  // none without an authorizer: owners pass unchanged
  ClientLimiter::Permit permit;            // the stream's call slot, held for its life
  if (authorizer_ != nullptr) {
    absl::StatusOr<AuthorizedCaller> authorized =
        authorizer_->Authorize(*context, kKeepLeaseRpc.name, kKeepLeaseRpc.role);
    if (!authorized.ok()) return KeepLeaseReactor::Failed(authorized.status());
    if (limiter_ != nullptr) {
      absl::StatusOr<ClientLimiter::Permit> admitted =
          Admit(authorized->identity.principal, kKeepLeaseRpc.slot);
      if (!admitted.ok()) return KeepLeaseReactor::Failed(admitted.status());
      permit = *std::move(admitted);
    }
    caller = *std::move(authorized);
  }
  KeepLeaseReactor::Admit admit =
      [this, caller = std::move(caller)](const iommu::v1::KeepLeaseRequest& message)
      -> absl::StatusOr<iommu::v1::RenewLeaseRequest> {
    RETURN_IF_ERROR(CheckReady());
    iommu::v1::RenewLeaseRequest renew;
    renew.set_group_id(message.group_id());
    renew.set_lease_ttl_millis(message.lease_ttl_millis());
    if (!caller.has_value()) {
      renew.set_owner(message.owner());
      return renew;
    }
    const std::string& principal = caller->identity.principal;
    if (limiter_ != nullptr) {
      RETURN_IF_ERROR(limiter_->AdmitMessage(principal));
      RETURN_IF_ERROR(limiter_->CheckRequest(principal, message));
    }
    ASSIGN_OR_RETURN(std::string owner,
                     authorizer_->EffectiveOwner(*caller, kKeepLeaseRpc.name, message.owner()));
    renew.set_owner(std::move(owner));
    return renew;
  };
  return new KeepLeaseReactor(
      &handlers_, &keep_lease_executor_, std::move(admit),
      [this](uint64_t group, uint64_t stream) { ReleaseBound(group, stream); }, std::move(permit));
}

void IommuService::ReleaseBound(uint64_t group, uint64_t stream) {
  if (shutting_down_.load()) return;
  keep_lease_executor_.Schedule([this, group, stream] {
    if (shutting_down_.load()) return;
    const absl::StatusOr<bool> released = handlers_.ReleaseBoundLease(group, stream);
    if (!released.ok()) {
      LogToStderr(LogLevel::kError,
                  absl::StrCat("the KeepLease stream bound to group ", group,
                               " ended but releasing its ownership failed (its lease's TTL "
                               "decides now): ",
                               released.status().ToString()));
    }
    if (metrics_ != nullptr) {
      metrics_->CountBoundStreamRelease(!released.ok() ? "failed"
                                        : *released    ? "released"
                                                       : "kept");
    }
  });
}

grpc::ServerWriteReactor<iommu::v1::Event>* IommuService::WatchEvents(
    const grpc::ServerContextBase& context, const iommu::v1::WatchEventsRequest& request) {
  using FailedStream = FailedWriteReactor<iommu::v1::Event>;
  iommu::v1::WatchEventsRequest unused;  // (no owner field to rewrite)
  ClientLimiter::Permit permit;          // the stream's watcher slot, held for its life
  std::string principal;
  if (absl::StatusOr<const iommu::v1::WatchEventsRequest*> allowed =
          AuthorizeCall(context, kWatchEventsRpc, &request, &unused, &permit, &principal);
      !allowed.ok()) {
    return new FailedStream(allowed.status());
  }
  if (events_ == nullptr) {
    return new FailedStream(Error(absl::StatusCode::kUnimplemented, reason::kNoEventStream,
                                  "this server has no event stream"));
  }
  absl::StatusOr<WatchSpec> spec = WatchSpecFromProto(request);
  if (!spec.ok()) return new FailedStream(spec.status());
  if (events_->closed()) return new FailedStream(ShuttingDownStatus());
  return new WatchEventsReactor(registry_, events_, *spec, std::move(permit));
}

}  // namespace iommud
