// Limits end to end (server/security/limits.h, request_bounds.h): on the real iommud binary, an
// oversized message, garbage bytes and a bad HTTP/2 stream on its socket, a rate-limited principal
// next to one that is still served, a bad limit flag; on an in-process Daemon, watcher slots,
// oversized Map, fields and repeated fields, clamped page sizes and the iommud_limited_total
// metric. After every refusal the daemon must still serve (health, a read) and its registry must be
// unchanged.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "clients/cpp/iommud_client.h"
#include "gtest/gtest.h"
#include "proto/status_codec.h"
#include "server/daemon.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::iommud::test::TempDir;
using ::iommud::test::TestDaemon;
using ::iommud::test::TestDaemonOptions;

constexpr char kDevice[] = "0000:01:00.0";

std::string Me() { return absl::StrCat("uid:", getuid()); }

// Everything a client can see of the registry, as text (a refused call must leave it unchanged).
std::string Inventory(IommuClient& client) {
  std::string text;
  absl::StatusOr<std::vector<iommu::v1::Group>> groups = client.ListAllGroups();
  absl::StatusOr<std::vector<iommu::v1::Domain>> domains = client.ListAllDomains();
  absl::StatusOr<std::vector<iommu::v1::Device>> devices = client.ListAllDevices();
  if (!groups.ok() || !domains.ok() || !devices.ok()) return "(unreadable)";
  for (const auto& group : *groups) absl::StrAppend(&text, group.ShortDebugString(), "\n");
  for (const auto& domain : *domains) absl::StrAppend(&text, domain.ShortDebugString(), "\n");
  for (const auto& device : *devices) absl::StrAppend(&text, device.ShortDebugString(), "\n");
  return text;
}

void ExpectServing(IommuClient& client) {
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> health =
      client.CheckHealth();
  ASSERT_OK(health);
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
  iommu::v1::GetDeviceRequest get;
  get.set_device(kDevice);
  EXPECT_OK(client.GetDevice(get));
}

// Connects to the daemon's unix socket and sends `bytes` (then closes). Best effort: the daemon
// may close the connection before everything is sent.
void SendRaw(const std::string& socket_path, const std::string& bytes) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  ASSERT_LT(socket_path.size(), sizeof(address.sun_path));
  std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size());
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0)
      << std::strerror(errno);
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the daemon hung up on us: fine
    sent += static_cast<size_t>(n);
  }
  // Half-close, then read until the daemon closes too (it answers junk with GOAWAY or just hangs
  // up), so the test covers the daemon's side of the whole exchange; bounded by a timeout.
  shutdown(fd, SHUT_WR);
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  char buffer[4096];
  while (recv(fd, buffer, sizeof(buffer), 0) > 0) {
  }
  close(fd);
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 random(seed);
  std::string bytes(n, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xff);
  return bytes;
}

// An HTTP/2 frame header: 24-bit length, type, flags, 31-bit stream id.
std::string Frame(uint32_t length, uint8_t type, uint8_t flags, uint32_t stream) {
  return std::string{static_cast<char>(length >> 16), static_cast<char>(length >> 8),
                     static_cast<char>(length),       static_cast<char>(type),
                     static_cast<char>(flags),        static_cast<char>(stream >> 24),
                     static_cast<char>(stream >> 16), static_cast<char>(stream >> 8),
                     static_cast<char>(stream)};
}

constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// --- The real binary ---

TEST(LimitsBinaryTest, OversizedMessageIsRefusedByGrpcAndChangesNothing) {
  TestDaemonOptions options;
  options.flags = {"--max_message_bytes=65536"};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon->Connect());
  const std::string before = Inventory(*client);

  iommu::v1::ProbeDeviceRequest probe;
  probe.set_unit("u0");
  probe.set_device(std::string(100000, 'd'));
  probe.set_rid(0x30);
  const absl::Status refused = client->ProbeDevice(probe).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;

  // Just under the transport limit: the field bound answers, with a reason.
  probe.set_device(std::string(60000, 'd'));
  EXPECT_ERROR(client->ProbeDevice(probe), kInvalidArgument, "FIELD_TOO_LONG");
  probe.set_device("0000:03:00.0");
  for (int i = 0; i < 5000; ++i) probe.add_alias_rids(i);
  EXPECT_ERROR(client->ProbeDevice(probe), kInvalidArgument, "TOO_MANY_ELEMENTS");

  ExpectServing(*client);
  EXPECT_EQ(Inventory(*client), before);
  EXPECT_TRUE(daemon->process().running());
}

