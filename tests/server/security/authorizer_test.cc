// Caller identity from transport facts, the policy file (parsing and role matching) and the
// Authorizer (role per method, owner prefixing, denials with their metadata, audit line and
// metric), without a gRPC server.
#include "server/security/authorizer.h"

#include <prometheus/registry.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/api/rpc_table.h"
#include "server/security/caller_identity.h"
#include "server/security/policy.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

PeerFacts UnixPeer(const std::string& uid, const std::string& gid = "100",
                   const std::string& pid = "42") {
  PeerFacts facts;
  facts.peer = "unix:";
  facts.properties[kPeerUidProperty] = uid;
  facts.properties[kPeerGidProperty] = gid;
  facts.properties[kPeerPidProperty] = pid;
  facts.properties["transport_security_type"] = "insecure";
  return facts;
}

PeerFacts TlsPeer(const std::string& subject, const std::string& cn) {
  PeerFacts facts;
  facts.peer = "ipv4:10.0.0.7:41000";
  facts.properties["transport_security_type"] = "ssl";
  if (!subject.empty()) facts.properties["x509_subject"] = subject;
  if (!cn.empty()) facts.properties["x509_common_name"] = cn;
  return facts;
}

// --- CallerIdentity ---

TEST(CallerIdentityTest, UnixPeerWithCredentialsIsItsUid) {
  const CallerIdentity identity = IdentifyPeer(UnixPeer("1000", "27", "4242"), {});
  EXPECT_EQ(identity.principal, "uid:1000");
  EXPECT_EQ(identity.transport, CallerTransport::kUnix);
  EXPECT_EQ(identity.uid, 1000u);
  EXPECT_EQ(identity.gid, 27u);
  EXPECT_EQ(identity.pid, 4242);
  EXPECT_FALSE(identity.fallback);
  EXPECT_THAT(identity.Describe(), HasSubstr("uid:1000 (unix pid 4242)"));
}

TEST(CallerIdentityTest, UnixPeerWithoutCredentialsIsUnidentifiedUnlessTheFlagSaysSo) {
  PeerFacts facts;
  facts.peer = "unix:/run/iommud/iommud.sock";
  EXPECT_FALSE(IdentifyPeer(facts, {}).identified());

  IdentityOptions options;
  options.unix_peer_fallback_to_daemon_uid = true;
  options.daemon_uid = 77;
  options.daemon_gid = 78;
  const CallerIdentity identity = IdentifyPeer(facts, options);
  EXPECT_EQ(identity.principal, "uid:77");
  EXPECT_EQ(identity.gid, 78u);
  EXPECT_TRUE(identity.fallback);
  EXPECT_THAT(identity.Describe(), HasSubstr("daemon uid by flag"));
  // Credentials, when present, win over the fallback.
  EXPECT_EQ(IdentifyPeer(UnixPeer("5"), options).principal, "uid:5");
}

TEST(CallerIdentityTest, MalformedUidIsUnidentified) {
  IdentityOptions options;
  options.unix_peer_fallback_to_daemon_uid = true;  // not used for a malformed property
  EXPECT_FALSE(IdentifyPeer(UnixPeer("12x"), options).identified());
  EXPECT_FALSE(IdentifyPeer(UnixPeer("-1"), options).identified());
}

TEST(CallerIdentityTest, TlsPeerIsItsSubjectWithSlashesEscaped) {
  EXPECT_EQ(IdentifyPeer(TlsPeer("CN=vmm,O=example", "vmm"), {}).principal,
            "x509:CN=vmm,O=example");
  EXPECT_EQ(IdentifyPeer(TlsPeer("CN=a/b,O=100%", "a/b"), {}).principal,
            "x509:CN=a%2Fb,O=100%25");
  EXPECT_EQ(IdentifyPeer(TlsPeer("", "only-cn"), {}).principal, "x509:CN=only-cn");
  // TlsServerCredentials (the daemon's listener) reports "tls", SslServerCredentials "ssl".
  PeerFacts tls = TlsPeer("CN=vmm,O=example", "vmm");
  tls.properties["transport_security_type"] = "tls";
  EXPECT_EQ(IdentifyPeer(tls, {}).principal, "x509:CN=vmm,O=example");
  const CallerIdentity none = IdentifyPeer(TlsPeer("", ""), {});
  EXPECT_FALSE(none.identified());
  EXPECT_EQ(none.transport, CallerTransport::kTls);
}

