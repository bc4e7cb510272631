#include "tests/testing/test_pki.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace iommud {
namespace test {
namespace {

constexpr char kOrganization[] = "iommud-test";

struct X509Deleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct NameDeleter {
  void operator()(X509_NAME* name) const { X509_NAME_free(name); }
};
struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using UniqueX509 = std::unique_ptr<X509, X509Deleter>;
using UniquePkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using UniqueName = std::unique_ptr<X509_NAME, NameDeleter>;
using UniqueBio = std::unique_ptr<BIO, BioDeleter>;

absl::Status OpenSslFailure(absl::string_view what) {
  const unsigned long code = ERR_get_error();  // NOLINT(runtime/int)
  char text[256] = "";
  if (code != 0) ERR_error_string_n(code, text, sizeof(text));
  ERR_clear_error();
  return absl::InternalError(absl::StrCat("test PKI: ", what, ": ", text));
}

std::string Rfc2253(const std::vector<std::pair<std::string, std::string>>& subject) {
  std::vector<std::string> parts;
  for (auto it = subject.rbegin(); it != subject.rend(); ++it) {
    parts.push_back(absl::StrCat(it->first, "=", it->second));
  }
  return absl::StrJoin(parts, ",");
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (extension == nullptr) return OpenSslFailure(absl::StrCat("extension ", value));
  const int added = X509_add_ext(cert, extension, -1);
  X509_EXTENSION_free(extension);
  if (added != 1) return OpenSslFailure("X509_add_ext");
  return absl::OkStatus();
}

std::string PemOf(X509* cert) {
  UniqueBio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);  // NOLINT(runtime/int)
  return std::string(data, static_cast<size_t>(size));
}

std::string PemOf(EVP_PKEY* key) {
  UniqueBio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);  // NOLINT(runtime/int)
  return std::string(data, static_cast<size_t>(size));
}

// A certificate for `spec` and `key`, signed by `issuer_key` as `issuer` (nullptr: self-signed CA).
absl::StatusOr<UniqueX509> MakeCertificate(const CertSpec& spec, EVP_PKEY* key, long serial,  // NOLINT
                                           X509* issuer, EVP_PKEY* issuer_key, bool ca) {
  UniqueX509 cert(X509_new());
  if (cert == nullptr) return OpenSslFailure("X509_new");
  X509_set_version(cert.get(), 2);  // v3
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  if (ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(spec.not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(spec.not_after)) == nullptr) {
    return OpenSslFailure("validity");
  }
  UniqueName name(X509_NAME_new());
  for (const auto& [field, value] : spec.subject) {
    if (X509_NAME_add_entry_by_txt(name.get(), field.c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1,
                                   0) != 1) {
      return OpenSslFailure(absl::StrCat("subject ", field));
    }
  }
  X509_set_subject_name(cert.get(), name.get());
  X509_set_issuer_name(cert.get(),
                       issuer != nullptr ? X509_get_subject_name(issuer) : name.get());
  X509_set_pubkey(cert.get(), key);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  if (ca) {
    for (const auto& [nid, value] :
         std::vector<std::pair<int, std::string>>{{NID_basic_constraints, "critical,CA:TRUE"},
                                                  {NID_key_usage, "critical,keyCertSign,cRLSign"},
                                                  {NID_subject_key_identifier, "hash"}}) {
      if (absl::Status s = AddExtension(cert.get(), signer, nid, value); !s.ok()) return s;
    }
  } else {
    std::vector<std::string> names;
    for (const std::string& dns : spec.dns_names) names.push_back("DNS:" + dns);
    for (const std::string& ip : spec.ip_addresses) names.push_back("IP:" + ip);
    std::vector<std::pair<int, std::string>> extensions = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
        {NID_ext_key_usage, spec.server ? "serverAuth" : "clientAuth"},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"}};
    if (!names.empty()) extensions.push_back({NID_subject_alt_name, absl::StrJoin(names, ",")});
    for (const auto& [nid, value] : extensions) {
      if (absl::Status s = AddExtension(cert.get(), signer, nid, value); !s.ok()) return s;
    }
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0) return OpenSslFailure("X509_sign");
  return cert;
}

absl::StatusOr<UniquePkey> NewKey() {
  UniquePkey key(EVP_EC_gen("P-256"));
  if (key == nullptr) return OpenSslFailure("EVP_EC_gen");
  return key;
}

}  // namespace

struct TestCa::Keys {
  UniquePkey key;
  UniqueX509 cert;
};

TestCa::~TestCa() = default;

absl::StatusOr<std::unique_ptr<TestCa>> TestCa::Create(const std::string& dir,
                                                       const std::string& name) {
  std::unique_ptr<TestCa> ca(new TestCa());
  ca->dir_ = dir;
  ca->keys_ = std::make_unique<Keys>();
  absl::StatusOr<UniquePkey> key = NewKey();
  if (!key.ok()) return key.status();
  ca->keys_->key = std::move(*key);
  CertSpec spec;
  spec.subject = {{"O", kOrganization}, {"CN", name}};
  spec.not_after = absl::Now() + absl::Hours(24 * 30);
  absl::StatusOr<UniqueX509> cert =
      MakeCertificate(spec, ca->keys_->key.get(), ca->serial_++, nullptr, ca->keys_->key.get(),
                      /*ca=*/true);
  if (!cert.ok()) return cert.status();
  ca->keys_->cert = std::move(*cert);
  ca->files_.cert = absl::StrCat(dir, "/", name, ".pem");
  ca->files_.key = absl::StrCat(dir, "/", name, "-key.pem");
  ca->files_.subject = Rfc2253(spec.subject);
  if (absl::Status s = ReplaceFile(ca->files_.key, PemOf(ca->keys_->key.get())); !s.ok()) return s;
  if (absl::Status s = ReplaceFile(ca->files_.cert, PemOf(ca->keys_->cert.get())); !s.ok()) {
    return s;
  }
  return ca;
}

absl::StatusOr<CertFiles> TestCa::Issue(const std::string& file_name, const CertSpec& spec) {
  absl::StatusOr<UniquePkey> key = NewKey();
  if (!key.ok()) return key.status();
  absl::StatusOr<UniqueX509> cert = MakeCertificate(spec, key->get(), serial_++, keys_->cert.get(),
                                                    keys_->key.get(), /*ca=*/false);
  if (!cert.ok()) return cert.status();
  CertFiles files;
  files.cert = absl::StrCat(dir_, "/", file_name, ".pem");
  files.key = absl::StrCat(dir_, "/", file_name, "-key.pem");
  files.subject = Rfc2253(spec.subject);
  if (absl::Status s = ReplaceFile(files.key, PemOf(key->get())); !s.ok()) return s;
  if (absl::Status s = ReplaceFile(files.cert, PemOf(cert->get())); !s.ok()) return s;
  return files;
}

absl::StatusOr<CertFiles> TestCa::IssueServer(const std::string& file_name,
                                              const std::string& name) {
  CertSpec spec;
  spec.subject = {{"O", kOrganization}, {"CN", name}};
  spec.dns_names = {"localhost"};
  spec.ip_addresses = {"127.0.0.1", "::1"};
  spec.server = true;
  return Issue(file_name, spec);
}

absl::StatusOr<CertFiles> TestCa::IssueClient(const std::string& file_name,
                                              const std::string& common_name) {
  CertSpec spec;
  spec.subject = {{"O", kOrganization}, {"CN", common_name}};
  return Issue(file_name, spec);
}

std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::Status ReplaceFile(const std::string& path, const std::string& content) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << content;
    out.close();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", temporary));
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", temporary, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace test
}  // namespace iommud
