// Authorizer: decides whether the caller of an iommu.v1.Iommu RPC may make it, and whose name it
// acts in (the owner cookie).
//
// The role each method requires comes from the RPC table (rpc_table.h: viewer for reads, operator
// for every mutation of devices, ownership, domains and mappings and for Translate, admin for
// Reconcile and fault injection); the service passes the role of the entry it serves, so there is
// no second list of methods here. grpc.health.v1.Health and reflection are not authorized (anyone
// who can connect may ask).
//
// Owner cookies come from the caller's identity: the effective owner of a request is
//   request.owner empty                          -> <principal>
//   <principal> or <principal>/<name>            -> unchanged (the caller's own full owner)
//   another principal's ("uid:", "x509:", "insecure:" ...) -> admin: unchanged (acting for it, e.g.
//                                                   a force release); others: PERMISSION_DENIED
//   any other <name>                             -> <principal>/<name>
// so one identity (a VMM orchestrator) can run several owners (VMs) but never act for another.
//
// Every denial is PERMISSION_DENIED with reason PERMISSION_DENIED and metadata {principal, method,
// required_role, role, cause}, is logged as an audit line, and counts in
// iommud_authz_denied_total{method,reason} (reason = cause: unidentified, no_role, role_too_low,
// foreign_owner, raw_paddr, identity_domain). Thread-safe; the policy can be replaced while calls
// are authorized (ReplacePolicy: SIGHUP re-reads --policy_file), each call sees one whole policy.
#ifndef IOMMUD_SERVER_SECURITY_AUTHORIZER_H_
#define IOMMUD_SERVER_SECURITY_AUTHORIZER_H_

#include <grpcpp/grpcpp.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/security/caller_identity.h"
#include "server/security/policy.h"

namespace iommud {

// True when `owner` is `principal` itself or one of its owners ("<principal>/<name>").
bool IsOwnerOf(absl::string_view principal, absl::string_view owner);

// True when `owner` starts with a principal scheme ("uid:", "x509:", "insecure:").
bool NamesPrincipal(absl::string_view owner);

struct AuthorizedCaller {
  CallerIdentity identity;
  Role role = Role::kNone;
};

class Authorizer {
 public:
  struct Options {
    Policy policy = Policy::Default(0);
    IdentityOptions identity;
    // iommud_authz_denied_total is registered here (not owned; may be null: not counted).
    prometheus::Registry* metrics = nullptr;
    // Receives one audit line per denial; null: written to stderr as an AUDIT line (log.h).
    std::function<void(const std::string&)> audit_log;
  };

  explicit Authorizer(Options options);

  // Identifies the caller of `context` and checks its role against `required`, the role `method`
  // (an iommu.v1.Iommu method name, e.g. "ClaimOwnership", named in denials) requires.
  absl::StatusOr<AuthorizedCaller> Authorize(const grpc::ServerContextBase& context,
                                             absl::string_view method, Role required) const;
  // The same for an already established identity.
  absl::StatusOr<AuthorizedCaller> AuthorizeIdentity(CallerIdentity identity,
                                                     absl::string_view method,
                                                     Role required) const;

  // The effective owner of a request of `caller` naming `requested` (see the header comment).
  absl::StatusOr<std::string> EffectiveOwner(const AuthorizedCaller& caller,
                                             absl::string_view method,
                                             absl::string_view requested) const;

  // For operations on something that has an owner but whose request names none (ReleaseDevice of
  // a device in an owned group): OK when `current_owner` is empty, the caller's, or the caller is
  // admin; else a denial (foreign_owner).
  absl::Status CheckMayTouch(const AuthorizedCaller& caller, absl::string_view method,
                             absl::string_view current_owner) const;

  // For requests that only an admin may make although the method's role is lower (a Map of a raw
  // paddr, an IDENTITY domain): OK for an admin; otherwise a denial like the others (audit line,
  // iommud_authz_denied_total{method,reason=cause}) but with `reason` as its ErrorInfo reason
  // (e.g. RAW_PADDR_ADMIN_ONLY) and `detail` as its message.
  absl::Status RequireAdminFor(const AuthorizedCaller& caller, absl::string_view method,
                               absl::string_view reason, absl::string_view cause,
                               absl::string_view detail) const;

  // The policy in force; calls authorized after a ReplacePolicy returned use `policy`.
  std::shared_ptr<const Policy> policy() const ABSL_LOCKS_EXCLUDED(policy_mu_);
  void ReplacePolicy(Policy policy) ABSL_LOCKS_EXCLUDED(policy_mu_);
  const IdentityOptions& identity_options() const { return options_.identity; }

 private:
  // `reason`: the ErrorInfo reason (PERMISSION_DENIED unless given).
  absl::Status Deny(const CallerIdentity& identity, Role role, absl::string_view method,
                    Role required, absl::string_view cause, absl::string_view detail,
                    absl::string_view reason = {}) const;

  Options options_;  // options_.policy is unused after construction: policy_
  mutable absl::Mutex policy_mu_;
  std::shared_ptr<const Policy> policy_ ABSL_GUARDED_BY(policy_mu_);
  prometheus::Family<prometheus::Counter>* denied_ = nullptr;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_SECURITY_AUTHORIZER_H_
