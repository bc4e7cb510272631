#include "server/api/deadline_check.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {

absl::Status CheckDeadline(std::chrono::system_clock::time_point deadline,
                           std::chrono::system_clock::time_point now, absl::string_view method) {
  if (deadline > now) return absl::OkStatus();
  return Error(absl::StatusCode::kDeadlineExceeded, reason::kDeadlinePassed,
               absl::StrCat("the deadline of ", method,
                            " passed before it could run; it was not executed"),
               {{"method", std::string(method)}});
}

absl::Status CheckDeadline(const grpc::ServerContextBase& context, absl::string_view method) {
  return CheckDeadline(context.deadline(), std::chrono::system_clock::now() + kDeadlineResolution,
                       method);
}

}  // namespace iommud
