#include "server/api/raw_request.h"

#include <grpcpp/support/proto_buffer_reader.h>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {

absl::Status ParseRequest(const grpc::ByteBuffer& bytes, google::protobuf::MessageLite* request) {
  request->Clear();
  grpc::ByteBuffer copy(bytes);  // shares the slices; the reader consumes its buffer
  bool parsed = false;
  {
    grpc::ProtoBufferReader reader(&copy);
    parsed = reader.status().ok() && request->ParseFromZeroCopyStream(&reader);
  }
  if (parsed) return absl::OkStatus();
  request->Clear();
  return Error(absl::StatusCode::kInvalidArgument, reason::kMalformedRequest,
               absl::StrCat("the request is not a valid ", request->GetTypeName(), " message"),
               {{"type", request->GetTypeName()}});
}

}  // namespace iommud