TEST(LimitsBinaryTest, GarbageOnTheSocketLeavesTheDaemonServing) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon->Connect());
  const std::string before = Inventory(*client);

  // Random bytes instead of a preface.
  for (uint32_t seed = 1; seed <= 4; ++seed) {
    SendRaw(daemon->socket_path(), RandomBytes(size_t{16} << seed << 10, seed));
  }
  // A valid preface, then junk: random bytes; a frame announcing 16 MiB; HEADERS with a broken
  // HPACK block; DATA on a stream that was never opened; a SETTINGS frame of the wrong length.
  SendRaw(daemon->socket_path(), kPreface + RandomBytes(64 << 10, 7));
  SendRaw(daemon->socket_path(), kPreface + Frame(0xffffff, 0x0, 0x0, 1) + RandomBytes(4096, 8));
  SendRaw(daemon->socket_path(), kPreface + Frame(0, 0x4, 0, 0) +
                                     Frame(64, 0x1, 0x5, 1) + RandomBytes(64, 9));
  SendRaw(daemon->socket_path(), kPreface + Frame(0, 0x4, 0, 0) + Frame(16, 0x0, 0x1, 3) +
                                     RandomBytes(16, 10));
  SendRaw(daemon->socket_path(), kPreface + Frame(5, 0x4, 0, 0) + RandomBytes(5, 11));
  // Half a preface and nothing more (closed by us).
  SendRaw(daemon->socket_path(), std::string(kPreface).substr(0, 10));

  ExpectServing(*client);
  EXPECT_EQ(Inventory(*client), before);
  EXPECT_TRUE(daemon->process().running());
  // A new connection is served too.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> fresh, daemon->Connect());
  ExpectServing(*fresh);
}

TEST(LimitsBinaryTest, RateLimitedPrincipalDoesNotStarveAnother) {
  TempDir files;
  const std::string policy =
      files.WriteFile("policy.txt", absl::StrCat("admin ", Me(), "\noperator insecure\n"));
  TestDaemonOptions options;
  // Eight calls each, then (practically) no refill during the test.
  options.flags = {"--rate_per_client=0.001", "--burst_per_client=8",
                   "--listen_tcp=127.0.0.1:0", "--insecure_tcp", absl::StrCat("--policy_file=", policy)};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
  ASSERT_OK(daemon->process().WaitForLog("listening on tcp port ", absl::Seconds(5)));
  const std::string log = daemon->Log();
  const size_t at = log.find("listening on tcp port ") + strlen("listening on tcp port ");
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(log.substr(at, log.find('\n', at) - at), &port)) << log;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> mine, daemon->Connect());
  ClientOptions tcp_options;
  tcp_options.target = absl::StrCat("127.0.0.1:", port);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> other, IommuClient::Connect(tcp_options));
  const std::string before = Inventory(*other);  // 3 of the other principal's 8 calls

  iommu::v1::ClaimDeviceRequest claim;
  claim.set_device(kDevice);
  claim.set_owner("vm");
  iommu::v1::GetDeviceRequest get;
  get.set_device(kDevice);
  for (int i = 0; i < 8; ++i) ASSERT_OK(mine->GetDevice(get));
  absl::StatusOr<iommu::v1::Group> refused = mine->ClaimDevice(claim);
  EXPECT_ERROR(refused, kResourceExhausted, "RATE_LIMITED");
  EXPECT_EQ(GetErrorMetadata(refused.status())["principal"], Me());
  EXPECT_ERROR(mine->GetDevice(get), kResourceExhausted, "RATE_LIMITED");

  // The other principal has its own bucket, health is not limited, nothing changed.
  EXPECT_OK(other->GetDevice(get));
  EXPECT_EQ(Inventory(*other), before);
  EXPECT_OK(mine->CheckHealth());
}

TEST(LimitsBinaryTest, BadLimitFlagIsAUsageError) {
  TempDir dir;
  TestDaemonOptions options;
  options.flags = {"--max_calls_per_client=0"};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<test::Subprocess> process,
                       test::SpawnDaemon(options, dir.path() + "/state", dir.path(), "log"));
  ASSERT_OK_AND_ASSIGN(int exit_code, process->WaitForExit(absl::Seconds(30)));
  EXPECT_EQ(exit_code, 2);
  EXPECT_NE(process->Log().find("--max_calls_per_client=0: must be at least 1"),
            std::string::npos)
      << process->Log();
}

// --- In-process daemon (metrics and limits set directly) ---

class LimitsDaemonTest : public ::testing::Test {
 protected:
  void Start(const Limits& limits) {
    DaemonOptions options;
    options.state_dir = dir_.path() + "/state";
    options.topology = dir_.WriteFile("topology.textpb", test::kTestTopology);
    options.audit_interval = absl::ZeroDuration();
    options.unix_peer_fallback_to_daemon_uid = true;
    options.listen_tcp = "127.0.0.1:0";
    options.insecure_tcp = true;
    options.policy_file =
        dir_.WriteFile("policy.txt", absl::StrCat("admin ", Me(), "\noperator insecure\n"));
    options.limits = limits;
    ASSERT_OK_AND_ASSIGN(daemon_, Daemon::Start(options));
    ClientOptions unix_options;
    unix_options.target = daemon_->unix_target();
    ASSERT_OK_AND_ASSIGN(unix_, IommuClient::Connect(unix_options));
    ClientOptions tcp_options;
    tcp_options.target = absl::StrCat("127.0.0.1:", daemon_->tcp_port());
    ASSERT_OK_AND_ASSIGN(tcp_, IommuClient::Connect(tcp_options));
  }

