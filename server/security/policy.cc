#include "server/security/policy.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {
namespace {

constexpr char kInsecure[] = "insecure";

absl::Status PolicyError(absl::string_view source, int line, absl::string_view what) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidPolicy,
               absl::StrCat(source, ":", line, ": ", what),
               {{"source", std::string(source)}, {"line", absl::StrCat(line)}});
}

bool ParseRole(absl::string_view name, Role* role) {
  for (Role candidate : {Role::kViewer, Role::kOperator, Role::kAdmin}) {
    if (name == RoleName(candidate)) {
      *role = candidate;
      return true;
    }
  }
  return false;
}

// "" if `principal` is well-formed, else what is wrong with it.
std::string CheckPrincipal(absl::string_view principal) {
  if (principal == kInsecure) return "";
  uint32_t number = 0;
  for (absl::string_view prefix : {"uid:", "gid:"}) {
    absl::string_view rest = principal;
    if (absl::ConsumePrefix(&rest, prefix)) {
      if (absl::SimpleAtoi(rest, &number) && !rest.empty() && absl::ascii_isdigit(rest[0])) {
        return "";
      }
      return absl::StrCat("'", principal, "': expected ", prefix, "<number>");
    }
  }
  for (absl::string_view prefix : {"x509:", "x509-cn:"}) {
    absl::string_view rest = principal;
    if (absl::ConsumePrefix(&rest, prefix)) {
      if (!rest.empty()) return "";
      return absl::StrCat("'", principal, "': empty certificate ",
                          prefix == "x509:" ? "subject" : "common name");
    }
  }
  return absl::StrCat("unknown principal '", principal,
                      "' (expected uid:N, gid:N, x509:SUBJECT, x509-cn:NAME or insecure)");
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kViewer:
      return "viewer";
    case Role::kOperator:
      return "operator";
    case Role::kAdmin:
      return "admin";
    case Role::kNone:
      break;
  }
  return "none";
}

Policy Policy::Default(uint32_t daemon_uid) {
  Policy policy;
  policy.source_ = "<default policy>";
  policy.entries_["uid:0"] = Role::kAdmin;
  policy.entries_[absl::StrCat("uid:", daemon_uid)] = Role::kAdmin;
  return policy;
}

absl::StatusOr<Policy> Policy::Parse(absl::string_view text, absl::string_view source) {
  Policy policy;
  policy.source_ = std::string(source);
  std::map<std::string, int> first_line;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    const size_t space = std::min(line.find(' '), line.find('\t'));
    if (space == absl::string_view::npos) {
      return PolicyError(source, line_number,
                         absl::StrCat("expected '<role> <principal>', got '", line, "'"));
    }
    const absl::string_view role_name = line.substr(0, space);
    const std::string principal(absl::StripAsciiWhitespace(line.substr(space + 1)));
    Role role = Role::kNone;
    if (!ParseRole(role_name, &role)) {
      return PolicyError(source, line_number,
                         absl::StrCat("unknown role '", role_name,
                                      "' (expected viewer, operator or admin)"));
    }
    if (std::string problem = CheckPrincipal(principal); !problem.empty()) {
      return PolicyError(source, line_number, problem);
    }
    if (auto [it, inserted] = first_line.emplace(principal, line_number); !inserted) {
      return PolicyError(source, line_number,
                         absl::StrCat("'", principal, "' already listed on line ", it->second));
    }
    policy.entries_[principal] = role;
  }
  return policy;
}

absl::StatusOr<Policy> Policy::Load(const std::string& path) {
  std::ifstream file(path);
  if (!file) {
    const int error = errno;
    return Error(absl::StatusCode::kNotFound, reason::kPolicyUnreadable,
                 absl::StrCat("cannot read policy file ", path, ": ", std::strerror(error)),
                 {{"path", path}});
  }
  std::stringstream text;
  text << file.rdbuf();
  return Parse(text.str(), path);
}

Role Policy::RoleOf(const CallerIdentity& caller) const {
  if (!caller.identified()) return Role::kNone;
  std::vector<std::string> keys;
  switch (caller.transport) {
    case CallerTransport::kUnix:
      if (caller.uid.has_value()) keys.push_back(absl::StrCat("uid:", *caller.uid));
      if (caller.gid.has_value()) keys.push_back(absl::StrCat("gid:", *caller.gid));
      break;
    case CallerTransport::kTls:
      if (!caller.x509_subject.empty()) keys.push_back("x509:" + caller.x509_subject);
      if (!caller.x509_common_name.empty()) keys.push_back("x509-cn:" + caller.x509_common_name);
      break;
    case CallerTransport::kInsecureTcp:
      keys.push_back(kInsecure);
      break;
    case CallerTransport::kUnknown:
      break;
  }
  Role role = Role::kNone;
  for (const std::string& key : keys) {
    auto it = entries_.find(key);
    if (it != entries_.end()) role = std::max(role, it->second);
  }
  return role;
}

}  // namespace iommud
