// Daemon in-process over its state store: the first start applies the topology to a new store, a
// restart recovers the registry (and does not apply the topology again), health is NOT_SERVING and
// calls are refused (RECOVERING) until the recovery finished, an unfinished first start is finished,
// and the store's start-up errors.
#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "clients/cpp/iommud_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/daemon.h"
#include "server/state/state_recovery.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::grpc::health::v1::HealthCheckResponse;
using ::iommud::test::kTestTopology;
using ::iommud::test::TempDir;
using ::testing::HasSubstr;
using ::testing::SizeIs;

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

DaemonOptions OptionsIn(const TempDir& dir, StateKind kind = StateKind::kSqlite) {
  DaemonOptions options;
  options.state_dir = dir.path() + "/state";
  options.topology = dir.WriteFile("topology.textpb", kTestTopology);
  // Callers are this test's uid (SO_PEERCRED): admin under the default policy.
  options.metrics_listen = "";
  options.audit_interval = absl::ZeroDuration();
  options.state.kind = kind;
  return options;
}

std::unique_ptr<IommuClient> ConnectTo(const Daemon& daemon) {
  ClientOptions options;
  options.target = daemon.unix_target();
  absl::StatusOr<std::unique_ptr<IommuClient>> client = IommuClient::Connect(options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

// Everything the List RPCs say, as one comparable text.
std::string Dump(IommuClient& client) {
  std::string text;
  auto units = client.ListAllUnits();
  auto groups = client.ListAllGroups();
  auto devices = client.ListAllDevices();
  auto domains = client.ListAllDomains();
  EXPECT_TRUE(units.ok() && groups.ok() && devices.ok() && domains.ok());
  if (!units.ok() || !groups.ok() || !devices.ok() || !domains.ok()) return "";
  for (const auto& unit : *units) text += unit.ShortDebugString() + "\n";
  for (const auto& group : *groups) text += group.ShortDebugString() + "\n";
  for (const auto& device : *devices) text += device.ShortDebugString() + "\n";
  for (const auto& domain : *domains) {
    text += domain.ShortDebugString() + "\n";
    iommu::v1::ListMappingsRequest request;
    request.set_domain_id(domain.id());
    auto mappings = client.ListMappings(request);
    if (mappings.ok()) text += mappings->ShortDebugString() + "\n";
  }
  return text;
}

// Claims the single-device group of 0000:01:00.0, gives it a domain with one mapping, and releases
// the device of unit u1: a bit of every kind of state.
void Mutate(IommuClient& client) {
  iommu::v1::GetDeviceRequest get;
  get.set_device("0000:01:00.0");
  ASSERT_OK_AND_ASSIGN(iommu::v1::Device device, client.GetDevice(get));
  iommu::v1::ClaimOwnershipRequest claim;
  claim.set_group_id(device.group_id());
  claim.set_owner("vmm");
  ASSERT_OK(client.ClaimOwnership(claim));
  iommu::v1::AllocDomainRequest alloc;
  alloc.set_unit("u0");
  alloc.set_owner("vmm");
  ASSERT_OK_AND_ASSIGN(iommu::v1::Domain domain, client.AllocDomain(alloc));
  iommu::v1::AttachGroupRequest attach;
  attach.set_group_id(device.group_id());
  attach.set_domain_id(domain.id());
  attach.set_owner("vmm");
  ASSERT_OK(client.AttachGroup(attach));
  iommu::v1::MapRequest map;
  map.set_domain_id(domain.id());
  map.set_iova(0x200000);
  map.set_paddr(0x40000000);
  map.set_size(0x201000);
  map.set_owner("vmm");
  ASSERT_OK(client.Map(map));
  iommu::v1::ReleaseDeviceRequest release;
  release.set_device("0000:81:00.0");
  ASSERT_OK(client.ReleaseDevice(release));
  iommu::v1::ProbeDeviceRequest probe;
  probe.set_unit("u1");
  probe.set_device("0000:82:00.0");
  probe.set_rid(0x30);
  ASSERT_OK(client.ProbeDevice(probe));
}

TEST(DaemonStateTest, RestartRecoversTheRegistryAndDoesNotApplyTheTopologyAgain) {
  TempDir dir;
  std::string before;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir)));
    EXPECT_EQ(daemon->state_file(), dir.path() + "/state/state.db");
    EXPECT_EQ(daemon->store()->kind(), "sqlite");
    EXPECT_TRUE(daemon->startup().topology_applied);
    EXPECT_FALSE(daemon->startup().recovered);
    EXPECT_FALSE(Exists(TopologyPendingMarker(daemon->state_file())));
    std::unique_ptr<IommuClient> client = ConnectTo(*daemon);
    ASSERT_NE(client, nullptr);
    Mutate(*client);
    before = Dump(*client);
    daemon->Shutdown(absl::Seconds(5));
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir)));
  EXPECT_TRUE(daemon->startup().recovered);
  EXPECT_FALSE(daemon->startup().topology_applied);
  const RecoveryReport& report = daemon->startup().report;
  EXPECT_EQ(report.units, 2u);
  EXPECT_EQ(report.devices, 4u);  // 0000:81:00.0 released, 0000:82:00.0 probed
  EXPECT_EQ(report.mappings, 1u);
  EXPECT_THAT(report.remaining, SizeIs(0));
  EXPECT_THAT(daemon->startup().log.back(), HasSubstr("not applied"));
  std::unique_ptr<IommuClient> client = ConnectTo(*daemon);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(Dump(*client), before);
  EXPECT_THAT(daemon->AuditNow(), SizeIs(0));
  // The recovered registry keeps working: the owner frees what it had.
  iommu::v1::GetDeviceRequest get;
  get.set_device("0000:01:00.0");
  ASSERT_OK_AND_ASSIGN(iommu::v1::Device device, client->GetDevice(get));
  iommu::v1::ReleaseOwnershipRequest release;
  release.set_group_id(device.group_id());
  release.set_owner("vmm");
  EXPECT_OK(client->ReleaseOwnership(release));
}

