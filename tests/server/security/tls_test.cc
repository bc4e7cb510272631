// The TCP listener's security on an in-process Daemon with a PKI generated at test time: mutual TLS
// (a client with a certificate of the configured CA is served and identified as x509:<subject>;
// no certificate, another CA's or an expired one is refused in the handshake), roles by subject
// (a viewer cannot mutate), certificate rotation without a restart, and the start-up refusals
// (TCP without TLS, plaintext off loopback, bad TLS files). --insecure_tcp on loopback works and
// identifies callers as insecure:<address>.
#include <grpc/grpc_security_constants.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "clients/cpp/iommud_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/daemon.h"
#include "server/security/tls_credentials.h"
#include "server/security/tls_file_stager.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"
#include "tests/testing/test_pki.h"

namespace iommud {
namespace {

using ::iommud::test::CertFiles;
using ::iommud::test::CertSpec;
using ::iommud::test::ReadTextFile;
using ::iommud::test::ReplaceFile;
using ::iommud::test::TempDir;
using ::iommud::test::TestCa;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kDevice[] = "0000:01:00.0";
constexpr char kOperatorSubject[] = "CN=orchestrator,O=iommud-test";

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// Generous: a TLS handshake of the sanitizer build takes seconds on a loaded 2-core machine.
constexpr absl::Duration kRpcTimeout = absl::Seconds(30);

std::string Me() { return absl::StrCat("uid:", getuid()); }

// What a TLS client presents and trusts.
struct ClientTls {
  std::string ca;  // trusted for the daemon's certificate
  CertFiles identity;  // empty cert/key: no client certificate
};

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = dir_.path();
    ASSERT_OK_AND_ASSIGN(ca_, TestCa::Create(pki_, "ca"));
    ASSERT_OK_AND_ASSIGN(other_ca_, TestCa::Create(pki_, "other-ca"));
    ASSERT_OK_AND_ASSIGN(server_, ca_->IssueServer("server", "iommud"));
    ASSERT_OK_AND_ASSIGN(operator_, ca_->IssueClient("operator", "orchestrator"));
    ASSERT_OK_AND_ASSIGN(viewer_, ca_->IssueClient("viewer", "dashboard"));
    ASSERT_EQ(operator_.subject, kOperatorSubject);
    // The daemon's files are copies, so that rotating them leaves the PKI's originals alone.
    conf_cert_ = dir_.WriteFile("conf-cert.pem", ReadTextFile(server_.cert));
    conf_key_ = dir_.WriteFile("conf-key.pem", ReadTextFile(server_.key));
    conf_client_ca_ = dir_.WriteFile("conf-client-ca.pem", ReadTextFile(ca_->files().cert));
  }

  DaemonOptions TlsOptions() {
    DaemonOptions options;
    options.state_dir = dir_.path() + "/state";
    options.topology = dir_.WriteFile("topology.textpb", test::kTestTopology);
    options.audit_interval = absl::ZeroDuration();
    options.unix_peer_fallback_to_daemon_uid = true;
    options.listen_tcp = "127.0.0.1:0";
    options.tls_cert = conf_cert_;
    options.tls_key = conf_key_;
    options.tls_client_ca = conf_client_ca_;
    options.tls_refresh_interval = absl::Seconds(1);
    options.policy_file = dir_.WriteFile(
        "policy.txt", absl::StrCat("admin ", Me(), "\noperator x509:", kOperatorSubject,
                                   "\nviewer x509-cn:dashboard\n"));
    return options;
  }

  void Start() { ASSERT_OK_AND_ASSIGN(daemon_, Daemon::Start(TlsOptions())); }

  std::string TcpTarget() const { return absl::StrCat("127.0.0.1:", daemon_->tcp_port()); }

  // A channel of its own (no subchannel shared with earlier channels, so every channel makes its
  // own handshake with the credentials it was given).
  std::shared_ptr<grpc::Channel> Channel(const ClientTls& tls) {
    ClientOptions options;
    options.target = TcpTarget();
    options.tls_ca = tls.ca;
    options.tls_cert = tls.identity.cert;
    options.tls_key = tls.identity.key;
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
        ChannelCredentialsFor(options, &arguments);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    if (!credentials.ok()) return nullptr;
    return grpc::CreateCustomChannel(options.target, *credentials, arguments);
  }
  std::unique_ptr<IommuClient> Client(const ClientTls& tls) {
    std::shared_ptr<grpc::Channel> channel = Channel(tls);
    if (channel == nullptr) return nullptr;
    return std::make_unique<IommuClient>(std::move(channel), kRpcTimeout);
  }