TEST(CallerIdentityTest, PlainTcpIsInsecureOnlyWhenThatListenerExists) {
  PeerFacts facts;
  facts.peer = "ipv4:127.0.0.1:50123";
  facts.properties["transport_security_type"] = "insecure";
  EXPECT_FALSE(IdentifyPeer(facts, {}).identified());
  IdentityOptions options;
  options.insecure_tcp = true;
  EXPECT_EQ(IdentifyPeer(facts, options).principal, "insecure:127.0.0.1");  // no port
  facts.peer = "ipv6:[::1]:50123";
  EXPECT_EQ(IdentifyPeer(facts, options).principal, "insecure:[::1]");
  facts.peer = "something-else";
  EXPECT_FALSE(IdentifyPeer(facts, options).identified());
}

// --- Policy ---

TEST(PolicyTest, ParsesRolesAndMatchesEveryKindOfPrincipal) {
  ASSERT_OK_AND_ASSIGN(const Policy policy, Policy::Parse(R"(
# comment
admin    uid:0
operator gid:36         # kvm
viewer   uid:1000
operator x509:CN=vmm one,O=example
viewer   x509-cn:dashboard
viewer   insecure
)",
                                                          "policy.txt"));
  EXPECT_EQ(policy.size(), 6u);
  EXPECT_EQ(policy.RoleOf(IdentifyPeer(UnixPeer("0"), {})), Role::kAdmin);
  EXPECT_EQ(policy.RoleOf(IdentifyPeer(UnixPeer("1000", "100"), {})), Role::kViewer);
  // uid viewer but gid operator: the higher role.
  EXPECT_EQ(policy.RoleOf(IdentifyPeer(UnixPeer("1000", "36"), {})), Role::kOperator);
  EXPECT_EQ(policy.RoleOf(IdentifyPeer(UnixPeer("1001", "100"), {})), Role::kNone);
  EXPECT_EQ(policy.RoleOf(IdentifyPeer(TlsPeer("CN=vmm one,O=example", "vmm one"), {})),
            Role::kOperator);
  EXPECT_EQ(policy.RoleOf(IdentifyPeer(TlsPeer("CN=dashboard,O=other", "dashboard"), {})),
            Role::kViewer);
  // Same CN as an x509: entry's subject part is not the subject.
  EXPECT_EQ(policy.RoleOf(IdentifyPeer(TlsPeer("CN=vmm one", "vmm one"), {})), Role::kNone);
  PeerFacts tcp;
  tcp.peer = "ipv4:127.0.0.1:1";
  IdentityOptions insecure;
  insecure.insecure_tcp = true;
  EXPECT_EQ(policy.RoleOf(IdentifyPeer(tcp, insecure)), Role::kViewer);
  EXPECT_EQ(policy.RoleOf(CallerIdentity{}), Role::kNone);
}

TEST(PolicyTest, DefaultMakesRootAndTheDaemonUidAdminAndNobodyElseAnything) {
  const Policy policy = Policy::Default(1234);
  EXPECT_EQ(policy.RoleOf(IdentifyPeer(UnixPeer("0"), {})), Role::kAdmin);
  EXPECT_EQ(policy.RoleOf(IdentifyPeer(UnixPeer("1234"), {})), Role::kAdmin);
  EXPECT_EQ(policy.RoleOf(IdentifyPeer(UnixPeer("1235"), {})), Role::kNone);
  EXPECT_EQ(policy.RoleOf(IdentifyPeer(TlsPeer("CN=root", "root"), {})), Role::kNone);
}

TEST(PolicyTest, ErrorsNameTheFileAndLine) {
  struct Case {
    const char* text;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"admin uid:0\nsuperuser uid:1\n", "p.txt:2: unknown role 'superuser'"},
      {"admin\n", "p.txt:1: expected '<role> <principal>', got 'admin'"},
      {"\n\nviewer uid:abc\n", "p.txt:3: 'uid:abc': expected uid:<number>"},
      {"viewer gid:\n", "p.txt:1: 'gid:': expected gid:<number>"},
      {"viewer user:1\n", "p.txt:1: unknown principal 'user:1'"},
      {"viewer x509:\n", "p.txt:1: 'x509:': empty certificate subject"},
      {"viewer uid:5\nadmin uid:5\n", "p.txt:2: 'uid:5' already listed on line 1"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Policy> policy = Policy::Parse(c.text, "p.txt");
    EXPECT_ERROR(policy, kInvalidArgument, "INVALID_POLICY");
    EXPECT_THAT(std::string(policy.status().message()), HasSubstr(c.message)) << c.text;
  }
  EXPECT_ERROR(Policy::Load("/nonexistent/policy.txt"), kNotFound, "POLICY_UNREADABLE");
}

