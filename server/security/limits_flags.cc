#include "server/security/limits_flags.h"

#include <cstdint>

#include "absl/flags/flag.h"

namespace {
const iommud::Limits kDefaults;
}  // namespace

ABSL_FLAG(int32_t, max_message_bytes, kDefaults.max_message_bytes,
          "Largest request message; larger ones are refused by gRPC (RESOURCE_EXHAUSTED).");
ABSL_FLAG(int32_t, max_send_message_bytes, kDefaults.max_send_message_bytes,
          "Largest response message; a call whose response is larger fails.");
ABSL_FLAG(int32_t, max_concurrent_streams, kDefaults.max_concurrent_streams,
          "Calls in flight per connection (HTTP/2 MAX_CONCURRENT_STREAMS); more wait in the "
          "client.");
ABSL_FLAG(int64_t, max_grpc_memory_bytes, kDefaults.max_grpc_memory_bytes,
          "Memory gRPC may use for all connections' buffers (its ResourceQuota); under pressure "
          "new connections and streams are refused.");
ABSL_FLAG(double, rate_per_client, kDefaults.rate_per_client,
          "Calls per second each principal may make (token bucket; 0 = unlimited); beyond it "
          "RESOURCE_EXHAUSTED RATE_LIMITED.");
ABSL_FLAG(double, burst_per_client, kDefaults.burst_per_client,
          "Token-bucket size of --rate_per_client: calls a principal may make at once.");
ABSL_FLAG(int32_t, max_calls_per_client, kDefaults.max_calls_per_client,
          "Calls a principal may have in flight at once (TOO_MANY_CALLS beyond).");
ABSL_FLAG(int32_t, max_watchers, kDefaults.max_watchers,
          "WatchEvents streams open at once, all principals together (TOO_MANY_WATCHERS beyond).");
ABSL_FLAG(int32_t, max_watchers_per_client, kDefaults.max_watchers_per_client,
          "WatchEvents streams one principal may have open (TOO_MANY_WATCHERS beyond).");
ABSL_FLAG(int32_t, max_tracked_clients, kDefaults.max_tracked_clients,
          "Busy principals tracked by the limiter at once (TOO_MANY_CLIENTS beyond).");
ABSL_FLAG(uint64_t, max_pinned_bytes_per_owner, kDefaults.max_pinned_bytes_per_owner,
          "Bytes of registered process memory one owner may have mapped at once (0 = unlimited); "
          "beyond it Map is refused with RESOURCE_EXHAUSTED PINNED_MEMORY_LIMIT.");
ABSL_FLAG(uint32_t, max_page_size, kDefaults.request.max_page_size,
          "Largest page of a List call; a larger page_size is lowered to it.");
ABSL_FLAG(uint64_t, max_map_bytes, kDefaults.request.max_map_bytes,
          "Largest Map call in bytes (REQUEST_TOO_LARGE beyond); map larger ranges in pieces.");
ABSL_FLAG(uint32_t, max_string_bytes, kDefaults.request.max_string_bytes,
          "Longest string field of a request, e.g. a device or owner name (FIELD_TOO_LONG "
          "beyond).");
ABSL_FLAG(uint32_t, max_repeated, kDefaults.request.max_repeated,
          "Most elements of a repeated request field, e.g. alias_rids (TOO_MANY_ELEMENTS beyond).");

namespace iommud {

absl::StatusOr<Limits> LimitsFromFlags() {
  Limits limits;
  limits.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  limits.max_send_message_bytes = absl::GetFlag(FLAGS_max_send_message_bytes);
  limits.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  limits.max_grpc_memory_bytes = absl::GetFlag(FLAGS_max_grpc_memory_bytes);
  limits.rate_per_client = absl::GetFlag(FLAGS_rate_per_client);
  limits.burst_per_client = absl::GetFlag(FLAGS_burst_per_client);
  limits.max_calls_per_client = absl::GetFlag(FLAGS_max_calls_per_client);
  limits.max_watchers = absl::GetFlag(FLAGS_max_watchers);
  limits.max_watchers_per_client = absl::GetFlag(FLAGS_max_watchers_per_client);
  limits.max_tracked_clients = absl::GetFlag(FLAGS_max_tracked_clients);
  limits.max_pinned_bytes_per_owner = absl::GetFlag(FLAGS_max_pinned_bytes_per_owner);
  limits.request.max_page_size = absl::GetFlag(FLAGS_max_page_size);
  limits.request.max_map_bytes = absl::GetFlag(FLAGS_max_map_bytes);
  limits.request.max_string_bytes = absl::GetFlag(FLAGS_max_string_bytes);
  limits.request.max_repeated = absl::GetFlag(FLAGS_max_repeated);
  absl::Status valid = limits.Validate();
  if (!valid.ok()) return valid;
  return limits;
}

}  // namespace iommud