  double Limited(const std::string& reason) {
    for (const auto& family : daemon_->metrics()->registry()->Collect()) {
      if (family.name != "iommud_limited_total") continue;
      for (const auto& metric : family.metric) {
        for (const auto& label : metric.label) {
          if (label.name == "reason" && label.value == reason) return metric.counter.value;
        }
      }
    }
    return -1;
  }

  // An open WatchEvents stream (its first event read), or its final status if refused.
  struct Watch {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<iommu::v1::Event>> reader;
  };
  static absl::StatusOr<std::unique_ptr<Watch>> OpenWatch(IommuClient& client) {
    auto watch = std::make_unique<Watch>();
    iommu::v1::WatchEventsRequest request;
    watch->reader = client.stub()->WatchEvents(&watch->context, request);
    iommu::v1::Event event;
    if (!watch->reader->Read(&event)) return FromGrpcStatus(watch->reader->Finish());
    return watch;
  }
  static void CloseWatch(std::unique_ptr<Watch> watch) {
    watch->context.TryCancel();
    (void)watch->reader->Finish();
  }

  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<IommuClient> unix_;  // uid:<me>, admin
  std::unique_ptr<IommuClient> tcp_;   // insecure:127.0.0.1, operator
};

TEST_F(LimitsDaemonTest, TooManyWatchersAreRefusedUntilOneCloses) {
  Limits limits;
  limits.max_watchers_per_client = 2;
  limits.max_watchers = 3;
  Start(limits);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Watch> first, OpenWatch(*unix_));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Watch> second, OpenWatch(*unix_));
  absl::StatusOr<std::unique_ptr<Watch>> refused = OpenWatch(*unix_);
  EXPECT_ERROR(refused, kResourceExhausted, "TOO_MANY_WATCHERS");
  EXPECT_EQ(GetErrorMetadata(refused.status())["scope"], "client");
  EXPECT_EQ(GetErrorMetadata(refused.status())["principal"], Me());

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Watch> third, OpenWatch(*tcp_));
  refused = OpenWatch(*tcp_);
  EXPECT_ERROR(refused, kResourceExhausted, "TOO_MANY_WATCHERS");
  EXPECT_EQ(GetErrorMetadata(refused.status())["scope"], "daemon");
  EXPECT_EQ(Limited("TOO_MANY_WATCHERS"), 2);
  ExpectServing(*unix_);

  // The slot comes back when the stream is done (asynchronously, on the daemon's side).
  CloseWatch(std::move(first));
  absl::StatusOr<std::unique_ptr<Watch>> again;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  do {
    again = OpenWatch(*unix_);
  } while (!again.ok() && ErrorReason(again.status()) == "TOO_MANY_WATCHERS" &&
           absl::Now() < deadline);
  EXPECT_OK(again);
}

TEST_F(LimitsDaemonTest, OversizedMapIsRefusedAndMapsNothing) {
  Limits limits;
  limits.request.max_map_bytes = 2 << 20;
  Start(limits);
  iommu::v1::AllocDomainRequest alloc;
  alloc.set_unit("u0");
  alloc.set_owner("vm");
  ASSERT_OK_AND_ASSIGN(iommu::v1::Domain domain, unix_->AllocDomain(alloc));
  const std::string before = Inventory(*unix_);
  iommu::v1::MapRequest map;
  map.set_domain_id(domain.id());
  map.set_iova(0);
  map.set_paddr(0x1000);
  map.set_size((2 << 20) + 0x1000);
  map.set_owner("vm");
  absl::StatusOr<iommu::v1::MapResponse> refused = unix_->Map(map);
  EXPECT_ERROR(refused, kResourceExhausted, "REQUEST_TOO_LARGE");
  EXPECT_EQ(GetErrorMetadata(refused.status())["limit"], absl::StrCat(2 << 20));
  EXPECT_EQ(GetErrorMetadata(refused.status())["principal"], Me());
  EXPECT_EQ(Limited("REQUEST_TOO_LARGE"), 1);
  EXPECT_EQ(Inventory(*unix_), before);
  EXPECT_EQ(daemon_->registry()->GetDomain(domain.id())->mapping_count, 0u);
  map.set_size(2 << 20);
  EXPECT_OK(unix_->Map(map));
}

TEST_F(LimitsDaemonTest, HugePageSizeIsClamped) {
  Limits limits;
  limits.request.max_page_size = 2;
  Start(limits);
  iommu::v1::ListDevicesRequest request;
  request.set_page_size(0x7fffffff);
  ASSERT_OK_AND_ASSIGN(iommu::v1::ListDevicesResponse page, unix_->ListDevices(request));
  EXPECT_EQ(page.devices_size(), 2);
  EXPECT_FALSE(page.next_page_token().empty());
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::Device> all, unix_->ListAllDevices());
  EXPECT_EQ(all.size(), 4u);
}

TEST_F(LimitsDaemonTest, TooLargeResponseFailsTheCallOnly) {
  Limits limits;
  limits.max_send_message_bytes = 64;  // one device (~30 bytes) fits, four (~110) do not
  Start(limits);
  iommu::v1::ListDevicesRequest request;
  const absl::Status refused = unix_->ListDevices(request).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  ExpectServing(*unix_);  // GetDevice
}

}  // namespace
}  // namespace iommud