TEST(DaemonStateTest, HealthIsNotServingAndCallsAreRefusedWhileRecovering) {
  TempDir dir;
  { ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir))); }
  DaemonOptions options = OptionsIn(dir);
  bool hook_ran = false;
  options.while_recovering = [&] {
    hook_ran = true;
    ClientOptions client_options;
    client_options.target = "unix:" + options.state_dir + "/iommud.sock";
    absl::StatusOr<std::unique_ptr<IommuClient>> client = IommuClient::Connect(client_options);
    ASSERT_TRUE(client.ok()) << client.status();
    for (const char* service : {"", "iommu.v1.Iommu"}) {
      ASSERT_OK_AND_ASSIGN(auto status, (*client)->CheckHealth(service));
      EXPECT_EQ(status, HealthCheckResponse::NOT_SERVING) << service;
    }
    EXPECT_ERROR((*client)->ListAllUnits(), kUnavailable, "RECOVERING");
    iommu::v1::ProbeDeviceRequest probe;
    probe.set_unit("u1");
    probe.set_device("0000:83:00.0");
    probe.set_rid(0x40);
    EXPECT_ERROR((*client)->ProbeDevice(probe), kUnavailable, "RECOVERING");
    EXPECT_ERROR((*client)->Audit(iommu::v1::AuditRequest()), kUnavailable, "RECOVERING");
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(options));
  EXPECT_TRUE(hook_ran);
  std::unique_ptr<IommuClient> client = ConnectTo(*daemon);
  ASSERT_NE(client, nullptr);
  for (const char* service : {"", "iommu.v1.Iommu"}) {
    ASSERT_OK_AND_ASSIGN(auto status, client->CheckHealth(service));
    EXPECT_EQ(status, HealthCheckResponse::SERVING) << service;
  }
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::Device> devices, client->ListAllDevices());
  EXPECT_THAT(devices, SizeIs(4));  // the refused probe changed nothing
}

TEST(DaemonStateTest, UnfinishedFirstStartIsFinishedNotTrusted) {
  TempDir dir;
  DaemonOptions options = OptionsIn(dir);
  // A first start that got as far as the unit u0 and one device, then died.
  options.topology = dir.WriteFile("partial.textpb", R"textpb(
    units { name: "u0" caps { pgsize_bitmap: 0x201000 iova_bits: 32 max_rids: 256 } }
    devices { unit: "u0" name: "0000:01:00.0" rid: 0x10 }
  )textpb");
  std::string state_file;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(options));
    state_file = daemon->state_file();
  }
  ASSERT_OK(WriteTopologyPendingMarker(state_file));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir)));
  EXPECT_TRUE(daemon->startup().recovered);
  EXPECT_TRUE(daemon->startup().topology_applied);
  EXPECT_THAT(daemon->startup().log.back(), HasSubstr("finished applying"));
  EXPECT_THAT(daemon->registry()->ListUnits(), SizeIs(2));
  EXPECT_THAT(daemon->registry()->ListDevices(), SizeIs(4));
  EXPECT_FALSE(Exists(TopologyPendingMarker(state_file)));
}

