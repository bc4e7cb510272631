#include "server/observability/channelz_service.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <grpc/grpc.h>
#include <grpc/support/alloc.h>
#include <grpcpp/ext/channelz_service_plugin.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "proto/status_codec.h"

namespace iommud {
namespace {

constexpr absl::string_view kPrefix = "/grpc.channelz.v1.Channelz/";

// A reference the linker keeps: libgrpcpp_channelz (linked --as-needed) registers the channelz
// messages' descriptors in protobuf's generated pool when it is loaded, and nothing else here
// calls into it. (Calling InitChannelzService would register gRPC's own, unauthorized service.)
void (*volatile const kKeepChannelzLinked)() = &grpc::channelz::experimental::InitChannelzService;

// An integer field of a channelz request (all are int64; 0 when absent).
intptr_t Id(const google::protobuf::Message& request, const char* name) {
  const google::protobuf::FieldDescriptor* field = request.GetDescriptor()->FindFieldByName(name);
  if (field == nullptr) return 0;
  const google::protobuf::Reflection* reflection = request.GetReflection();
  switch (field->cpp_type()) {
    case google::protobuf::FieldDescriptor::CPPTYPE_INT64:
      return static_cast<intptr_t>(reflection->GetInt64(request, field));
    case google::protobuf::FieldDescriptor::CPPTYPE_UINT64:
      return static_cast<intptr_t>(reflection->GetUInt64(request, field));
    case google::protobuf::FieldDescriptor::CPPTYPE_INT32:
      return reflection->GetInt32(request, field);
    default:
      return 0;
  }
}

// gRPC core's JSON for `method` and `request`; null when the object does not exist.
char* CoreJson(absl::string_view method, const google::protobuf::Message& request) {
  if (method == "GetTopChannels") {
    return grpc_channelz_get_top_channels(Id(request, "start_channel_id"));
  }
  if (method == "GetServers") return grpc_channelz_get_servers(Id(request, "start_server_id"));
  if (method == "GetServer") return grpc_channelz_get_server(Id(request, "server_id"));
  if (method == "GetServerSockets") {
    return grpc_channelz_get_server_sockets(Id(request, "server_id"),
                                            Id(request, "start_socket_id"),
                                            Id(request, "max_results"));
  }
  if (method == "GetChannel") return grpc_channelz_get_channel(Id(request, "channel_id"));
  if (method == "GetSubchannel") return grpc_channelz_get_subchannel(Id(request, "subchannel_id"));
  if (method == "GetSocket") return grpc_channelz_get_socket(Id(request, "socket_id"));
  return nullptr;
}

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  (void)buffer.Dump(&slices);
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

// One call: authorized at once (admin), then one request message read and answered.
class ChannelzReactor : public grpc::ServerGenericBidiReactor {
 public:
  ChannelzReactor(grpc::GenericCallbackServerContext* context, const Authorizer* authorizer)
      : method_(context->method()) {
    if (!absl::StartsWith(method_, kPrefix)) {
      Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, ""));
      return;
    }
    absl::StatusOr<AuthorizedCaller> caller = authorizer->Authorize(
        *context, absl::StrCat("Channelz.", method_.substr(kPrefix.size())), Role::kAdmin);
    if (!caller.ok()) {
      Finish(ToGrpcStatus(caller.status()));
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(ToGrpcStatus(Error(absl::StatusCode::kInvalidArgument, reason::kMalformedRequest,
                                "no request message")));
      return;
    }
    absl::StatusOr<std::string> answer = AnswerChannelz(method_, Flatten(request_));
    if (!answer.ok()) {
      Finish(ToGrpcStatus(answer.status()));
      return;
    }
    grpc::Slice slice(*answer);
    response_ = grpc::ByteBuffer(&slice, 1);
    StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
  }

  void OnDone() override { delete this; }

 private:
  const std::string method_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
};

}  // namespace

absl::StatusOr<std::string> AnswerChannelz(absl::string_view method, absl::string_view request) {
  const google::protobuf::DescriptorPool* pool =
      google::protobuf::DescriptorPool::generated_pool();
  const google::protobuf::ServiceDescriptor* service =
      pool->FindServiceByName("grpc.channelz.v1.Channelz");
  if (service == nullptr || !absl::ConsumePrefix(&method, kPrefix)) {
    return absl::UnimplementedError(absl::StrCat("no channelz method ", method));
  }
  const google::protobuf::MethodDescriptor* descriptor =
      service->FindMethodByName(std::string(method));
  if (descriptor == nullptr) {
    return absl::UnimplementedError(absl::StrCat("no channelz method ", method));
  }
  google::protobuf::MessageFactory* factory =
      google::protobuf::MessageFactory::generated_factory();
  std::unique_ptr<google::protobuf::Message> parsed(
      factory->GetPrototype(descriptor->input_type())->New());
  if (!parsed->ParseFromArray(request.data(), static_cast<int>(request.size()))) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kMalformedRequest,
                 absl::StrCat("not a ", descriptor->input_type()->full_name()),
                 {{"type", descriptor->input_type()->full_name()}});
  }
  char* json = CoreJson(method, *parsed);
  if (json == nullptr) {
    return absl::NotFoundError(absl::StrCat("channelz: no object for that id (", method, ")"));
  }
  std::unique_ptr<google::protobuf::Message> response(
      factory->GetPrototype(descriptor->output_type())->New());
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto converted = google::protobuf::util::JsonStringToMessage(json, response.get(), options);
  gpr_free(json);
  if (!converted.ok()) {
    return absl::InternalError(
        absl::StrCat("channelz: gRPC's JSON does not convert: ", converted.ToString()));
  }
  return response->SerializeAsString();
}

ChannelzService::ChannelzService(const Authorizer* authorizer) : authorizer_(authorizer) {}

grpc::ServerGenericBidiReactor* ChannelzService::CreateReactor(
    grpc::GenericCallbackServerContext* context) {
  return new ChannelzReactor(context, authorizer_);
}

}  // namespace iommud
