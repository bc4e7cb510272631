#include "server/security/authorizer.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/sync.h"
#include "server/observability/log.h"

namespace iommud {

bool IsOwnerOf(absl::string_view principal, absl::string_view owner) {
  if (principal.empty()) return false;
  if (!absl::StartsWith(owner, principal)) return false;
  return owner.size() == principal.size() || owner[principal.size()] == '/';
}

bool NamesPrincipal(absl::string_view owner) {
  for (absl::string_view scheme : {"uid:", "gid:", "x509:", "x509-cn:", "insecure:"}) {
    if (absl::StartsWith(owner, scheme)) return true;
  }
  return owner == "insecure";
}

Authorizer::Authorizer(Options options)
    : options_(std::move(options)),
      policy_(std::make_shared<const Policy>(std::move(options_.policy))) {
  if (!options_.audit_log) options_.audit_log = [](const std::string& line) { AuditToStderr(line); };
  if (options_.metrics != nullptr) {
    denied_ = &prometheus::BuildCounter()
                   .Name("iommud_authz_denied_total")
                   .Help("Calls refused by authorization, by method and cause.")
                   .Register(*options_.metrics);
  }
}

std::shared_ptr<const Policy> Authorizer::policy() const {
  ReaderMutexLock lock(&policy_mu_);
  return policy_;
}

void Authorizer::ReplacePolicy(Policy policy) {
  auto replacement = std::make_shared<const Policy>(std::move(policy));
  MutexLock lock(&policy_mu_);
  policy_.swap(replacement);
  // The old policy is released after the lock, by `replacement`, once no call holds it.
}

absl::Status Authorizer::Deny(const CallerIdentity& identity, Role role,
                              absl::string_view method, Role required, absl::string_view cause,
                              absl::string_view detail, absl::string_view reason) const {
  options_.audit_log(absl::StrCat("denied ", method, " to ", identity.Describe(), " role ",
                                  RoleName(role), " (requires ", RoleName(required), "): ", cause,
                                  detail.empty() ? "" : ": ", detail));
  if (denied_ != nullptr) {
    denied_->Add({{"method", std::string(method)}, {"reason", std::string(cause)}}).Increment();
  }
  return Error(absl::StatusCode::kPermissionDenied,
               reason.empty() ? reason::kPermissionDenied : reason,
               absl::StrCat(identity.identified() ? identity.principal : "an unidentified caller",
                            " may not call ", method, ": ",
                            detail.empty() ? std::string(cause) : std::string(detail)),
               {{"principal", identity.principal},
                {"method", std::string(method)},
                {"required_role", std::string(RoleName(required))},
                {"role", std::string(RoleName(role))},
                {"cause", std::string(cause)}});
}

absl::Status Authorizer::RequireAdminFor(const AuthorizedCaller& caller, absl::string_view method,
                                         absl::string_view reason, absl::string_view cause,
                                         absl::string_view detail) const {
  if (caller.role >= Role::kAdmin) return absl::OkStatus();
  return Deny(caller.identity, caller.role, method, Role::kAdmin, cause, detail, reason);
}

absl::StatusOr<AuthorizedCaller> Authorizer::Authorize(const grpc::ServerContextBase& context,
                                                       absl::string_view method,
                                                       Role required) const {
  return AuthorizeIdentity(IdentifyCaller(context, options_.identity), method, required);
}

absl::StatusOr<AuthorizedCaller> Authorizer::AuthorizeIdentity(CallerIdentity identity,
                                                               absl::string_view method,
                                                               Role required) const {
  if (!identity.identified()) {
    return Deny(identity, Role::kNone, method, required, "unidentified",
                "the transport established no identity");
  }
  const std::shared_ptr<const Policy> policy = this->policy();
  const Role role = policy->RoleOf(identity);
  if (role == Role::kNone) {
    return Deny(identity, role, method, required, "no_role",
                absl::StrCat("no role in ", policy->source()));
  }
  if (role < required) {
    return Deny(identity, role, method, required, "role_too_low",
                absl::StrCat("role ", RoleName(role), ", requires ", RoleName(required)));
  }
  return AuthorizedCaller{std::move(identity), role};
}

absl::StatusOr<std::string> Authorizer::EffectiveOwner(const AuthorizedCaller& caller,
                                                       absl::string_view method,
                                                       absl::string_view requested) const {
  const std::string& principal = caller.identity.principal;
  if (requested.empty()) return principal;
  if (IsOwnerOf(principal, requested)) return std::string(requested);
  if (NamesPrincipal(requested)) {
    if (caller.role >= Role::kAdmin) return std::string(requested);
    return Deny(caller.identity, caller.role, method, Role::kAdmin, "foreign_owner",
                absl::StrCat("owner '", requested, "' belongs to another principal"));
  }
  return absl::StrCat(principal, "/", requested);
}

absl::Status Authorizer::CheckMayTouch(const AuthorizedCaller& caller, absl::string_view method,
                                       absl::string_view current_owner) const {
  if (current_owner.empty() || caller.role >= Role::kAdmin ||
      IsOwnerOf(caller.identity.principal, current_owner)) {
    return absl::OkStatus();
  }
  return Deny(caller.identity, caller.role, method, Role::kAdmin, "foreign_owner",
              absl::StrCat("owned by '", current_owner, "'"));
}

}  // namespace iommud