  // One ListUnits call on a fresh channel: OK when `tls` is accepted. A refused handshake fails
  // the call (it does not wait for the channel to become ready) with UNAVAILABLE.
  absl::Status ListUnitsWith(const ClientTls& tls) {
    std::unique_ptr<IommuClient> client = Client(tls);
    if (client == nullptr) return absl::InternalError("no channel");
    return client->ListUnits(iommu::v1::ListUnitsRequest()).status();
  }

  // The subject of the certificate the daemon presents to a client with `tls` ("" if refused).
  std::string ServerSubjectSeenBy(const ClientTls& tls) {
    std::shared_ptr<grpc::Channel> channel = Channel(tls);
    if (channel == nullptr) return "";
    std::unique_ptr<iommu::v1::Iommu::Stub> stub = iommu::v1::Iommu::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kRpcTimeout));
    iommu::v1::ListUnitsResponse response;
    if (!stub->ListUnits(&context, iommu::v1::ListUnitsRequest(), &response).ok()) return "";
    std::vector<grpc::string_ref> subject =
        context.auth_context()->FindPropertyValues(GRPC_X509_SUBJECT_PROPERTY_NAME);
    return subject.empty() ? "" : std::string(subject.front().data(), subject.front().size());
  }

  static absl::StatusOr<iommu::v1::Group> Claim(IommuClient& client, uint64_t group,
                                                const std::string& owner) {
    iommu::v1::ClaimOwnershipRequest request;
    request.set_group_id(group);
    request.set_owner(owner);
    return client.ClaimOwnership(request);
  }
  uint64_t GroupOf(const std::string& device) {
    return daemon_->registry()->GetDevice(device)->group;
  }

  TempDir dir_;
  std::string pki_;
  std::unique_ptr<TestCa> ca_;
  std::unique_ptr<TestCa> other_ca_;
  CertFiles server_;
  CertFiles operator_;
  CertFiles viewer_;
  std::string conf_cert_;
  std::string conf_key_;
  std::string conf_client_ca_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(TlsTest, ClientWithACertificateIsServedAndIdentifiedBySubject) {
  Start();
  // Through the client library's own Connect (what iommuctl uses), trusting only the test CA.
  ClientOptions options;
  options.target = TcpTarget();
  options.tls_ca = ca_->files().cert;
  options.tls_cert = operator_.cert;
  options.tls_key = operator_.key;
  options.connect_timeout = kRpcTimeout;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, IommuClient::Connect(options));
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::IommuUnit> units, client->ListAllUnits());
  EXPECT_EQ(units.size(), 2u);
  // The owner is prefixed with the caller's principal: x509:<subject as RFC 2253>.
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Group group, Claim(*client, GroupOf(kDevice), "vm"));
  EXPECT_EQ(group.owner(), absl::StrCat("x509:", kOperatorSubject, "/vm"));
  EXPECT_EQ(daemon_->registry()->GetGroup(GroupOf(kDevice))->owner,
            absl::StrCat("x509:", kOperatorSubject, "/vm"));
  // The client saw the daemon's certificate.
  EXPECT_EQ(ServerSubjectSeenBy({ca_->files().cert, operator_}), server_.subject);
}

