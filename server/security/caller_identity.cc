#include "server/security/caller_identity.h"

#include <grpc/grpc_security_constants.h>

#include <algorithm>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace iommud {
namespace {

// The value of property `name`, or nullptr.
const std::string* Property(const PeerFacts& facts, absl::string_view name) {
  auto it = facts.properties.find(std::string(name));
  return it == facts.properties.end() ? nullptr : &it->second;
}

// "ipv4:127.0.0.1:5555" -> "127.0.0.1"; "ipv6:[::1]:5555" -> "[::1]"; else "".
std::string TcpPeerAddress(absl::string_view peer) {
  if (!absl::ConsumePrefix(&peer, "ipv4:") && !absl::ConsumePrefix(&peer, "ipv6:")) return "";
  const size_t colon = peer.rfind(':');
  if (colon == absl::string_view::npos) return std::string(peer);
  return std::string(peer.substr(0, colon));
}

CallerIdentity IdentifyUnix(const PeerFacts& facts, const IdentityOptions& options) {
  CallerIdentity identity;
  identity.transport = CallerTransport::kUnix;
  const std::string* uid_text = Property(facts, kPeerUidProperty);
  if (uid_text == nullptr) {
    if (!options.unix_peer_fallback_to_daemon_uid) return identity;  // unidentified
    identity.uid = options.daemon_uid;
    identity.gid = options.daemon_gid;
    identity.fallback = true;
    identity.principal = absl::StrCat("uid:", options.daemon_uid);
    return identity;
  }
  uint32_t uid = 0;
  if (!absl::SimpleAtoi(*uid_text, &uid)) return identity;  // malformed: unidentified
  identity.uid = uid;
  uint32_t gid = 0;
  if (const std::string* text = Property(facts, kPeerGidProperty);
      text != nullptr && absl::SimpleAtoi(*text, &gid)) {
    identity.gid = gid;
  }
  int64_t pid = 0;
  if (const std::string* text = Property(facts, kPeerPidProperty);
      text != nullptr && absl::SimpleAtoi(*text, &pid)) {
    identity.pid = pid;
  }
  identity.principal = absl::StrCat("uid:", uid);
  return identity;
}

CallerIdentity IdentifyTls(const PeerFacts& facts) {
  CallerIdentity identity;
  identity.transport = CallerTransport::kTls;
  if (const std::string* subject = Property(facts, GRPC_X509_SUBJECT_PROPERTY_NAME)) {
    identity.x509_subject = *subject;
  }
  if (const std::string* cn = Property(facts, GRPC_X509_CN_PROPERTY_NAME)) {
    identity.x509_common_name = *cn;
  }
  if (!identity.x509_subject.empty()) {
    identity.principal = absl::StrCat("x509:", EscapePrincipalPart(identity.x509_subject));
  } else if (!identity.x509_common_name.empty()) {
    identity.principal = absl::StrCat("x509:CN=", EscapePrincipalPart(identity.x509_common_name));
  }
  // Neither: a TLS peer without a client certificate (cannot happen with client certs required).
  return identity;
}

}  // namespace

absl::string_view CallerTransportName(CallerTransport transport) {
  switch (transport) {
    case CallerTransport::kUnix:
      return "unix";
    case CallerTransport::kTls:
      return "tls";
    case CallerTransport::kInsecureTcp:
      return "insecure-tcp";
    case CallerTransport::kUnknown:
      break;
  }
  return "unknown";
}

std::string CallerIdentity::Describe() const {
  std::string text = identified() ? principal : "<unidentified>";
  absl::StrAppend(&text, " (", CallerTransportName(transport));
  if (pid.has_value()) absl::StrAppend(&text, " pid ", *pid);
  if (fallback) absl::StrAppend(&text, ", no peer credentials: daemon uid by flag");
  absl::StrAppend(&text, ")");
  return text;
}

std::string EscapePrincipalPart(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '%') {
      out += "%25";
    } else if (c == '/') {
      out += "%2F";
    } else {
      out += c;
    }
  }
  return out;
}

CallerIdentity IdentifyPeer(const PeerFacts& facts, const IdentityOptions& options) {
  // Properties only the server side can set come first: the auth context cannot be written by a
  // client (its metadata never lands there).
  if (Property(facts, kPeerUidProperty) != nullptr || absl::StartsWith(facts.peer, "unix:")) {
    return IdentifyUnix(facts, options);
  }
  const std::string* security = Property(facts, GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME);
  // "ssl" from SslServerCredentials, "tls" from TlsServerCredentials (the daemon's listener).
  if (security != nullptr && (*security == GRPC_SSL_TRANSPORT_SECURITY_TYPE ||
                              *security == GRPC_TLS_TRANSPORT_SECURITY_TYPE)) {
    return IdentifyTls(facts);
  }
  CallerIdentity identity;
  const std::string address = TcpPeerAddress(facts.peer);
  if (address.empty()) return identity;  // unknown transport: unidentified
  identity.transport = CallerTransport::kInsecureTcp;
  if (options.insecure_tcp) identity.principal = absl::StrCat("insecure:", address);
  return identity;
}

PeerFacts PeerFactsOf(const grpc::ServerContextBase& context) {
  // The properties IdentifyPeer reads; the others (a TLS peer's PEM certificate, its subject
  // alternative names, ...) are not copied: this runs for every call.
  static constexpr absl::string_view kRead[] = {
      kPeerUidProperty,
      kPeerGidProperty,
      kPeerPidProperty,
      GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME,
      GRPC_X509_SUBJECT_PROPERTY_NAME,
      GRPC_X509_CN_PROPERTY_NAME,
  };
  PeerFacts facts;
  facts.peer = context.peer();
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr) return facts;
  for (const grpc::AuthProperty& property : *auth) {
    const absl::string_view name(property.first.data(), property.first.size());
    if (std::find(std::begin(kRead), std::end(kRead), name) == std::end(kRead)) continue;
    // Keep the first value of a repeated property.
    facts.properties.emplace(std::string(name),
                             std::string(property.second.data(), property.second.size()));
  }
  return facts;
}

CallerIdentity IdentifyCaller(const grpc::ServerContextBase& context,
                              const IdentityOptions& options) {
  return IdentifyPeer(PeerFactsOf(context), options);
}

}  // namespace iommud