// --- Authorizer ---

class AuthorizerTest : public ::testing::Test {
 protected:
  AuthorizerTest() {
    Authorizer::Options options;
    options.policy = *Policy::Parse("admin uid:0\noperator uid:1000\noperator uid:1001\n"
                                    "viewer uid:2000\n",
                                    "test-policy");
    options.metrics = metrics_.get();
    options.audit_log = [this](const std::string& line) { audit_.push_back(line); };
    authorizer_ = std::make_unique<Authorizer>(std::move(options));
  }

  absl::StatusOr<AuthorizedCaller> As(const std::string& uid, const std::string& method) {
    return authorizer_->AuthorizeIdentity(IdentifyPeer(UnixPeer(uid), {}), method,
                                          RequiredRole(method));
  }

  double Denied(const std::string& method, const std::string& reason) {
    for (const auto& family : metrics_->Collect()) {
      if (family.name != "iommud_authz_denied_total") continue;
      for (const auto& metric : family.metric) {
        std::map<std::string, std::string> labels;
        for (const auto& label : metric.label) labels[label.name] = label.value;
        if (labels["method"] == method && labels["reason"] == reason) return metric.counter.value;
      }
    }
    return 0;
  }

  std::shared_ptr<prometheus::Registry> metrics_ = std::make_shared<prometheus::Registry>();
  std::vector<std::string> audit_;
  std::unique_ptr<Authorizer> authorizer_;
};

TEST(RequiredRoleTest, ReadsAreViewerMutationsOperatorRepairAndFaultsAdmin) {
  for (const char* method : {"ListUnits", "GetGroup", "ListDomains", "ListMappings",
                             "ListTranslationFaults", "Audit", "WatchEvents",
                             "ListMemoryRegions", "GetIovaRanges"}) {
    EXPECT_EQ(RequiredRole(method), Role::kViewer) << method;
  }
  for (const char* method : {"ProbeDevice", "ReleaseDevice", "ClaimOwnership", "AttachGroup",
                             "Map", "Unmap", "AllocDomain", "FreeDomain", "Translate",
                             "RegisterMemory", "UnregisterMemory", "ReplaceDomain",
                             "AttachDevice", "DetachDevice"}) {
    EXPECT_EQ(RequiredRole(method), Role::kOperator) << method;
  }
  for (const char* method : {"Reconcile", "InjectFault", "ListFaults", "ClearFaults",
                             "SomeFutureRpc"}) {
    EXPECT_EQ(RequiredRole(method), Role::kAdmin) << method;
  }
}