TEST_F(TlsTest, ViewerCertificateReadsButCannotMutate) {
  Start();
  std::unique_ptr<IommuClient> viewer = Client({ca_->files().cert, viewer_});
  ASSERT_OK(viewer->ListAllGroups());
  const absl::StatusOr<iommu::v1::Group> claimed = Claim(*viewer, GroupOf(kDevice), "vm");
  EXPECT_ERROR(claimed, kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_EQ(GetErrorMetadata(claimed.status())["principal"], "x509:CN=dashboard,O=iommud-test");
  EXPECT_EQ(daemon_->registry()->GetGroup(GroupOf(kDevice))->owner, "");
}

TEST_F(TlsTest, WrongCertificatesAreRefusedInTheHandshake) {
  Start();
  ASSERT_OK(ListUnitsWith({ca_->files().cert, operator_}));  // the control
  // No client certificate.
  EXPECT_EQ(ListUnitsWith({ca_->files().cert, {}}).code(), absl::StatusCode::kUnavailable);
  // The same subject, signed by another CA.
  ASSERT_OK_AND_ASSIGN(const CertFiles impostor,
                       other_ca_->IssueClient("impostor", "orchestrator"));
  ASSERT_EQ(impostor.subject, kOperatorSubject);
  EXPECT_EQ(ListUnitsWith({ca_->files().cert, impostor}).code(), absl::StatusCode::kUnavailable);
  // A self-signed certificate: the other CA's own.
  EXPECT_EQ(ListUnitsWith({ca_->files().cert, other_ca_->files()}).code(),
            absl::StatusCode::kUnavailable);
  // Expired, though from the right CA.
  CertSpec expired;
  expired.subject = {{"O", "iommud-test"}, {"CN", "orchestrator"}};
  expired.not_before = absl::Now() - absl::Hours(48);
  expired.not_after = absl::Now() - absl::Hours(24);
  ASSERT_OK_AND_ASSIGN(const CertFiles stale, ca_->Issue("expired", expired));
  EXPECT_EQ(ListUnitsWith({ca_->files().cert, stale}).code(), absl::StatusCode::kUnavailable);
  // Plaintext against the TLS port.
  ClientOptions plain;
  plain.target = TcpTarget();
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  IommuClient plaintext(
      grpc::CreateCustomChannel(plain.target, grpc::InsecureChannelCredentials(), arguments),
      kRpcTimeout);
  EXPECT_EQ(plaintext.ListUnits(iommu::v1::ListUnitsRequest()).status().code(),
            absl::StatusCode::kUnavailable);
  // A client that does not trust the daemon's CA refuses the daemon.
  EXPECT_EQ(ListUnitsWith({other_ca_->files().cert, operator_}).code(),
            absl::StatusCode::kUnavailable);
  // None of them got anywhere; the unix socket still serves.
  ClientOptions unix_options;
  unix_options.target = daemon_->unix_target();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> local, IommuClient::Connect(unix_options));
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Group group, Claim(*local, GroupOf(kDevice), "vm"));
  EXPECT_EQ(group.owner(), absl::StrCat(Me(), "/vm"));
}

