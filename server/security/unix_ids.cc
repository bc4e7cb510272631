#include "server/security/unix_ids.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {
namespace {

// A buffer size for the *_r lookups; grown while they report ERANGE.
constexpr size_t kInitialBuffer = 4096;
constexpr size_t kMaxBuffer = 1 << 20;

absl::Status Unknown(absl::string_view reason, absl::string_view kind, absl::string_view name) {
  return Error(absl::StatusCode::kInvalidArgument, reason,
               absl::StrCat("unknown ", kind, " '", name, "'"), {{std::string(kind), std::string(name)}});
}

template <typename Resolve>
absl::StatusOr<std::vector<uint32_t>> ResolveList(absl::string_view text, Resolve resolve) {
  std::vector<uint32_t> ids;
  if (absl::StripAsciiWhitespace(text).empty()) return ids;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    absl::StatusOr<uint32_t> id = resolve(absl::StripAsciiWhitespace(entry));
    if (!id.ok()) return id.status();
    ids.push_back(*id);
  }
  return ids;
}

}  // namespace

absl::StatusOr<uint32_t> ResolveUser(absl::string_view user) {
  uint32_t uid = 0;
  if (absl::SimpleAtoi(user, &uid)) return uid;
  if (user.empty()) return Unknown(reason::kUnknownUser, "user", user);
  passwd entry = {};
  std::vector<char> buffer(kInitialBuffer);
  for (;;) {
    passwd* result = nullptr;
    const int error =
        getpwnam_r(std::string(user).c_str(), &entry, buffer.data(), buffer.size(), &result);
    if (error == ERANGE && buffer.size() < kMaxBuffer) {
      buffer.resize(buffer.size() * 2);
      continue;
    }
    if (error != 0 || result == nullptr) return Unknown(reason::kUnknownUser, "user", user);
    return entry.pw_uid;
  }
}

absl::StatusOr<uint32_t> ResolveGroup(absl::string_view group) {
  uint32_t gid = 0;
  if (absl::SimpleAtoi(group, &gid)) return gid;
  if (group.empty()) return Unknown(reason::kUnknownGroup, "group", group);
  struct group entry = {};
  std::vector<char> buffer(kInitialBuffer);
  for (;;) {
    struct group* result = nullptr;
    const int error =
        getgrnam_r(std::string(group).c_str(), &entry, buffer.data(), buffer.size(), &result);
    if (error == ERANGE && buffer.size() < kMaxBuffer) {
      buffer.resize(buffer.size() * 2);
      continue;
    }
    if (error != 0 || result == nullptr) return Unknown(reason::kUnknownGroup, "group", group);
    return entry.gr_gid;
  }
}

absl::StatusOr<std::vector<uint32_t>> ResolveUserList(absl::string_view users) {
  return ResolveList(users, ResolveUser);
}

absl::StatusOr<std::vector<uint32_t>> ResolveGroupList(absl::string_view groups) {
  return ResolveList(groups, ResolveGroup);
}

}  // namespace iommud
