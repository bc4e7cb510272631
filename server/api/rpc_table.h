// The RPCs of iommu.v1.Iommu, declared once: IommuService (iommu_service.h) registers every method
// from this table and derives each call's handling from its entry.
//
// A unary entry names the method as the proto does, the least role that may call it, its request
// and response types (from the handler's signature), its kind and its handler: a named const
// member function of RequestHandlers (registry requests) or MaintenanceHandlers (audit, contention,
// fault injection), so go-to-definition leads from the table to the code. Every call of every
// entry is refused while the daemon recovers (RECOVERING), authorized against the entry's role
// (authorizer.h), admitted by the ClientLimiter (limits.h: a call slot, or for WatchEvents a
// watcher slot) and bounded (request_bounds.h). The kind decides:
//   kPlain     the handler runs as is (reads, and the host-wide calls that take no request_id:
//              Reconcile, fault injection);
//   kMutating  the request has a request_id: the call runs through the IdempotencyKeeper
//              (idempotency.h; a lost reply is rebuilt by the RebuildReply overload of its request
//              type, rebuilt_replies.h).
// The two streams (KeepLease, WatchEvents) have reactors of their own and are named here too, with
// their role and the limiter slot they hold for their life.
// tests/server/api/rpc_table_test.cc checks the table against the proto's service descriptor: every
// method exactly once, with its request and response types and streaming kind.
#ifndef IOMMUD_SERVER_API_RPC_TABLE_H_
#define IOMMUD_SERVER_API_RPC_TABLE_H_

#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "iommu/v1/iommu.pb.h"
#include "server/api/maintenance_handlers.h"
#include "server/api/request_handlers.h"
#include "server/security/policy.h"

namespace iommud {

enum class RpcKind { kPlain, kMutating };

// A handler: plain ones take the request and the response; mutating ones also the call's
// CallContext (core/store/call_context.h), which carries the request's idempotency record to the
// registry explicitly.
template <RpcKind kKind, typename Handlers, typename Request, typename Response>
struct HandlerOf {
  using Type = absl::Status (Handlers::*)(const Request&, Response*) const;
};
template <typename Handlers, typename Request, typename Response>
struct HandlerOf<RpcKind::kMutating, Handlers, Request, Response> {
  using Type = absl::Status (Handlers::*)(const Request&, Response*, CallContext*) const;
};

template <RpcKind kKind, typename Handlers, typename Request, typename Response>
struct UnaryRpc {
  using HandlersType = Handlers;
  using RequestType = Request;
  using ResponseType = Response;
  static constexpr RpcKind kind = kKind;

