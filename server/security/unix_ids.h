// Users and groups named on the command line: a name or a number -> a uid/gid, and lists of them.
#ifndef IOMMUD_SERVER_SECURITY_UNIX_IDS_H_
#define IOMMUD_SERVER_SECURITY_UNIX_IDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace iommud {

// "1000" -> 1000; "alice" -> alice's uid (getpwnam_r). INVALID_ARGUMENT (UNKNOWN_USER) for an
// empty text or a name the system does not know.
absl::StatusOr<uint32_t> ResolveUser(absl::string_view user);

// Same for groups (getgrnam_r); INVALID_ARGUMENT (UNKNOWN_GROUP).
absl::StatusOr<uint32_t> ResolveGroup(absl::string_view group);

// "0,alice, 1001" -> their uids (ResolveUser of each comma-separated entry, blanks trimmed);
// "" -> {}. The first unknown entry's error.
absl::StatusOr<std::vector<uint32_t>> ResolveUserList(absl::string_view users);
absl::StatusOr<std::vector<uint32_t>> ResolveGroupList(absl::string_view groups);

}  // namespace iommud

#endif  // IOMMUD_SERVER_SECURITY_UNIX_IDS_H_
