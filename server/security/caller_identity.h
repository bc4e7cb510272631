// Who is calling: the caller's principal, derived only from what the transport proved.
//
// Principals (the strings policies, audit lines and owner cookies use):
//   unix socket   "uid:<n>"            from the auth-context properties iommud.peer_uid/_gid (and
//                                      _pid, not stamped today), which the unix listener
//                                      (server/security/peer_cred_listener.h) stamps from
//                                      SO_PEERCRED;
//   TLS (mTLS)    "x509:<subject>"     the verified client certificate's subject (RFC 2253, e.g.
//                                      "CN=vmm,O=example"; '%' and '/' escaped as %25 and %2F so
//                                      that '/' only ever separates a principal from an owner
//                                      name); "x509:CN=<cn>" when gRPC reports only the common
//                                      name;
//   plain TCP     "insecure:<address>" the peer's address without its port (--insecure_tcp only,
//                                      loopback only).
// A caller with none of these is unidentified (empty principal) and authorized for nothing.
//
// A unix peer without credential properties (the listener did not stamp them; the daemon's own
// listener always does) is identified as the daemon's own uid/gid ONLY when
// IdentityOptions::unix_peer_fallback_to_daemon_uid is set (the deprecated
// --unix_peer_fallback_to_daemon_uid flag); such identities are marked `fallback` and audit lines
// say so.
#ifndef IOMMUD_SERVER_SECURITY_CALLER_IDENTITY_H_
#define IOMMUD_SERVER_SECURITY_CALLER_IDENTITY_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace iommud {

// Auth-context property names the unix listener sets (decimal numbers).
inline constexpr char kPeerUidProperty[] = "iommud.peer_uid";
inline constexpr char kPeerGidProperty[] = "iommud.peer_gid";
inline constexpr char kPeerPidProperty[] = "iommud.peer_pid";

enum class CallerTransport { kUnknown, kUnix, kTls, kInsecureTcp };
absl::string_view CallerTransportName(CallerTransport transport);  // "unix", "tls", ...

struct IdentityOptions {
  // Identify a unix peer without credential properties as the daemon's own uid/gid (see above).
  bool unix_peer_fallback_to_daemon_uid = false;
  uint32_t daemon_uid = 0;  // getuid()/getgid() of the daemon; set by the daemon
  uint32_t daemon_gid = 0;
  // Whether a plaintext TCP listener exists (--insecure_tcp). When false, a TCP peer without TLS
  // is unidentified rather than "insecure:...".
  bool insecure_tcp = false;
};

struct CallerIdentity {
  CallerTransport transport = CallerTransport::kUnknown;
  std::string principal;  // empty: unidentified
  std::optional<uint32_t> uid;  // unix peers
  std::optional<uint32_t> gid;
  std::optional<int64_t> pid;
  std::string x509_subject;      // TLS peers, unescaped
  std::string x509_common_name;  // TLS peers
  bool fallback = false;  // a unix peer identified by the fallback, not by its credentials

  bool identified() const { return !principal.empty(); }
  // For audit lines: the principal plus how it was established, e.g. "uid:1000 (unix pid 42)".
  std::string Describe() const;
};

// What the transport says about a peer, decoupled from grpc::ServerContextBase for tests.
struct PeerFacts {
  std::string peer;  // ServerContextBase::peer(): "unix:...", "ipv4:127.0.0.1:5555", "ipv6:[::1]:5"
  // The first value of each auth-context property IdentifyPeer reads (transport_security_type,
  // x509_subject, x509_common_name, iommud.peer_*).
  std::map<std::string, std::string> properties;
};

// Pure: the identity `facts` establish under `options`.
CallerIdentity IdentifyPeer(const PeerFacts& facts, const IdentityOptions& options);

// The facts of `context`: its peer and the auth-context properties IdentifyPeer reads (the
// iommud.peer_* ones, transport_security_type, x509_subject, x509_common_name).
PeerFacts PeerFactsOf(const grpc::ServerContextBase& context);

// IdentifyPeer(PeerFactsOf(context), options).
CallerIdentity IdentifyCaller(const grpc::ServerContextBase& context,
                              const IdentityOptions& options = {});

// Escapes '%' and '/' of an x509 subject for use inside a principal.
std::string EscapePrincipalPart(absl::string_view text);

}  // namespace iommud

#endif  // IOMMUD_SERVER_SECURITY_CALLER_IDENTITY_H_
