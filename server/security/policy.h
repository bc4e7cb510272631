// Policy: which principals get which role (--policy_file).
//
// File format: one "<role> <principal>" per line; blank lines and '#' comments are ignored. Roles:
//   viewer    read the inventory and mappings, translation faults, audit, watch events
//   operator  viewer + probe/release devices, claim/attach/alloc/map on what it owns, translate
//   admin     operator + act for any owner (force release), reconcile, fault injection
// Principals (the rest of the line, trimmed; so subjects may contain spaces):
//   uid:<n>            a unix peer with that uid
//   gid:<n>            a unix peer with that primary gid (SO_PEERCRED reports only the primary one)
//   x509:<subject>     a TLS peer whose certificate subject is exactly <subject> ("CN=a,O=b")
//   x509-cn:<cn>       a TLS peer whose certificate common name is <cn>
//   insecure           any peer of the --insecure_tcp loopback listener
// A caller gets the highest role of all lines that match it; one that matches none has no role
// and is refused everything. A file replaces the default policy entirely (uid:0 is not implicit).
//
// Default (no --policy_file): uid:0 and the daemon's own uid are admin; everyone else has no role.
#ifndef IOMMUD_SERVER_SECURITY_POLICY_H_
#define IOMMUD_SERVER_SECURITY_POLICY_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/security/caller_identity.h"

namespace iommud {

enum class Role { kNone = 0, kViewer = 1, kOperator = 2, kAdmin = 3 };  // ordered: more is more

absl::string_view RoleName(Role role);  // "none", "viewer", "operator", "admin"

class Policy {
 public:
  // The default policy of a daemon running as `daemon_uid`.
  static Policy Default(uint32_t daemon_uid);

  // Parses `text`. Errors are INVALID_ARGUMENT (INVALID_POLICY) "<source>:<line>: <what>" with
  // metadata {"source", "line"}: unknown role, malformed principal, a principal listed twice.
  static absl::StatusOr<Policy> Parse(absl::string_view text, absl::string_view source);

  // Reads and parses `path`; NOT_FOUND (POLICY_UNREADABLE) if it cannot be read.
  static absl::StatusOr<Policy> Load(const std::string& path);

  // The highest role any entry grants `caller`; kNone when unidentified or unmatched.
  Role RoleOf(const CallerIdentity& caller) const;

  const std::string& source() const { return source_; }  // file name or "<default policy>"
  size_t size() const { return entries_.size(); }

 private:
  std::string source_;
  std::map<std::string, Role> entries_;  // principal as written -> role
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_SECURITY_POLICY_H_
