// The RPCs of iommu.v1.Iommu, declared once: IommuService (iommu_service.h) registers every method
// from this table and derives each call's handling from its entry.
//
// A unary entry names the method as the proto does, its request and response types (from the
// handler's signature), its kind and its handler: a named const member function of RequestHandlers
// (registry requests) or MaintenanceHandlers (audit, contention, fault injection), so
// go-to-definition leads from the table to the code. The kind decides:
//   kPlain     the handler runs as is (reads, and the host-wide calls that take no request_id:
//              Reconcile, fault injection);
//   kMutating  the request has a request_id: the call runs through the IdempotencyKeeper
//              (idempotency.h; a lost reply is rebuilt by the RebuildReply overload of its request
//              type, rebuilt_replies.h).
// The two streams (KeepLease, WatchEvents) have reactors of their own and are named here too.
// tests/server/rpc_table_test.cc checks the table against the proto's service descriptor: every
// method exactly once, with its request and response types and streaming kind.
#ifndef IOMMUD_SERVER_RPC_TABLE_H_
#define IOMMUD_SERVER_RPC_TABLE_H_

#include <tuple>

#include "absl/status/status.h"
#include "iommu/v1/iommu.pb.h"
#include "server/maintenance_handlers.h"
#include "server/request_handlers.h"

namespace iommud {

enum class RpcKind { kPlain, kMutating };

template <RpcKind kKind, typename Handlers, typename Request, typename Response>
struct UnaryRpc {
  using HandlersType = Handlers;
  using RequestType = Request;
  using ResponseType = Response;
  static constexpr RpcKind kind = kKind;

  const char* name;  // the method's name in iommu.v1.Iommu, e.g. "AttachGroup"
  absl::Status (Handlers::*handler)(const Request&, Response*) const;
};

template <typename Handlers, typename Request, typename Response>
constexpr UnaryRpc<RpcKind::kPlain, Handlers, Request, Response> PlainRpc(
    const char* name, absl::Status (Handlers::*handler)(const Request&, Response*) const) {
  return {name, handler};
}

template <typename Handlers, typename Request, typename Response>
constexpr UnaryRpc<RpcKind::kMutating, Handlers, Request, Response> MutatingRpc(
    const char* name, absl::Status (Handlers::*handler)(const Request&, Response*) const) {
  return {name, handler};
}

// A streaming method (its reactor is registered by IommuService itself).
struct StreamRpc {
  const char* name;
};

// Every unary RPC, in the proto's order.
inline constexpr auto kUnaryRpcs = std::make_tuple(
    PlainRpc("ListUnits", &RequestHandlers::ListUnits),
    PlainRpc("ListGroups", &RequestHandlers::ListGroups),
    PlainRpc("GetGroup", &RequestHandlers::GetGroup),
    PlainRpc("ListDevices", &RequestHandlers::ListDevices),
    PlainRpc("GetDevice", &RequestHandlers::GetDevice),
    PlainRpc("ListDomains", &RequestHandlers::ListDomains),
    PlainRpc("GetDomain", &RequestHandlers::GetDomain),
    MutatingRpc("ProbeDevice", &RequestHandlers::ProbeDevice),
    MutatingRpc("ReleaseDevice", &RequestHandlers::ReleaseDevice),
    MutatingRpc("UseDefaultDomain", &RequestHandlers::UseDefaultDomain),
    MutatingRpc("UnuseDefaultDomain", &RequestHandlers::UnuseDefaultDomain),
    MutatingRpc("ClaimOwnership", &RequestHandlers::ClaimOwnership),
    MutatingRpc("ReleaseOwnership", &RequestHandlers::ReleaseOwnership),
    MutatingRpc("ClaimDevice", &RequestHandlers::ClaimDevice),
    MutatingRpc("ReleaseDeviceOwnership", &RequestHandlers::ReleaseDeviceOwnership),
    MutatingRpc("RenewLease", &RequestHandlers::RenewLease),
    MutatingRpc("AllocDomain", &RequestHandlers::AllocDomain),
    MutatingRpc("FreeDomain", &RequestHandlers::FreeDomain),
    MutatingRpc("AttachDevice", &RequestHandlers::AttachDevice),
    MutatingRpc("AttachGroup", &RequestHandlers::AttachGroup),
    MutatingRpc("DetachGroup", &RequestHandlers::DetachGroup),
    MutatingRpc("Map", &RequestHandlers::Map),
    MutatingRpc("Unmap", &RequestHandlers::Unmap),
    PlainRpc("ListMappings", &RequestHandlers::ListMappings),
    PlainRpc("Translate", &RequestHandlers::Translate),
    PlainRpc("ListTranslationFaults", &RequestHandlers::ListTranslationFaults),
    PlainRpc("Audit", &MaintenanceHandlers::Audit),
    PlainRpc("Reconcile", &MaintenanceHandlers::Reconcile),
    PlainRpc("ListContendedGroups", &MaintenanceHandlers::ListContendedGroups),
    PlainRpc("InjectFault", &MaintenanceHandlers::InjectFault),
    PlainRpc("ListFaults", &MaintenanceHandlers::ListFaults),
    PlainRpc("ClearFaults", &MaintenanceHandlers::ClearFaults));

inline constexpr StreamRpc kKeepLeaseRpc{"KeepLease"};      // bidi: KeepLeaseRequest -> Group
inline constexpr StreamRpc kWatchEventsRpc{"WatchEvents"};  // server: WatchEventsRequest -> Event

}  // namespace iommud

#endif  // IOMMUD_SERVER_RPC_TABLE_H_
