// The deadline step of a unary call's admission (iommu_service.h): a call whose deadline has
// already passed when its handler would run is answered DEADLINE_EXCEEDED (DEADLINE_PASSED) and
// not executed, so that a client that gave up never finds its mutation applied after all.
#ifndef IOMMUD_SERVER_API_DEADLINE_CHECK_H_
#define IOMMUD_SERVER_API_DEADLINE_CHECK_H_

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace iommud {

// DEADLINE_EXCEEDED (DEADLINE_PASSED, metadata method) when `deadline` is not after `now`; OK
// otherwise (a call without a deadline has an infinitely late one).
absl::Status CheckDeadline(std::chrono::system_clock::time_point deadline,
                           std::chrono::system_clock::time_point now, absl::string_view method);

// gRPC keeps a server call's deadline in whole milliseconds from its own cached clock, so a call
// that arrives with a timeout of a few nanoseconds (its client's deadline passed on the way) gets a
// deadline up to about 2 ms after its arrival. Calls with less than this left are treated as
// expired: none of them could answer within its deadline anyway.
inline constexpr std::chrono::milliseconds kDeadlineResolution{2};

// The same for the call of `context`: expired when less than kDeadlineResolution is left.
absl::Status CheckDeadline(const grpc::ServerContextBase& context, absl::string_view method);

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_DEADLINE_CHECK_H_
