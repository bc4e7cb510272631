#include "proto/status_codec.h"

#include <string>

#include "absl/strings/ascii.h"
#include "core/error.h"
#include "google/rpc/status.pb.h"

namespace iommud {
namespace {

std::string CodeReason(absl::StatusCode code) {
  return absl::AsciiStrToUpper(absl::StatusCodeToString(code));
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  google::rpc::ErrorInfo info;
  std::string reason = ErrorReason(status);
  info.set_reason(reason.empty() ? CodeReason(status.code()) : reason);
  info.set_domain(std::string(kErrorDomain));
  for (const auto& [key, value] : GetErrorMetadata(status)) (*info.mutable_metadata())[key] = value;

  google::rpc::Status rpc_status;
  rpc_status.set_code(static_cast<int>(status.code()));
  rpc_status.set_message(std::string(status.message()));
  rpc_status.add_details()->PackFrom(info);
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()),
                      rpc_status.SerializeAsString());
}

bool ExtractErrorInfo(const grpc::Status& status, google::rpc::ErrorInfo* info) {
  if (status.error_details().empty()) return false;
  google::rpc::Status rpc_status;
  if (!rpc_status.ParseFromString(status.error_details())) return false;
  for (const auto& detail : rpc_status.details()) {
    if (detail.Is<google::rpc::ErrorInfo>() && detail.UnpackTo(info)) return true;
  }
  return false;
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  auto code = static_cast<absl::StatusCode>(status.error_code());
  google::rpc::ErrorInfo info;
  if (!ExtractErrorInfo(status, &info)) return absl::Status(code, status.error_message());
  ErrorMetadata metadata(info.metadata().begin(), info.metadata().end());
  return Error(code, info.reason(), status.error_message(), metadata);
}

}  // namespace iommud
