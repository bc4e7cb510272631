// iommud's limit flags (--max_message_bytes, --rate_per_client, ...; `iommud --help` lists them
// with their defaults, which are Limits{}'s). Linked into the iommud binary only.
#ifndef IOMMUD_SERVER_SECURITY_LIMITS_FLAGS_H_
#define IOMMUD_SERVER_SECURITY_LIMITS_FLAGS_H_

#include "absl/status/statusor.h"
#include "server/security/limits.h"

namespace iommud {

// The limits the flags ask for, validated (Limits::Validate: INVALID_FLAG naming the flag).
absl::StatusOr<Limits> LimitsFromFlags();

}  // namespace iommud

#endif  // IOMMUD_SERVER_SECURITY_LIMITS_FLAGS_H_
