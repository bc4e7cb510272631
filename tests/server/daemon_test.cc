// Daemon in-process: health through its life, the state-directory lock, the socket's removal.
#include "server/daemon.h"

#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "clients/cpp/iommud_client.h"
#include "gtest/gtest.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::grpc::health::v1::HealthCheckResponse;
using ::iommud::test::TempDir;

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

DaemonOptions OptionsIn(const TempDir& dir) {
  DaemonOptions options;
  options.state_dir = dir.path() + "/state";
  // Callers are this test's uid (SO_PEERCRED): admin under the default policy.
  return options;  // the embedded demo topology
}

TEST(DaemonTest, HealthGoesNotServingBeforeTheServerStops) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir)));
  ClientOptions client_options;
  client_options.target = daemon->unix_target();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, IommuClient::Connect(client_options));
  for (const char* service : {"", "iommu.v1.Iommu"}) {
    ASSERT_OK_AND_ASSIGN(auto status, client->CheckHealth(service));
    EXPECT_EQ(status, HealthCheckResponse::SERVING) << service;
  }

  daemon->StopServing();
  for (const char* service : {"", "iommu.v1.Iommu"}) {
    ASSERT_OK_AND_ASSIGN(auto status, client->CheckHealth(service));
    EXPECT_EQ(status, HealthCheckResponse::NOT_SERVING) << service;
  }
  // Still answering while load balancers drain.
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::IommuUnit> units, client->ListAllUnits());
  EXPECT_EQ(units.size(), 2u);

  daemon->Shutdown(absl::Seconds(5));
  daemon->Wait();
  EXPECT_FALSE(Exists(daemon->socket_path()));
  EXPECT_FALSE(client->ListAllUnits().ok());
  daemon->Shutdown(absl::Seconds(5));  // idempotent
}

TEST(DaemonTest, SecondDaemonOnTheStateDirIsRefusedAndChangesNothing) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> first, Daemon::Start(OptionsIn(dir)));
  absl::StatusOr<std::unique_ptr<Daemon>> second = Daemon::Start(OptionsIn(dir));
  EXPECT_ERROR(second, kFailedPrecondition, "STATE_DIR_LOCKED");
  EXPECT_TRUE(Exists(first->socket_path()));
  ClientOptions client_options;
  client_options.target = first->unix_target();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, IommuClient::Connect(client_options));
  EXPECT_TRUE(client->ListAllUnits().ok());
  // After the first one is gone, the directory is free again.
  first.reset();
  EXPECT_FALSE(Exists(dir.path() + "/state/iommud.sock"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> third, Daemon::Start(OptionsIn(dir)));
  EXPECT_TRUE(Exists(third->socket_path()));
}

TEST(DaemonTest, StartFailuresCarryTheirStepsReason) {
  TempDir dir;
  DaemonOptions options = OptionsIn(dir);
  options.backend = "quantum";
  EXPECT_ERROR(Daemon::Start(options), kNotFound, "UNKNOWN_BACKEND");
  options = OptionsIn(dir);
  options.topology = dir.WriteFile("bad.textpb", "units { name: 3 }\n");
  EXPECT_ERROR(Daemon::Start(options), kInvalidArgument, "INVALID_TOPOLOGY");
  options = OptionsIn(dir);
  options.listen_tcp = "127.0.0.1:no-such-port";
  options.insecure_tcp = true;
  EXPECT_ERROR(Daemon::Start(options), kUnavailable, "LISTEN_FAILED");
  options = OptionsIn(dir);
  options.request_id_window = absl::ZeroDuration();
  EXPECT_ERROR(Daemon::Start(options), kInvalidArgument, "INVALID_FLAG");
  // The fd store: only for the linux backend; required means a service manager must be there;
  // without it the linux backend keeps refusing durable state (these fail before any sysfs read).
  ::unsetenv("NOTIFY_SOCKET");
  options = OptionsIn(dir);
  options.fd_store = FdStoreMode::kRequired;
  EXPECT_ERROR(Daemon::Start(options), kInvalidArgument, "INVALID_FLAG");
  options.backend = "linux";
  options.topology = "";
  options.state.kind = StateKind::kMemory;
  EXPECT_ERROR(Daemon::Start(options), kFailedPrecondition, "FD_STORE_UNAVAILABLE");
  options.fd_store = FdStoreMode::kAuto;
  options.state.kind = StateKind::kSqlite;
  EXPECT_ERROR(Daemon::Start(options), kInvalidArgument, "INVALID_FLAG");
  // None of them left a socket or the lock behind.
  EXPECT_FALSE(Exists(dir.path() + "/state/iommud.sock"));
  options = OptionsIn(dir);
  options.topology = std::string(kNoTopology);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(options));
  EXPECT_TRUE(daemon->registry()->ListUnits().empty());
}

TEST(DaemonTest, TcpPortIsReported) {
  TempDir dir;
  DaemonOptions options = OptionsIn(dir);
  options.listen_tcp = "127.0.0.1:0";
  options.insecure_tcp = true;
  options.policy_file = dir.WriteFile("policy.txt", "viewer insecure\n");  // TCP callers may read
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(options));
  ASSERT_GT(daemon->tcp_port(), 0);
  ClientOptions client_options;
  client_options.target = "127.0.0.1:" + std::to_string(daemon->tcp_port());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, IommuClient::Connect(client_options));
  EXPECT_TRUE(client->ListAllUnits().ok());
}

// Process memory behind a region, as the fd channel would hand the registry.
class HeapMemory : public ProcessMemory {
 public:
  explicit HeapMemory(uint64_t size) : bytes_(size) {}
  void* data() const override { return const_cast<char*>(bytes_.data()); }
  uint64_t size() const override { return bytes_.size(); }

 private:
  std::vector<char> bytes_;
};

// --max_pinned_bytes_per_owner reaches the registry; a region of process memory is listed over
// gRPC with its kind and mapped bytes.
TEST(DaemonTest, PinnedMemoryLimitAndProcessMemoryRegions) {
  TempDir dir;
  DaemonOptions options = OptionsIn(dir);
  options.limits.max_pinned_bytes_per_owner = 0x2000;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(options));
  Registry* registry = daemon->registry();
  ASSERT_OK_AND_ASSIGN(
      MemoryRegionInfo region,
      registry->RegisterMemory("vm", kPage2M, std::make_unique<HeapMemory>(kPage2M)));
  ASSERT_OK_AND_ASSIGN(DomainInfo domain,
                       registry->AllocDomain("smmu0", DomainType::kUnmanaged, "vm"));
  ASSERT_OK(registry->MapRegion(domain.id, 0x100000, region.id, 0, 0x2000, kProtRead, "vm"));
  EXPECT_ERROR(registry->MapRegion(domain.id, 0x200000, region.id, 0, 0x1000, kProtRead, "vm"),
               kResourceExhausted, "PINNED_MEMORY_LIMIT");

  ClientOptions client_options;
  client_options.target = daemon->unix_target();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, IommuClient::Connect(client_options));
  ASSERT_OK_AND_ASSIGN(iommu::v1::ListMemoryRegionsResponse listed,
                       client->ListMemoryRegions(iommu::v1::ListMemoryRegionsRequest()));
  ASSERT_EQ(listed.regions_size(), 1);
  EXPECT_EQ(listed.regions(0).kind(), iommu::v1::MemoryRegion::PROCESS_MEMORY);
  EXPECT_EQ(listed.regions(0).mapped_bytes(), 0x2000u);
  EXPECT_EQ(listed.regions(0).base(), region.base);
}

}  // namespace
}  // namespace iommud
