// The deadline step of a unary call's admission (iommu_service.h): a call whose deadline has
// already passed when its handler would run is answered DEADLINE_EXCEEDED (DEADLINE_PASSED) and
// not executed, so that a client that gave up never finds its mutation applied after all.
#ifndef IOMMUD_SERVER_DEADLINE_CHECK_H_
#define IOMMUD_SERVER_DEADLINE_CHECK_H_

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace iommud {

// DEADLINE_EXCEEDED (DEADLINE_PASSED, metadata method) when `deadline` is not after `now`; OK
// otherwise (a call without a deadline has an infinitely late one).
absl::Status CheckDeadline(std::chrono::system_clock::time_point deadline,
                           std::chrono::system_clock::time_point now, absl::string_view method);

// The same for the call of `context`, now.
absl::Status CheckDeadline(const grpc::ServerContextBase& context, absl::string_view method);

}  // namespace iommud

#endif  // IOMMUD_SERVER_DEADLINE_CHECK_H_
