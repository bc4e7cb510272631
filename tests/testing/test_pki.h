// A throw-away PKI for TLS tests, generated at test time with libcrypto (no key material in the
// repository): certificate authorities and the certificates they sign (ECDSA P-256, SHA-256),
// written as PEM files into a directory.
#ifndef IOMMUD_TESTS_TESTING_TEST_PKI_H_
#define IOMMUD_TESTS_TESTING_TEST_PKI_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace iommud {
namespace test {

// PEM files of one certificate and its key.
struct CertFiles {
  std::string cert;     // path of the PEM certificate
  std::string key;      // path of the PEM private key (unencrypted)
  std::string subject;  // RFC 2253 form, as gRPC reports it: "CN=vmm,O=iommud-test"
};

struct CertSpec {
  // Subject entries in order, e.g. {{"O", "iommud-test"}, {"CN", "vmm"}} (RFC 2253 lists them
  // last first: "CN=vmm,O=iommud-test").
  std::vector<std::pair<std::string, std::string>> subject;
  std::vector<std::string> dns_names;  // subjectAltName DNS entries (server certificates)
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries ("127.0.0.1", "::1")
  absl::Time not_before = absl::Now() - absl::Hours(1);
  absl::Time not_after = absl::Now() + absl::Hours(24);
  bool server = false;  // extendedKeyUsage serverAuth (else clientAuth)
};

// A certificate authority whose files live in a directory; Issue signs new certificates.
class TestCa {
 public:
  // A self-signed CA "CN=<name>,O=iommud-test" written to <dir>/<name>.pem (+ -key.pem).
  static absl::StatusOr<std::unique_ptr<TestCa>> Create(const std::string& dir,
                                                         const std::string& name);
  ~TestCa();
  TestCa(const TestCa&) = delete;
  TestCa& operator=(const TestCa&) = delete;

  const CertFiles& files() const { return files_; }  // the CA's own certificate and key

  // A certificate for `spec` signed by this CA, written to <dir>/<file_name>.pem and
  // <dir>/<file_name>-key.pem (replacing files of that name).
  absl::StatusOr<CertFiles> Issue(const std::string& file_name, const CertSpec& spec);

  // Issue() of a server certificate for localhost, 127.0.0.1 and ::1, subject "CN=<name>,O=...".
  absl::StatusOr<CertFiles> IssueServer(const std::string& file_name, const std::string& name);
  // Issue() of a client certificate with subject "CN=<common_name>,O=iommud-test".
  absl::StatusOr<CertFiles> IssueClient(const std::string& file_name,
                                        const std::string& common_name);

 private:
  struct Keys;
  TestCa() = default;
  std::string dir_;
  CertFiles files_;
  std::unique_ptr<Keys> keys_;  // the CA's key and certificate
  long serial_ = 1;             // NOLINT(runtime/int): OpenSSL's serial type
};

// Reads a whole file ("" if it cannot be read).
std::string ReadTextFile(const std::string& path);

// Writes `content` to `path` atomically (a temporary file renamed over it), as certificate
// rotation tools do, so that a watcher never reads half a file.
absl::Status ReplaceFile(const std::string& path, const std::string& content);

}  // namespace test
}  // namespace iommud

#endif  // IOMMUD_TESTS_TESTING_TEST_PKI_H_
