// The TCP listener's credentials: mutual TLS from certificate files that are watched for rotation,
// or (--insecure_tcp, tests only) plaintext on a loopback address.
//
// With TLS the daemon presents --tls_cert/--tls_key and requires every client to present a
// certificate that --tls_client_ca signed (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY):
// a client without one, or with one from another CA, fails the handshake (the client sees
// UNAVAILABLE) and never reaches a handler. gRPC's FileWatcherCertificateProvider re-reads the
// files every refresh interval, so replacing them rotates the server's certificate and the trusted
// client CA without a restart; connections already established keep their session.
//
// gRPC's watcher takes whatever it reads (a broken file, or a key read just before its new
// certificate, would fail every new handshake), so with a staging directory it watches checked
// copies instead (TlsFileStager): a replacement that does not pass the start-up checks is logged
// and ignored, and key and certificate change together.
#ifndef IOMMUD_SERVER_SECURITY_TLS_CREDENTIALS_H_
#define IOMMUD_SERVER_SECURITY_TLS_CREDENTIALS_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace iommud {

struct TcpSecurityOptions {
  std::string listen;       // "host:port" of the TCP listener (--listen_tcp)
  std::string tls_cert;     // PEM certificate chain the daemon presents (--tls_cert)
  std::string tls_key;      // PEM private key of that certificate (--tls_key)
  std::string tls_client_ca;  // PEM CA bundle client certificates must chain to (--tls_client_ca)
  absl::Duration tls_refresh_interval = absl::Seconds(60);  // how often the files are re-read
  bool insecure_tcp = false;  // plaintext instead of TLS; loopback addresses only (--insecure_tcp)
  // Where TlsFileStager keeps the checked copies gRPC reads (the daemon: <state_dir>/tls); empty:
  // gRPC reads the files above directly.
  std::string staging_dir;
};

// The three files' contents.
struct TlsFileContents {
  std::string cert;
  std::string key;
  std::string client_ca;
};

class TlsFileStager;

// The TCP listener's credentials and, with a staging directory, the stager feeding them.
struct TcpCredentials {
  TcpCredentials();
  ~TcpCredentials();
  TcpCredentials(TcpCredentials&&);
  TcpCredentials& operator=(TcpCredentials&&);

  std::shared_ptr<grpc::ServerCredentials> credentials;
  std::unique_ptr<TlsFileStager> stager;  // null without TLS or staging directory
};

// True when `listen` ("host:port", "[v6]:port") names a loopback host: 127.0.0.0/8, ::1 or
// "localhost". An empty host, 0.0.0.0, [::] or any other name or address is not loopback.
bool IsLoopbackListenAddress(absl::string_view listen);

// Checks `options` and builds the TCP listener's credentials. Errors (nothing is started):
//   INVALID_ARGUMENT TLS_REQUIRED                  a TLS file is missing and no --insecure_tcp
//   INVALID_ARGUMENT INSECURE_TCP_NOT_LOOPBACK     --insecure_tcp on a non-loopback address
//   INVALID_ARGUMENT TLS_CONFLICT                  --insecure_tcp together with TLS files
//   INVALID_ARGUMENT TCP_OPTIONS_WITHOUT_LISTENER  TLS files or --insecure_tcp without a listener
//   INVALID_ARGUMENT INVALID_FLAG                  refresh interval under one second
//   FAILED_PRECONDITION TLS_FILE_UNREADABLE        a file cannot be read (metadata flag, path)
//   FAILED_PRECONDITION INVALID_TLS_FILE           a file holds no PEM certificate / unencrypted
//                                                  private key, or the key is not the cert's
//   (and TlsFileStager::Start's errors)
absl::StatusOr<TcpCredentials> TcpServerCredentials(const TcpSecurityOptions& options);

// The checks TcpServerCredentials makes (options and files), without building credentials.
absl::Status CheckTlsFiles(const TcpSecurityOptions& options);

// Reads the three files (TLS_FILE_UNREADABLE).
absl::StatusOr<TlsFileContents> ReadTlsFiles(const TcpSecurityOptions& options);

// Checks files' contents as CheckTlsFiles does (INVALID_TLS_FILE naming the flag and path).
absl::Status CheckTlsContents(const TcpSecurityOptions& options, const TlsFileContents& contents);

// Whether `options` ask for anything TCP (a listener, TLS files or --insecure_tcp): the daemon
// calls TcpServerCredentials exactly then, so that stray TLS flags are reported too.
bool WantsTcp(const TcpSecurityOptions& options);

}  // namespace iommud

#endif  // IOMMUD_SERVER_SECURITY_TLS_CREDENTIALS_H_