TEST(DaemonStateTest, EmptyStoreGetsTheTopologyOfTheNextStart) {
  TempDir dir;
  DaemonOptions options = OptionsIn(dir);
  options.topology = std::string(kNoTopology);
  { ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(options)); }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir)));
  EXPECT_TRUE(daemon->startup().topology_applied);
  EXPECT_THAT(daemon->registry()->ListDevices(), SizeIs(4));
}

TEST(DaemonStateTest, MemoryStateForgetsEverything) {
  TempDir dir;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon,
                         Daemon::Start(OptionsIn(dir, StateKind::kMemory)));
    EXPECT_EQ(daemon->store()->kind(), "memory");
    EXPECT_EQ(daemon->state_file(), "");
    std::unique_ptr<IommuClient> client = ConnectTo(*daemon);
    ASSERT_NE(client, nullptr);
    Mutate(*client);
  }
  EXPECT_FALSE(Exists(dir.path() + "/state/state.db"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon,
                       Daemon::Start(OptionsIn(dir, StateKind::kMemory)));
  EXPECT_TRUE(daemon->startup().topology_applied);
  EXPECT_TRUE(daemon->registry()->GetDevice("0000:81:00.0").ok());
  EXPECT_FALSE(daemon->registry()->GetDevice("0000:82:00.0").ok());
}

TEST(DaemonStateTest, StateFileFlagPutsTheStoreElsewhere) {
  TempDir dir;
  DaemonOptions options = OptionsIn(dir);
  options.state.path = dir.path() + "/elsewhere.db";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(options));
  EXPECT_EQ(daemon->state_file(), options.state.path);
  EXPECT_TRUE(Exists(options.state.path));
  EXPECT_FALSE(Exists(dir.path() + "/state/state.db"));
}

TEST(DaemonStateTest, MissingStoreWithSurvivingHardwareIsRefusedUnlessInit) {
  TempDir dir;
  DaemonOptions options = OptionsIn(dir);
  options.backend = "emulated";
  options.backend_options["memory_file"] = dir.path() + "/hw.mem";
  options.backend_options["memory_bytes"] = "16M";
  { ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(options)); }
  ASSERT_EQ(unlink((dir.path() + "/state/state.db").c_str()), 0);
  unlink((dir.path() + "/state/state.db-wal").c_str());
  unlink((dir.path() + "/state/state.db-shm").c_str());
  absl::StatusOr<std::unique_ptr<Daemon>> refused = Daemon::Start(options);
  EXPECT_ERROR(refused, kNotFound, "STATE_MISSING");
  EXPECT_THAT(refused.status().message(), HasSubstr(dir.path() + "/state/state.db"));
  EXPECT_THAT(refused.status().message(), HasSubstr("hw.mem"));
  EXPECT_FALSE(Exists(dir.path() + "/state/state.db"));
  EXPECT_FALSE(Exists(dir.path() + "/state/iommud.sock"));
  // --init_state creates a new store; the hardware keeps its units (the topology's are there).
  options.state.init = true;
  options.topology = std::string(kNoTopology);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(options));
  EXPECT_TRUE(Exists(dir.path() + "/state/state.db"));
}

TEST(DaemonStateTest, InitStateRefusesAnExistingFile) {
  TempDir dir;
  { ASSERT_OK_AND_ASSIGN(std::unique_ptr<Daemon> daemon, Daemon::Start(OptionsIn(dir))); }
  DaemonOptions options = OptionsIn(dir);
  options.state.init = true;
  EXPECT_ERROR(Daemon::Start(options), kFailedPrecondition, "STATE_EXISTS");
  EXPECT_FALSE(Exists(dir.path() + "/state/iommud.sock"));
}

}  // namespace
}  // namespace iommud
