#include "server/iommu_service.h"

#include "proto/status_codec.h"

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

}  // namespace

IommuService::IommuService(Registry* registry) : handlers_(registry) {}

// Each RPC: run its handler to completion, then finish the call.
#define IOMMUD_UNARY_RPC(method, Request, Response)                                    \
  grpc::ServerUnaryReactor* IommuService::method(grpc::CallbackServerContext* context, \
                                                 const iommu::v1::Request* request,    \
                                                 iommu::v1::Response* response) {      \
    return FinishCall(context, handlers_.method(*request, response));                  \
  }

IOMMUD_UNARY_RPC(ListUnits, ListUnitsRequest, ListUnitsResponse)
IOMMUD_UNARY_RPC(ListGroups, ListGroupsRequest, ListGroupsResponse)
IOMMUD_UNARY_RPC(GetGroup, GetGroupRequest, Group)
IOMMUD_UNARY_RPC(ListDevices, ListDevicesRequest, ListDevicesResponse)
IOMMUD_UNARY_RPC(GetDevice, GetDeviceRequest, Device)
IOMMUD_UNARY_RPC(ListDomains, ListDomainsRequest, ListDomainsResponse)
IOMMUD_UNARY_RPC(GetDomain, GetDomainRequest, Domain)
IOMMUD_UNARY_RPC(ProbeDevice, ProbeDeviceRequest, Device)
IOMMUD_UNARY_RPC(ReleaseDevice, ReleaseDeviceRequest, ReleaseDeviceResponse)
IOMMUD_UNARY_RPC(UseDefaultDomain, UseDefaultDomainRequest, Group)
IOMMUD_UNARY_RPC(UnuseDefaultDomain, UnuseDefaultDomainRequest, Group)
IOMMUD_UNARY_RPC(ClaimOwnership, ClaimOwnershipRequest, Group)
IOMMUD_UNARY_RPC(ReleaseOwnership, ReleaseOwnershipRequest, Group)
IOMMUD_UNARY_RPC(ClaimDevice, ClaimDeviceRequest, Group)
IOMMUD_UNARY_RPC(ReleaseDeviceOwnership, ReleaseDeviceOwnershipRequest, Group)
IOMMUD_UNARY_RPC(AllocDomain, AllocDomainRequest, Domain)
IOMMUD_UNARY_RPC(FreeDomain, FreeDomainRequest, Domain)
IOMMUD_UNARY_RPC(AttachDevice, AttachDeviceRequest, Group)
IOMMUD_UNARY_RPC(AttachGroup, AttachGroupRequest, Group)
IOMMUD_UNARY_RPC(DetachGroup, DetachGroupRequest, Group)
IOMMUD_UNARY_RPC(Map, MapRequest, MapResponse)
IOMMUD_UNARY_RPC(Unmap, UnmapRequest, UnmapResponse)
IOMMUD_UNARY_RPC(ListMappings, ListMappingsRequest, ListMappingsResponse)
IOMMUD_UNARY_RPC(Translate, TranslateRequest, TranslateResponse)
IOMMUD_UNARY_RPC(ListFaults, ListFaultsRequest, ListFaultsResponse)

#undef IOMMUD_UNARY_RPC

}  // namespace iommud