TEST_F(TlsTest, ReplacedCertificateFilesAreServedWithoutARestart) {
  Start();
  std::unique_ptr<IommuClient> before = Client({ca_->files().cert, operator_});
  ASSERT_OK(before->ListUnits(iommu::v1::ListUnitsRequest()));
  // A new CA: it signs the daemon's next certificate and the clients it will trust.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestCa> next_ca, TestCa::Create(pki_, "next-ca"));
  ASSERT_OK_AND_ASSIGN(const CertFiles next_server, next_ca->IssueServer("next-server", "iommud-2"));
  ASSERT_OK_AND_ASSIGN(const CertFiles next_operator,
                       next_ca->IssueClient("next-operator", "orchestrator"));
  const ClientTls next{next_ca->files().cert, next_operator};
  EXPECT_EQ(ListUnitsWith(next).code(), absl::StatusCode::kUnavailable);

  // Rotate as a deployment tool would: each file replaced by a rename.
  ASSERT_OK(ReplaceFile(conf_key_, ReadTextFile(next_server.key)));
  ASSERT_OK(ReplaceFile(conf_cert_, ReadTextFile(next_server.cert)));
  ASSERT_OK(ReplaceFile(conf_client_ca_, ReadTextFile(next_ca->files().cert)));

  // The watcher re-reads the files every second: poll until a client of the new CA gets in.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  absl::Status status;
  while (!(status = ListUnitsWith(next)).ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_OK(status);
  EXPECT_EQ(ServerSubjectSeenBy(next), next_server.subject);
  // The new client is identified by its subject like the old one was.
  std::unique_ptr<IommuClient> after = Client(next);
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Group group, Claim(*after, GroupOf(kDevice), "vm"));
  EXPECT_EQ(group.owner(), absl::StrCat("x509:", kOperatorSubject, "/vm"));
  // A connection made before the rotation keeps its session.
  EXPECT_OK(before->ListUnits(iommu::v1::ListUnitsRequest()));
  // New connections of the old PKI are refused: the daemon no longer trusts the old CA.
  EXPECT_EQ(ListUnitsWith({ca_->files().cert, operator_}).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ListUnitsWith({next_ca->files().cert, operator_}).code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(TlsTest, BrokenReplacementsAreIgnoredAndTheLastGoodFilesServed) {
  Start();
  TlsFileStager* stager = daemon_->tcp_credentials().stager.get();
  ASSERT_NE(stager, nullptr);
  // A truncated certificate, then half a rotation (a new certificate with the old key).
  ASSERT_OK_AND_ASSIGN(const CertFiles next, ca_->IssueServer("next-server", "iommud-2"));
  for (const std::string& replacement :
       {std::string("-----BEGIN CERTIFICATE-----\nMIIB"), ReadTextFile(next.cert)}) {
    const int64_t refused = stager->rejected_versions();
    ASSERT_OK(ReplaceFile(conf_cert_, replacement));
    const absl::Time deadline = absl::Now() + absl::Seconds(60);  // the stager polls every 1s
    while (stager->rejected_versions() == refused && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(100));
    }
    ASSERT_GT(stager->rejected_versions(), refused);
    // New connections still get the last good certificate.
    EXPECT_EQ(ServerSubjectSeenBy({ca_->files().cert, operator_}), server_.subject);
  }
  EXPECT_EQ(stager->staged_versions(), 0);
}

TEST_F(TlsTest, StartUpRefusesTcpWithoutTls) {
  DaemonOptions options = TlsOptions();
  options.tls_cert = options.tls_key = options.tls_client_ca = "";
  EXPECT_ERROR(Daemon::Start(options), kInvalidArgument, "TLS_REQUIRED");
  options = TlsOptions();
  options.tls_client_ca = "";  // client certificates cannot be verified: refused too
  const absl::StatusOr<std::unique_ptr<Daemon>> refused = Daemon::Start(options);
  EXPECT_ERROR(refused, kInvalidArgument, "TLS_REQUIRED");
  EXPECT_EQ(GetErrorMetadata(refused.status())["missing"], "--tls_client_ca");
  options = TlsOptions();
  options.insecure_tcp = true;  // plaintext and TLS at once
  EXPECT_ERROR(Daemon::Start(options), kInvalidArgument, "TLS_CONFLICT");
  options = TlsOptions();
  options.listen_tcp = "";  // TLS files without a listener
  EXPECT_ERROR(Daemon::Start(options), kInvalidArgument, "TCP_OPTIONS_WITHOUT_LISTENER");
  options = TlsOptions();
  options.tls_refresh_interval = absl::Milliseconds(10);
  EXPECT_ERROR(Daemon::Start(options), kInvalidArgument, "INVALID_FLAG");
  EXPECT_FALSE(Exists(dir_.path() + "/state/iommud.sock"));
}

TEST_F(TlsTest, StartUpRefusesBadTlsFiles) {
  const std::string garbage = dir_.WriteFile("garbage.pem", "not a certificate\n");
  struct Case {
    std::string cert, key, client_ca, reason, flag;
  };
  const std::vector<Case> cases = {
      {dir_.path() + "/missing.pem", conf_key_, conf_client_ca_, "TLS_FILE_UNREADABLE", "tls_cert"},
      {garbage, conf_key_, conf_client_ca_, "INVALID_TLS_FILE", "tls_cert"},
      {conf_cert_, garbage, conf_client_ca_, "INVALID_TLS_FILE", "tls_key"},
      {conf_cert_, operator_.key, conf_client_ca_, "INVALID_TLS_FILE", "tls_key"},  // not its key
      {conf_cert_, conf_key_, garbage, "INVALID_TLS_FILE", "tls_client_ca"},
      {conf_cert_, conf_key_, dir_.path() + "/missing.pem", "TLS_FILE_UNREADABLE",
       "tls_client_ca"},
      {conf_key_, conf_cert_, conf_client_ca_, "INVALID_TLS_FILE", "tls_cert"},  // swapped
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.cert, " ", c.key, " ", c.client_ca));
    DaemonOptions options = TlsOptions();
    options.tls_cert = c.cert;
    options.tls_key = c.key;
    options.tls_client_ca = c.client_ca;
    const absl::StatusOr<std::unique_ptr<Daemon>> refused = Daemon::Start(options);
    EXPECT_ERROR(refused, kFailedPrecondition, c.reason);
    EXPECT_EQ(GetErrorMetadata(refused.status())["flag"], c.flag);
    EXPECT_THAT(refused.status().message(), HasSubstr("--" + c.flag + "="));
  }
  EXPECT_FALSE(Exists(dir_.path() + "/state/iommud.sock"));
}