  const char* name;  // the method's name in iommu.v1.Iommu, e.g. "AttachGroup"
  Role role;         // the least role that may call it
  typename HandlerOf<kKind, Handlers, Request, Response>::Type handler;
};

template <typename Handlers, typename Request, typename Response>
constexpr UnaryRpc<RpcKind::kPlain, Handlers, Request, Response> PlainRpc(
    const char* name, Role role,
    absl::Status (Handlers::*handler)(const Request&, Response*) const) {
  return {name, role, handler};
}

template <typename Handlers, typename Request, typename Response>
constexpr UnaryRpc<RpcKind::kMutating, Handlers, Request, Response> MutatingRpc(
    const char* name, Role role,
    absl::Status (Handlers::*handler)(const Request&, Response*, CallContext*) const) {
  return {name, role, handler};
}

// The ClientLimiter slot a call holds until it ends (a stream: for its life).
enum class LimiterSlot { kCall, kWatcher };

// A streaming method (its reactor is registered by IommuService itself).
struct StreamRpc {
  const char* name;
  Role role;
  LimiterSlot slot;
};

// The slot of an entry: a stream's own; kCall for every unary one.
constexpr LimiterSlot SlotOf(const StreamRpc& rpc) { return rpc.slot; }
template <typename Rpc>
constexpr LimiterSlot SlotOf(const Rpc& /*unary*/) {
  return LimiterSlot::kCall;
}

// Every unary RPC, in the proto's order.
inline constexpr auto kUnaryRpcs = std::make_tuple(
    PlainRpc("ListUnits", Role::kViewer, &RequestHandlers::ListUnits),
    PlainRpc("ListGroups", Role::kViewer, &RequestHandlers::ListGroups),
    PlainRpc("GetGroup", Role::kViewer, &RequestHandlers::GetGroup),
    PlainRpc("ListDevices", Role::kViewer, &RequestHandlers::ListDevices),
    PlainRpc("GetDevice", Role::kViewer, &RequestHandlers::GetDevice),
    PlainRpc("ListDomains", Role::kViewer, &RequestHandlers::ListDomains),
    PlainRpc("GetDomain", Role::kViewer, &RequestHandlers::GetDomain),
    MutatingRpc("ProbeDevice", Role::kOperator, &RequestHandlers::ProbeDevice),
    MutatingRpc("ReleaseDevice", Role::kOperator, &RequestHandlers::ReleaseDevice),
    MutatingRpc("UseDefaultDomain", Role::kOperator, &RequestHandlers::UseDefaultDomain),
    MutatingRpc("UnuseDefaultDomain", Role::kOperator, &RequestHandlers::UnuseDefaultDomain),
    MutatingRpc("ClaimOwnership", Role::kOperator, &RequestHandlers::ClaimOwnership),
    MutatingRpc("ReleaseOwnership", Role::kOperator, &RequestHandlers::ReleaseOwnership),
    MutatingRpc("ClaimDevice", Role::kOperator, &RequestHandlers::ClaimDevice),
    MutatingRpc("ReleaseDeviceOwnership", Role::kOperator,
                &RequestHandlers::ReleaseDeviceOwnership),
    MutatingRpc("HandOverGroup", Role::kOperator, &RequestHandlers::HandOverGroup),
    MutatingRpc("RenewLease", Role::kOperator, &RequestHandlers::RenewLease),
    MutatingRpc("AllocDomain", Role::kOperator, &RequestHandlers::AllocDomain),
    MutatingRpc("FreeDomain", Role::kOperator, &RequestHandlers::FreeDomain),
    MutatingRpc("AttachDevice", Role::kOperator, &RequestHandlers::AttachDevice),
    MutatingRpc("AttachGroup", Role::kOperator, &RequestHandlers::AttachGroup),
    MutatingRpc("DetachGroup", Role::kOperator, &RequestHandlers::DetachGroup),
    MutatingRpc("DetachDevice", Role::kOperator, &RequestHandlers::DetachDevice),
    MutatingRpc("ReplaceDomain", Role::kOperator, &RequestHandlers::ReplaceDomain),
    MutatingRpc("RegisterMemory", Role::kOperator, &RequestHandlers::RegisterMemory),
    MutatingRpc("UnregisterMemory", Role::kOperator, &RequestHandlers::UnregisterMemory),
    PlainRpc("ListMemoryRegions", Role::kViewer, &RequestHandlers::ListMemoryRegions),
    MutatingRpc("Map", Role::kOperator, &RequestHandlers::Map),
    MutatingRpc("MapBatch", Role::kOperator, &RequestHandlers::MapBatch),
    MutatingRpc("Unmap", Role::kOperator, &RequestHandlers::Unmap),
    PlainRpc("ListMappings", Role::kViewer, &RequestHandlers::ListMappings),
    PlainRpc("GetIovaRanges", Role::kViewer, &RequestHandlers::GetIovaRanges),
    PlainRpc("Translate", Role::kOperator, &RequestHandlers::Translate),
    PlainRpc("ListTranslationFaults", Role::kViewer, &RequestHandlers::ListTranslationFaults),
    PlainRpc("Audit", Role::kViewer, &MaintenanceHandlers::Audit),
    PlainRpc("Reconcile", Role::kAdmin, &MaintenanceHandlers::Reconcile),
    PlainRpc("ListContendedGroups", Role::kViewer, &MaintenanceHandlers::ListContendedGroups),
    PlainRpc("InjectFault", Role::kAdmin, &MaintenanceHandlers::InjectFault),
    PlainRpc("ListFaults", Role::kAdmin, &MaintenanceHandlers::ListFaults),
    PlainRpc("ClearFaults", Role::kAdmin, &MaintenanceHandlers::ClearFaults));

// bidi: KeepLeaseRequest -> Group; server streaming: WatchEventsRequest -> Event.
inline constexpr StreamRpc kKeepLeaseRpc{"KeepLease", Role::kOperator, LimiterSlot::kCall};
inline constexpr StreamRpc kWatchEventsRpc{"WatchEvents", Role::kViewer, LimiterSlot::kWatcher};

// The role `method` (a method name of iommu.v1.Iommu) requires per the table above; kAdmin for a
// name not in it (fail closed). For callers that only have a name (tests, tools): the service
// authorizes with the role of the entry it serves.
Role RequiredRole(absl::string_view method);

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_RPC_TABLE_H_
