// ChannelzService: grpc.channelz.v1.Channelz (gRPC's connection, call and socket introspection;
// iommud --channelz) for admins only.
//
// gRPC 1.51's own service (grpc::channelz::experimental::InitChannelzService) is registered for
// every server of the process and answers whoever may connect: no interceptor of that version can
// refuse a call. This one serves the same seven unary methods through a generic handler (so it
// needs no copy of channelz.proto): each call is authorized like an admin-only RPC of
// iommu.v1.Iommu (PERMISSION_DENIED, audit line, iommud_authz_denied_total), then answered from
// gRPC core's channelz registry (grpc_channelz_get_*, which returns the response as JSON), parsed
// into the response message whose descriptor libgrpcpp_channelz registers in protobuf's generated
// pool. A request that does not parse: INVALID_ARGUMENT; an id that names nothing: NOT_FOUND.
// Any other method (the generic handler receives every method no service registered):
// UNIMPLEMENTED, as without it. Thread-safe; the Authorizer is not owned and must outlive it.
#ifndef IOMMUD_SERVER_OBSERVABILITY_CHANNELZ_SERVICE_H_
#define IOMMUD_SERVER_OBSERVABILITY_CHANNELZ_SERVICE_H_

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/security/authorizer.h"

namespace iommud {

// "/grpc.channelz.v1.Channelz/<Method>" -> the serialized response, for the serialized `request`
// (no authorization: the service does that). Exposed for tests.
absl::StatusOr<std::string> AnswerChannelz(absl::string_view method, absl::string_view request);

class ChannelzService : public grpc::CallbackGenericService {
 public:
  explicit ChannelzService(const Authorizer* authorizer);

  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override;

 private:
  const Authorizer* const authorizer_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_OBSERVABILITY_CHANNELZ_SERVICE_H_
