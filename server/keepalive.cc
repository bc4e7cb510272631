#include "server/keepalive.h"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {

namespace {

absl::Status InvalidKeepalive(const std::string& flag, absl::Duration value,
                              absl::string_view rule) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFlag,
               absl::StrCat("--", flag, "=", absl::FormatDuration(value), ": ", rule),
               {{"flag", flag}});
}

int Millis(absl::Duration duration) {
  const int64_t millis = absl::ToInt64Milliseconds(duration);
  return static_cast<int>(std::clamp<int64_t>(millis, 0, std::numeric_limits<int>::max()));
}

}  // namespace

absl::Status KeepaliveOptions::Validate() const {
  if (time < absl::Seconds(1)) {
    return InvalidKeepalive("keepalive_time", time, "must be at least 1s");
  }
  if (timeout < absl::Seconds(1)) {
    return InvalidKeepalive("keepalive_timeout", timeout, "must be at least 1s");
  }
  if (min_client_interval < absl::ZeroDuration()) {
    return InvalidKeepalive("keepalive_min_client_interval", min_client_interval,
                            "must not be negative");
  }
  return absl::OkStatus();
}

std::vector<std::pair<std::string, int>> KeepaliveChannelArgs(const KeepaliveOptions& options) {
  return {
      {GRPC_ARG_KEEPALIVE_TIME_MS, Millis(options.time)},
      {GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Millis(options.timeout)},
      {GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, Millis(options.min_client_interval)},
      {GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1},
      {GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0},
  };
}

void ApplyKeepalive(const KeepaliveOptions& options, grpc::ServerBuilder* builder) {
  for (const auto& [name, value] : KeepaliveChannelArgs(options)) {
    builder->AddChannelArgument(name, value);
  }
}

}  // namespace iommud
