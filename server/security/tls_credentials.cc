#include "server/security/tls_credentials.h"

#include <arpa/inet.h>
#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/status_macros.h"
#include "server/security/tls_file_stager.h"

namespace iommud {
namespace {

// One file named by a flag.
struct TlsFile {
  const char* flag;  // "tls_cert", ...
  const std::string& path;
};

absl::Status FileError(absl::string_view reason, const TlsFile& file, absl::string_view why) {
  return Error(absl::StatusCode::kFailedPrecondition, reason,
               absl::StrCat("--", file.flag, "=", file.path, ": ", why),
               {{"flag", file.flag}, {"path", file.path}});
}

absl::StatusOr<std::string> ReadTlsFile(const TlsFile& file) {
  std::ifstream in(file.path, std::ios::binary);
  if (!in) return FileError(reason::kTlsFileUnreadable, file, std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return FileError(reason::kTlsFileUnreadable, file, "read failed");
  return text.str();
}

// OpenSSL's most recent error as text (and clears the queue), "" when there is none.
std::string OpenSslError() {
  const unsigned long code = ERR_get_error();  // NOLINT(runtime/int): OpenSSL's type
  ERR_clear_error();
  if (code == 0) return "";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Deleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using UniqueBio = std::unique_ptr<BIO, BioDeleter>;
using UniqueX509 = std::unique_ptr<X509, X509Deleter>;
using UniquePkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

UniqueBio BioOf(const std::string& text) {
  return UniqueBio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Every PEM certificate of `text` (the contents of `file`): at least one, and nothing that fails
// to parse.
absl::StatusOr<std::vector<UniqueX509>> ParseCertificates(const TlsFile& file,
                                                          const std::string& text) {
  UniqueBio bio = BioOf(text);
  std::vector<UniqueX509> certs;
  ERR_clear_error();
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  // The loop ends at the end of the input (PEM_R_NO_START_LINE) or at a block that is broken.
  const unsigned long last = ERR_peek_last_error();  // NOLINT(runtime/int)
  const bool clean_end =
      ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  if (!certs.empty() && !clean_end && last != 0) {
    return FileError(reason::kInvalidTlsFile, file,
                     absl::StrCat("certificate ", certs.size() + 1,
                                  " does not parse: ", OpenSslError()));
  }
  ERR_clear_error();
  if (certs.empty()) {
    return FileError(reason::kInvalidTlsFile, file,
                     "no PEM certificate (-----BEGIN CERTIFICATE-----)");
  }
  return certs;
}

// Never prompts for a passphrase (OpenSSL's default callback would read the terminal).
int NoPassphrase(char*, int, int, void*) { return 0; }

absl::StatusOr<UniquePkey> ParsePrivateKey(const TlsFile& file, const std::string& text) {
  UniqueBio bio = BioOf(text);
  ERR_clear_error();
  UniquePkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    return FileError(reason::kInvalidTlsFile, file,
                     absl::StrCat("no unencrypted PEM private key: ", OpenSslError()));
  }
  return key;
}

absl::Status InvalidOptions(absl::string_view reason, absl::string_view message,
                            const ErrorMetadata& metadata = {}) {
  return Error(absl::StatusCode::kInvalidArgument, reason, message, metadata);
}

bool AnyTlsFile(const TcpSecurityOptions& options) {
  return !options.tls_cert.empty() || !options.tls_key.empty() || !options.tls_client_ca.empty();
}

absl::Status CheckOptions(const TcpSecurityOptions& options) {
  if (options.listen.empty()) {
    return InvalidOptions(reason::kTcpOptionsWithoutListener,
                          "--tls_cert/--tls_key/--tls_client_ca/--insecure_tcp need --listen_tcp");
  }
  if (options.insecure_tcp) {
    if (AnyTlsFile(options)) {
      return InvalidOptions(reason::kTlsConflict,
                            "--insecure_tcp serves plaintext: drop it to use --tls_cert/--tls_key/"
                            "--tls_client_ca, or drop those",
                            {{"listen_tcp", options.listen}});
    }
    if (!IsLoopbackListenAddress(options.listen)) {
      return InvalidOptions(
          reason::kInsecureTcpNotLoopback,
          absl::StrCat("--insecure_tcp serves plaintext (tests only) and only on a loopback address "
                       "(127.0.0.0/8, [::1], localhost), not on ",
                       options.listen),
          {{"listen_tcp", options.listen}});
    }
    return absl::OkStatus();
  }
  std::vector<std::string> missing;
  if (options.tls_cert.empty()) missing.push_back("--tls_cert");
  if (options.tls_key.empty()) missing.push_back("--tls_key");
  if (options.tls_client_ca.empty()) missing.push_back("--tls_client_ca");
  if (!missing.empty()) {
    std::string names;
    for (const std::string& name : missing) absl::StrAppend(&names, names.empty() ? "" : " ", name);
    return InvalidOptions(
        reason::kTlsRequired,
        absl::StrCat("--listen_tcp=", options.listen,
                     " serves mutual TLS and needs --tls_cert, --tls_key and --tls_client_ca "
                     "(missing: ",
                     names, "); plaintext TCP is --insecure_tcp on loopback, for tests"),
        {{"listen_tcp", options.listen}, {"missing", names}});
  }
  if (options.tls_refresh_interval < absl::Seconds(1)) {
    return InvalidOptions(reason::kInvalidFlag,
                          absl::StrCat("--tls_refresh_interval=",
                                       absl::FormatDuration(options.tls_refresh_interval),
                                       ": must be at least 1s"),
                          {{"flag", "tls_refresh_interval"}});
  }
  return absl::OkStatus();
}

}  // namespace

TcpCredentials::TcpCredentials() = default;
TcpCredentials::~TcpCredentials() = default;
TcpCredentials::TcpCredentials(TcpCredentials&&) = default;
TcpCredentials& TcpCredentials::operator=(TcpCredentials&&) = default;

bool WantsTcp(const TcpSecurityOptions& options) {
  return !options.listen.empty() || options.insecure_tcp || AnyTlsFile(options);
}

bool IsLoopbackListenAddress(absl::string_view listen) {
  absl::string_view host;
  if (!listen.empty() && listen.front() == '[') {
    const size_t close = listen.find(']');
    if (close == absl::string_view::npos) return false;
    host = listen.substr(1, close - 1);
  } else {
    const size_t colon = listen.rfind(':');
    host = colon == absl::string_view::npos ? listen : listen.substr(0, colon);
  }
  if (host.empty()) return false;  // ":50051" is every interface
  if (absl::AsciiStrToLower(host) == "localhost") return true;
  const std::string text(host);
  in_addr v4;
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

absl::StatusOr<TlsFileContents> ReadTlsFiles(const TcpSecurityOptions& options) {
  TlsFileContents contents;
  ASSIGN_OR_RETURN(contents.cert, ReadTlsFile(TlsFile{"tls_cert", options.tls_cert}));
  ASSIGN_OR_RETURN(contents.key, ReadTlsFile(TlsFile{"tls_key", options.tls_key}));
  ASSIGN_OR_RETURN(contents.client_ca, ReadTlsFile(TlsFile{"tls_client_ca", options.tls_client_ca}));
  return contents;
}

absl::Status CheckTlsContents(const TcpSecurityOptions& options, const TlsFileContents& contents) {
  const TlsFile cert_file{"tls_cert", options.tls_cert};
  const TlsFile key_file{"tls_key", options.tls_key};
  ASSIGN_OR_RETURN(const std::vector<UniqueX509> chain, ParseCertificates(cert_file, contents.cert));
  ASSIGN_OR_RETURN(const UniquePkey key, ParsePrivateKey(key_file, contents.key));
  ERR_clear_error();
  if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kInvalidTlsFile,
                 absl::StrCat("--tls_key=", options.tls_key, " is not the key of --tls_cert=",
                              options.tls_cert, " (", OpenSslError(), ")"),
                 {{"flag", "tls_key"}, {"path", options.tls_key}, {"cert", options.tls_cert}});
  }
  ASSIGN_OR_RETURN(
      const std::vector<UniqueX509> cas,
      ParseCertificates(TlsFile{"tls_client_ca", options.tls_client_ca}, contents.client_ca));
  return absl::OkStatus();
}

absl::Status CheckTlsFiles(const TcpSecurityOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  if (options.insecure_tcp) return absl::OkStatus();
  ASSIGN_OR_RETURN(const TlsFileContents contents, ReadTlsFiles(options));
  return CheckTlsContents(options, contents);
}

absl::StatusOr<TcpCredentials> TcpServerCredentials(const TcpSecurityOptions& options) {
  RETURN_IF_ERROR(CheckTlsFiles(options));
  TcpCredentials out;
  if (options.insecure_tcp) {
    out.credentials = grpc::InsecureServerCredentials();
    return out;
  }
  std::string identity_path = options.tls_cert;
  std::string key_path = options.tls_key;
  std::string client_ca_path = options.tls_client_ca;
  if (!options.staging_dir.empty()) {
    ASSIGN_OR_RETURN(out.stager, TlsFileStager::Start(options, options.staging_dir));
    identity_path = key_path = out.stager->identity_path();
    client_ca_path = out.stager->client_ca_path();
  }
  // gRPC takes whole seconds; an infinite interval (tests) re-reads about never.
  const int64_t seconds = std::min<int64_t>(absl::ToInt64Seconds(options.tls_refresh_interval),
                                            std::numeric_limits<int32_t>::max());
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      key_path, identity_path, client_ca_path, static_cast<unsigned int>(seconds));
  grpc::experimental::TlsServerCredentialsOptions tls(std::move(provider));
  tls.watch_identity_key_cert_pairs();
  tls.watch_root_certs();
  tls.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  out.credentials = grpc::experimental::TlsServerCredentials(tls);
  return out;
}

}  // namespace iommud
