#include "core/error.h"

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace iommud {
namespace {

constexpr absl::string_view kReasonUrl = "type.iommud.dev/reason";
constexpr absl::string_view kMetadataUrlPrefix = "type.iommud.dev/metadata/";

}  // namespace

absl::Status Error(absl::StatusCode code, absl::string_view reason, absl::string_view message,
                   const ErrorMetadata& metadata) {
  absl::Status status(code, message);
  status.SetPayload(kReasonUrl, absl::Cord(reason));
  for (const auto& [key, value] : metadata) {
    status.SetPayload(absl::StrCat(kMetadataUrlPrefix, key), absl::Cord(value));
  }
  return status;
}

std::string ErrorReason(const absl::Status& status) {
  auto reason = status.GetPayload(kReasonUrl);
  return reason.has_value() ? std::string(*reason) : std::string();
}

ErrorMetadata GetErrorMetadata(const absl::Status& status) {
  ErrorMetadata metadata;
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& value) {
    if (absl::StartsWith(url, kMetadataUrlPrefix)) {
      metadata[std::string(url.substr(kMetadataUrlPrefix.size()))] = std::string(value);
    }
  });
  return metadata;
}

}  // namespace iommud
