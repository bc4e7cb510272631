// TlsFileStager: the files gRPC watches change only to checked versions, key and certificate in
// one file; refused replacements leave them untouched. Driven by PollOnce (no refresh thread).
#include "server/security/tls_file_stager.h"

#include <sys/stat.h>

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"
#include "tests/testing/test_pki.h"

namespace iommud {
namespace {

using ::iommud::test::CertFiles;
using ::iommud::test::ReadTextFile;
using ::iommud::test::ReplaceFile;
using ::iommud::test::TempDir;
using ::iommud::test::TestCa;

int ModeOf(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 07777) : -1;
}

class TlsFileStagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(ca_, TestCa::Create(dir_.path(), "ca"));
    ASSERT_OK_AND_ASSIGN(server_, ca_->IssueServer("server", "iommud"));
    ASSERT_OK_AND_ASSIGN(next_, ca_->IssueServer("next", "iommud-2"));
    options_.listen = "127.0.0.1:0";
    options_.tls_cert = dir_.WriteFile("cert.pem", ReadTextFile(server_.cert));
    options_.tls_key = dir_.WriteFile("key.pem", ReadTextFile(server_.key));
    options_.tls_client_ca = dir_.WriteFile("client-ca.pem", ReadTextFile(ca_->files().cert));
    options_.tls_refresh_interval = absl::InfiniteDuration();  // PollOnce only
    staging_ = dir_.path() + "/staging";
  }

  std::string Identity(const CertFiles& files) {
    return ReadTextFile(files.key) + "\n" + ReadTextFile(files.cert);
  }

  TempDir dir_;
  std::unique_ptr<TestCa> ca_;
  CertFiles server_;
  CertFiles next_;
  TcpSecurityOptions options_;
  std::string staging_;
};

TEST_F(TlsFileStagerTest, StagesKeyAndCertificateTogetherPrivately) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TlsFileStager> stager,
                       TlsFileStager::Start(options_, staging_));
  EXPECT_EQ(ReadTextFile(stager->identity_path()), Identity(server_));
  EXPECT_EQ(ReadTextFile(stager->client_ca_path()), ReadTextFile(ca_->files().cert));
  EXPECT_EQ(ModeOf(staging_), 0700);
  EXPECT_EQ(ModeOf(stager->identity_path()), 0600);
  // The combined file passes the same checks as separate ones.
  TcpSecurityOptions staged = options_;
  staged.tls_cert = staged.tls_key = stager->identity_path();
  staged.tls_client_ca = stager->client_ca_path();
  EXPECT_OK(CheckTlsFiles(staged));
  EXPECT_OK(stager->PollOnce());  // nothing changed
  EXPECT_EQ(stager->staged_versions(), 0);
  const std::string identity = stager->identity_path();
  stager.reset();
  EXPECT_EQ(ModeOf(identity), -1);  // removed with the stager
  EXPECT_EQ(ModeOf(staging_), -1);
}

TEST_F(TlsFileStagerTest, RefusedReplacementsLeaveTheStagedFilesAlone) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TlsFileStager> stager,
                       TlsFileStager::Start(options_, staging_));
  const std::string staged = ReadTextFile(stager->identity_path());
  // A broken certificate.
  ASSERT_OK(ReplaceFile(options_.tls_cert, "-----BEGIN CERTIFICATE-----\ntruncated"));
  EXPECT_ERROR(stager->PollOnce(), kFailedPrecondition, "INVALID_TLS_FILE");
  EXPECT_ERROR(stager->PollOnce(), kFailedPrecondition, "INVALID_TLS_FILE");
  EXPECT_EQ(stager->rejected_versions(), 1);  // the same version counts (and logs) once
  EXPECT_EQ(ReadTextFile(stager->identity_path()), staged);
  // Half a rotation: the new certificate with the old key.
  ASSERT_OK(ReplaceFile(options_.tls_cert, ReadTextFile(next_.cert)));
  EXPECT_ERROR(stager->PollOnce(), kFailedPrecondition, "INVALID_TLS_FILE");
  EXPECT_EQ(ReadTextFile(stager->identity_path()), staged);
  // A file that disappeared.
  ASSERT_EQ(std::remove(options_.tls_client_ca.c_str()), 0);
  EXPECT_ERROR(stager->PollOnce(), kFailedPrecondition, "TLS_FILE_UNREADABLE");
  EXPECT_EQ(ReadTextFile(stager->client_ca_path()), ReadTextFile(ca_->files().cert));
  EXPECT_EQ(stager->rejected_versions(), 3);
  EXPECT_EQ(stager->staged_versions(), 0);

  // The rotation completed: staged, key and certificate at once.
  ASSERT_OK(ReplaceFile(options_.tls_client_ca, ReadTextFile(ca_->files().cert)));
  ASSERT_OK(ReplaceFile(options_.tls_key, ReadTextFile(next_.key)));
  EXPECT_OK(stager->PollOnce());
  EXPECT_EQ(ReadTextFile(stager->identity_path()), Identity(next_));
  EXPECT_EQ(stager->staged_versions(), 1);
}

TEST_F(TlsFileStagerTest, StartRefusesBadFilesAndStagesNothing) {
  ASSERT_OK(ReplaceFile(options_.tls_key, ReadTextFile(next_.key)));
  EXPECT_ERROR(TlsFileStager::Start(options_, staging_), kFailedPrecondition, "INVALID_TLS_FILE");
  EXPECT_EQ(ModeOf(staging_), -1);
  options_.tls_key = dir_.path() + "/missing.pem";
  EXPECT_ERROR(TlsFileStager::Start(options_, staging_), kFailedPrecondition,
               "TLS_FILE_UNREADABLE");
  ASSERT_OK(ReplaceFile(dir_.path() + "/missing.pem", ReadTextFile(server_.key)));
  EXPECT_ERROR(TlsFileStager::Start(options_, "/nonexistent/dir/staging"), kFailedPrecondition,
               "TLS_STAGING_FAILED");
}

}  // namespace
}  // namespace iommud
