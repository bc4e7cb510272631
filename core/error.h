// Errors with a machine-readable reason.
//
// Every error the core returns carries an UPPER_SNAKE reason (a constant of core/error_reasons.h,
// catalogued in docs/errors.md) and the ids involved, as absl::Status payloads; server/ turns them
// into a google.rpc.ErrorInfo detail. Core code never builds a bare absl::Status for a user-visible
// failure: it uses Error().
#ifndef IOMMUD_CORE_ERROR_H_
#define IOMMUD_CORE_ERROR_H_

#include <map>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace iommud {

// Metadata of an error: e.g. {{"device", "0000:03:00.0"}, {"group_id", "7"}}.
using ErrorMetadata = std::map<std::string, std::string>;

// Builds a non-OK status with `reason` (UPPER_SNAKE) and `metadata`. `code` must not be kOk.
absl::Status Error(absl::StatusCode code, absl::string_view reason, absl::string_view message,
                   const ErrorMetadata& metadata = {});

// The reason of `status` ("" when it has none, e.g. an OK status).
std::string ErrorReason(const absl::Status& status);
// The metadata of `status` (empty when it has none).
ErrorMetadata GetErrorMetadata(const absl::Status& status);

// The ErrorInfo domain the server reports.
inline constexpr absl::string_view kErrorDomain = "iommud.dev";

}  // namespace iommud

#endif  // IOMMUD_CORE_ERROR_H_