TEST_F(AuthorizerTest, RolesAllowWhatTheyShouldAndNoMore) {
  EXPECT_TRUE(As("2000", "ListGroups").ok());
  EXPECT_TRUE(As("1000", "ClaimOwnership").ok());
  EXPECT_TRUE(As("0", "InjectFault").ok());
  EXPECT_ERROR(As("2000", "ClaimOwnership"), kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_ERROR(As("1000", "Reconcile"), kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_ERROR(As("3000", "ListGroups"), kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_ERROR(authorizer_->AuthorizeIdentity(CallerIdentity{}, "ListGroups", Role::kViewer),
               kPermissionDenied, "PERMISSION_DENIED");
}

// SIGHUP's policy reload: calls authorized after ReplacePolicy get the new roles, and the denial
// names the new policy's source.
TEST_F(AuthorizerTest, ReplacePolicyChangesTheRolesOfLaterCalls) {
  ASSERT_TRUE(As("1000", "ClaimOwnership").ok());
  ASSERT_OK_AND_ASSIGN(Policy replacement,
                       Policy::Parse("viewer uid:1000\nadmin uid:2000\n", "/etc/iommud/new"));
  authorizer_->ReplacePolicy(std::move(replacement));
  EXPECT_EQ(authorizer_->policy()->source(), "/etc/iommud/new");
  EXPECT_ERROR(As("1000", "ClaimOwnership"), kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_TRUE(As("2000", "Reconcile").ok());
  absl::StatusOr<AuthorizedCaller> unknown = As("0", "ListGroups");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.status().message(), HasSubstr("no role in /etc/iommud/new"));
}

TEST_F(AuthorizerTest, DenialsCarryMetadataAndAreAuditedAndCounted) {
  absl::StatusOr<AuthorizedCaller> denied = As("2000", "Map");
  ASSERT_FALSE(denied.ok());
  const ErrorMetadata metadata = GetErrorMetadata(denied.status());
  EXPECT_EQ(metadata.at("principal"), "uid:2000");
  EXPECT_EQ(metadata.at("method"), "Map");
  EXPECT_EQ(metadata.at("required_role"), "operator");
  EXPECT_EQ(metadata.at("role"), "viewer");
  EXPECT_EQ(metadata.at("cause"), "role_too_low");
  ASSERT_THAT(audit_, SizeIs(1));
  EXPECT_THAT(audit_[0], HasSubstr("denied Map to uid:2000 (unix pid 42) role viewer"));
  EXPECT_EQ(Denied("Map", "role_too_low"), 1);

  ASSERT_FALSE(As("3000", "Map").ok());
  ASSERT_FALSE(authorizer_->AuthorizeIdentity(CallerIdentity{}, "Map", Role::kOperator).ok());
  EXPECT_EQ(Denied("Map", "no_role"), 1);
  EXPECT_EQ(Denied("Map", "unidentified"), 1);
  EXPECT_THAT(audit_, SizeIs(3));
  // Allowed calls leave no trace.
  ASSERT_TRUE(As("1000", "Map").ok());
  EXPECT_THAT(audit_, SizeIs(3));
}

TEST_F(AuthorizerTest, OwnersArePrefixedWithThePrincipal) {
  ASSERT_OK_AND_ASSIGN(const AuthorizedCaller op, As("1000", "ClaimOwnership"));
  EXPECT_EQ(*authorizer_->EffectiveOwner(op, "ClaimOwnership", ""), "uid:1000");
  EXPECT_EQ(*authorizer_->EffectiveOwner(op, "ClaimOwnership", "vm-7"), "uid:1000/vm-7");
  EXPECT_EQ(*authorizer_->EffectiveOwner(op, "ClaimOwnership", "uid:1000"), "uid:1000");
  EXPECT_EQ(*authorizer_->EffectiveOwner(op, "ClaimOwnership", "uid:1000/vm-7"), "uid:1000/vm-7");
  // Not a prefix match: uid:10000 is someone else.
  EXPECT_ERROR(authorizer_->EffectiveOwner(op, "ClaimOwnership", "uid:10000/vm"),
               kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_ERROR(authorizer_->EffectiveOwner(op, "ReleaseOwnership", "uid:1001/vm"),
               kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_ERROR(authorizer_->EffectiveOwner(op, "ReleaseOwnership", "x509:CN=a"),
               kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_EQ(Denied("ReleaseOwnership", "foreign_owner"), 2);

  ASSERT_OK_AND_ASSIGN(const AuthorizedCaller admin, As("0", "ReleaseOwnership"));
  EXPECT_EQ(*authorizer_->EffectiveOwner(admin, "ReleaseOwnership", "uid:1001/vm"),
            "uid:1001/vm");
  EXPECT_EQ(*authorizer_->EffectiveOwner(admin, "ReleaseOwnership", "vm"), "uid:0/vm");
}

TEST_F(AuthorizerTest, TouchingAnotherPrincipalsThingNeedsAdmin) {
  ASSERT_OK_AND_ASSIGN(const AuthorizedCaller op, As("1000", "ReleaseDevice"));
  EXPECT_TRUE(authorizer_->CheckMayTouch(op, "ReleaseDevice", "").ok());
  EXPECT_TRUE(authorizer_->CheckMayTouch(op, "ReleaseDevice", "uid:1000/vm").ok());
  EXPECT_ERROR(authorizer_->CheckMayTouch(op, "ReleaseDevice", "uid:1001/vm"), kPermissionDenied,
               "PERMISSION_DENIED");
  ASSERT_OK_AND_ASSIGN(const AuthorizedCaller admin, As("0", "ReleaseDevice"));
  EXPECT_TRUE(authorizer_->CheckMayTouch(admin, "ReleaseDevice", "uid:1001/vm").ok());
}

TEST(OwnerTest, IsOwnerOfAndNamesPrincipal) {
  EXPECT_TRUE(IsOwnerOf("uid:1", "uid:1"));
  EXPECT_TRUE(IsOwnerOf("uid:1", "uid:1/a/b"));
  EXPECT_FALSE(IsOwnerOf("uid:1", "uid:10"));
  EXPECT_FALSE(IsOwnerOf("", ""));
  EXPECT_TRUE(NamesPrincipal("x509:CN=a"));
  EXPECT_TRUE(NamesPrincipal("insecure:127.0.0.1/vm"));
  EXPECT_FALSE(NamesPrincipal("vmm-1"));
  EXPECT_FALSE(NamesPrincipal("my:vm"));
}

}  // namespace
}  // namespace iommud
