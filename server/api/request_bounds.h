// RequestBounds: how large one request may be, beyond gRPC's message-size limit. Checked for every
// iommu.v1.Iommu request before its handler runs, so that no single call makes the daemon allocate
// without bound.
//
//   - every string field (device, unit and owner names, page tokens, watch filters, fault specs)
//     at most `max_string_bytes`: INVALID_ARGUMENT, reason FIELD_TOO_LONG;
//   - every repeated field (alias_rids, watch kinds ...) at most `max_repeated` elements:
//     INVALID_ARGUMENT, reason TOO_MANY_ELEMENTS;
//   - MapRequest.size at most `max_map_bytes` (a misaligned Map of S bytes builds up to S/4K leaves
//     and their tables): RESOURCE_EXHAUSTED, reason REQUEST_TOO_LARGE;
//   - List page_size: clamped to `max_page_size` like AIP-158 asks (coerce, not an error); see
//     pagination.h.
// Errors name the field ("field", nested fields dotted, e.g. "spec.device") and the "limit".
// Pure functions, no gRPC: the wire library and its tests use them directly.
#ifndef IOMMUD_SERVER_API_REQUEST_BOUNDS_H_
#define IOMMUD_SERVER_API_REQUEST_BOUNDS_H_

#include <google/protobuf/message.h>

#include <cstdint>

#include "absl/status/status.h"

namespace iommud {

struct RequestBounds {
  uint32_t max_string_bytes = 1024;
  uint32_t max_repeated = 1024;
  uint64_t max_map_bytes = uint64_t{64} << 30;  // 64 GiB per Map call
  uint32_t max_page_size = 1000;
};

// Checks every string and repeated field of `request` (recursively through message fields).
absl::Status CheckFieldBounds(const google::protobuf::Message& request,
                              const RequestBounds& bounds);

// The size check of one Map call (REQUEST_TOO_LARGE naming "size").
absl::Status CheckMapSize(uint64_t size, const RequestBounds& bounds);

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_REQUEST_BOUNDS_H_
