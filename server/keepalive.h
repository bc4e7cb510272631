// HTTP/2 keepalive of iommud's gRPC server (--keepalive_time, --keepalive_timeout,
// --keepalive_min_client_interval): the server pings a connection that has been idle for `time`
// and closes it when no answer comes within `timeout`, so that the watch and lease streams of a
// client that vanished (a VM host rebooted, a TCP path gone) are ended and their permits and
// leases' keepers freed instead of held for hours; and it accepts the pings of clients that
// keep their own connections alive, at most one per `min_client_interval` (more often: GOAWAY
// "too_many_pings", gRPC's rule).
#ifndef IOMMUD_SERVER_KEEPALIVE_H_
#define IOMMUD_SERVER_KEEPALIVE_H_

#include <grpcpp/grpcpp.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace iommud {

struct KeepaliveOptions {
  absl::Duration time = absl::Seconds(30);     // GRPC_ARG_KEEPALIVE_TIME_MS
  absl::Duration timeout = absl::Seconds(10);  // GRPC_ARG_KEEPALIVE_TIMEOUT_MS
  // GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS: the most often a client may ping.
  absl::Duration min_client_interval = absl::Seconds(10);

  // INVALID_ARGUMENT (INVALID_FLAG, metadata flag) for a time or timeout under 1s or a negative
  // min_client_interval, naming the flag.
  absl::Status Validate() const;
};

// The channel arguments `options` set, name and value: the three above, plus
// GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS = 1 (clients may ping idle connections) and
// GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA = 0 (the server keeps pinging a stream that carries no
// data, e.g. a quiet watch).
std::vector<std::pair<std::string, int>> KeepaliveChannelArgs(const KeepaliveOptions& options);

// Adds KeepaliveChannelArgs(options) to `builder`.
void ApplyKeepalive(const KeepaliveOptions& options, grpc::ServerBuilder* builder);

}  // namespace iommud

#endif  // IOMMUD_SERVER_KEEPALIVE_H_
