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

google::rpc::Status ToRpcStatus(const absl::Status& status) {
  google::rpc::Status rpc_status;
  if (status.ok()) return rpc_status;
  google::rpc::ErrorInfo info;
  std::string reason = ErrorReason(status);
  info.set_reason(reason.empty() ? CodeReason(status.code()) : reason);
  info.set_domain(std::string(kErrorDomain));
  for (const auto& [key, value] : GetErrorMetadata(status)) (*info.mutable_metadata())[key] = value;
  rpc_status.set_code(static_cast<int>(status.code()));
  rpc_status.set_message(std::string(status.message()));
  rpc_status.add_details()->PackFrom(info);
  return rpc_status;
}

absl::Status FromRpcStatus(const google::rpc::Status& rpc_status) {
  if (rpc_status.code() == 0) return absl::OkStatus();
  const auto code = rpc_status.code() > 0 && rpc_status.code() <= 16
                        ? static_cast<absl::StatusCode>(rpc_status.code())
                        : absl::StatusCode::kUnknown;
  for (const auto& detail : rpc_status.details()) {
    google::rpc::ErrorInfo info;
    if (detail.Is<google::rpc::ErrorInfo>() && detail.UnpackTo(&info)) {
      ErrorMetadata metadata(info.metadata().begin(), info.metadata().end());
      return Error(code, info.reason(), rpc_status.message(), metadata);
    }
  }
  return absl::Status(code, rpc_status.message());
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const google::rpc::Status rpc_status = ToRpcStatus(status);
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