TEST_F(TlsTest, InsecureTcpOnlyOnLoopback) {
  for (const char* address : {"0.0.0.0:0", ":0", "[::]:0", "10.1.2.3:0", "example.com:0"}) {
    SCOPED_TRACE(address);
    DaemonOptions options = TlsOptions();
    options.tls_cert = options.tls_key = options.tls_client_ca = "";
    options.insecure_tcp = true;
    options.listen_tcp = address;
    EXPECT_ERROR(Daemon::Start(options), kInvalidArgument, "INSECURE_TCP_NOT_LOOPBACK");
  }
  DaemonOptions options = TlsOptions();
  options.tls_cert = options.tls_key = options.tls_client_ca = "";
  options.insecure_tcp = true;
  options.policy_file = dir_.WriteFile("insecure-policy.txt", "viewer insecure\n");
  ASSERT_OK_AND_ASSIGN(daemon_, Daemon::Start(options));
  ClientOptions client_options;
  client_options.target = TcpTarget();
  client_options.connect_timeout = kRpcTimeout;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, IommuClient::Connect(client_options));
  ASSERT_OK(client->ListAllUnits());
  const absl::StatusOr<iommu::v1::Group> claimed = Claim(*client, GroupOf(kDevice), "vm");
  EXPECT_ERROR(claimed, kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_EQ(GetErrorMetadata(claimed.status())["principal"], "insecure:127.0.0.1");
}

TEST(IsLoopbackListenAddressTest, AcceptsOnlyLoopbackHosts) {
  for (const char* address : {"127.0.0.1:0", "127.1.2.3:50051", "[::1]:0", "localhost:1",
                              "LocalHost:1", "[::ffff:127.0.0.1]:0"}) {
    EXPECT_TRUE(IsLoopbackListenAddress(address)) << address;
  }
  for (const char* address : {"0.0.0.0:0", ":0", "[::]:0", "10.0.0.1:1", "128.0.0.1:1",
                              "localhost.example.com:1", "[::2]:0", "[::1:0", "", "127.0.0.1.nip.io:1"}) {
    EXPECT_FALSE(IsLoopbackListenAddress(address)) << address;
  }
}

TEST(IommudTlsFlagsTest, BinaryRefusesPlainTcpAndPlaintextOffLoopback) {
  TempDir dir;
  for (const std::vector<std::string>& flags :
       std::vector<std::vector<std::string>>{{"--listen_tcp=127.0.0.1:0"},
                                             {"--listen_tcp=0.0.0.0:0", "--insecure_tcp"}}) {
    test::TestDaemonOptions options;
    options.flags = flags;
    const std::string state_dir = dir.path() + "/state";
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<test::Subprocess> process,
                         test::SpawnDaemon(options, state_dir, dir.path(), "iommud.log"));
    ASSERT_OK_AND_ASSIGN(const int exit_status, process->WaitForExit(absl::Seconds(30)));
    EXPECT_EQ(exit_status, 1) << process->Log();
    EXPECT_THAT(process->Log(), HasSubstr(flags.size() == 1 ? "(TLS_REQUIRED)"
                                                            : "(INSECURE_TCP_NOT_LOOPBACK)"));
    EXPECT_THAT(process->Log(), Not(HasSubstr("serving on")));
  }
}

}  // namespace
}  // namespace iommud
