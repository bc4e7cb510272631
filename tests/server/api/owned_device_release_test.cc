// ReleaseDevice of an owned device follows VFIO's vfio_unregister_group_dev (docs/semantics.md
// "ReleaseDevice of an owned device"), on an in-process daemon with two identities: this process
// over the unix socket (admin) and loopback plaintext TCP (an operator, the owner). The owner is
// asked (RELEASE_REQUESTED), the call waits a bounded time for it to let go, then releases the
// device (RELEASE_RESOLVED "released"); an owner that keeps it makes the call fail with
// DEVICE_IN_USE and nothing changed, unless an admin forces it (its mappings revoked); a deadline
// or a cancellation stops the wait and changes nothing; an unowned device goes at once.
// Events are read from the daemon's event bus (what WatchEvents streams); no fixed sleeps decide.
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "core/event_bus.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/api/owned_device_release.h"
#include "server/daemon.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::iommud::test::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kDevice[] = "0000:01:00.0";    // alone in its group (daemon_fixture.h)
constexpr char kUnowned[] = "0000:81:00.0";   // alone in its group, on u1
constexpr char kOwner[] = "insecure:127.0.0.1/vm";  // the operator's "vm", as the daemon names it

std::string Snapshot(Registry* registry) {
  std::string text;
  for (const GroupInfo& g : registry->ListGroups()) {
    absl::StrAppend(&text, "group ", g.id, " domain ", g.domain, " owner '", g.owner, "' cnt ",
                    g.owner_cnt, " devices ", g.devices.size(), "\n");
  }
  for (const DeviceInfo& d : registry->ListDevices()) {
    absl::StrAppend(&text, "device ", d.name, " group ", d.group, " binding ",
                    static_cast<int>(d.binding), "\n");
  }
  for (const DomainInfo& d : registry->ListDomains()) {
    absl::StrAppend(&text, "domain ", d.id, " owner '", d.owner, "' groups ",
                    d.attached_groups.size(), " mappings ", d.mapping_count, "\n");
  }
  return text;
}

class OwnedDeviceReleaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DaemonOptions options;
    options.state_dir = dir_.path() + "/state";
    options.topology = dir_.WriteFile("topology.textpb", test::kTestTopology);
    options.metrics_listen = "";
    options.audit_interval = absl::ZeroDuration();
    options.listen_tcp = "127.0.0.1:0";
    options.insecure_tcp = true;
    options.release_request_timeout = absl::Seconds(30);  // the default wait: never reached here
    options.policy_file = dir_.WriteFile(
        "policy.txt", absl::StrCat("admin uid:", getuid(), "\noperator insecure\n"));
    ASSERT_OK_AND_ASSIGN(daemon_, Daemon::Start(options));
    events_ = daemon_->events()->Subscribe(
        EventFilter{{RegistryEvent::Kind::kReleaseRequested, RegistryEvent::Kind::kReleaseResolved},
                    0, ""},
        1024);
    admin_ = Connect("unix:" + daemon_->socket_path(), absl::Seconds(30));
    owner_ = Connect(absl::StrCat("127.0.0.1:", daemon_->tcp_port()), absl::Seconds(30));
  }

  static std::unique_ptr<IommuClient> Connect(const std::string& target, absl::Duration timeout) {
    ClientOptions options;
    options.target = target;
    options.rpc_timeout = timeout;
    absl::StatusOr<std::unique_ptr<IommuClient>> client = IommuClient::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  uint64_t GroupOf(const std::string& device) {
    return daemon_->registry()->GetDevice(device)->group;
  }

  // The operator claims kDevice's group as "vm".
  void Claim() {
    iommu::v1::ClaimOwnershipRequest claim;
    claim.set_group_id(GroupOf(kDevice));
    claim.set_owner("vm");
    ASSERT_OK_AND_ASSIGN(const iommu::v1::Group group, owner_->ClaimOwnership(claim));
    ASSERT_EQ(group.owner(), kOwner);
  }

  static iommu::v1::ReleaseDeviceRequest Release(const std::string& device,
                                                 std::optional<uint64_t> wait_millis,
                                                 bool force = false) {
    iommu::v1::ReleaseDeviceRequest request;
    request.set_device(device);
    if (wait_millis.has_value()) request.set_wait_millis(*wait_millis);
    request.set_force(force);
    return request;
  }

  // The next release event within 10 s ("" kind when none came).
  std::pair<std::string, RegistryEvent> NextEvent() {
    RegistryEvent event;
    if (events_->Wait(absl::Seconds(10), &event) != EventSubscription::Next::kEvent) {
      return {"", event};
    }
    return {event.kind == RegistryEvent::Kind::kReleaseRequested ? "requested" : "resolved",
            event};
  }
  // Every release event queued now, as "kind detail".
  std::vector<std::string> Drain() {
    std::vector<std::string> seen;
    RegistryEvent event;
    while (events_->Poll(&event) == EventSubscription::Next::kEvent) {
      seen.push_back(event.kind == RegistryEvent::Kind::kReleaseRequested
                         ? "requested"
                         : absl::StrCat("resolved ", event.detail.substr(0, event.detail.find(':'))));
    }
    return seen;
  }

  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
  std::shared_ptr<EventSubscription> events_;
  std::unique_ptr<IommuClient> admin_;
  std::unique_ptr<IommuClient> owner_;
};

TEST_F(OwnedDeviceReleaseTest, TheOwnerLettingGoInTimeReleasesTheDevice) {
  Claim();
  absl::StatusOr<iommu::v1::ReleaseDeviceResponse> released;
  std::thread release([&] { released = admin_->ReleaseDevice(Release(kDevice, 20000)); });
  auto [kind, requested] = NextEvent();
  ASSERT_EQ(kind, "requested");
  EXPECT_EQ(requested.device, kDevice);
  EXPECT_EQ(requested.owner, kOwner);
  EXPECT_EQ(requested.group, GroupOf(kDevice));
  // Still there while the owner holds it.
  EXPECT_TRUE(daemon_->registry()->GetDevice(kDevice).ok());
  iommu::v1::ReleaseOwnershipRequest let_go;
  let_go.set_group_id(GroupOf(kDevice));
  let_go.set_owner("vm");
  const absl::Time let_go_at = absl::Now();
  ASSERT_OK(owner_->ReleaseOwnership(let_go));
  release.join();
  ASSERT_OK(released);
  EXPECT_LT(absl::Now() - let_go_at, absl::Seconds(5));  // not the 20 s wait
  EXPECT_FALSE(released->leaked_attachment());
  EXPECT_ERROR(daemon_->registry()->GetDevice(kDevice), kNotFound, "DEVICE_NOT_FOUND");
  auto [resolved_kind, resolved] = NextEvent();
  ASSERT_EQ(resolved_kind, "resolved");
  EXPECT_EQ(resolved.detail, "released");
  EXPECT_EQ(resolved.owner, kOwner);
}

// A device claim of the device released (iommufd style) is letting go too.
TEST_F(OwnedDeviceReleaseTest, ReleasingTheDeviceClaimIsLettingGo) {
  iommu::v1::ClaimDeviceRequest claim;
  claim.set_device(kDevice);
  claim.set_owner("vm");
  ASSERT_OK(owner_->ClaimDevice(claim));
  absl::StatusOr<iommu::v1::ReleaseDeviceResponse> released;
  std::thread release([&] { released = admin_->ReleaseDevice(Release(kDevice, 20000)); });
  ASSERT_EQ(NextEvent().first, "requested");
  iommu::v1::ReleaseDeviceOwnershipRequest let_go;
  let_go.set_device(kDevice);
  let_go.set_owner("vm");
  ASSERT_OK(owner_->ReleaseDeviceOwnership(let_go));
  release.join();
  ASSERT_OK(released);
  EXPECT_ERROR(daemon_->registry()->GetDevice(kDevice), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_THAT(Drain(), ElementsAre("resolved released"));
}

TEST_F(OwnedDeviceReleaseTest, AnOwnerThatKeepsTheDeviceMakesTheReleaseFailAndNothingChanges) {
  Claim();
  const std::string before = Snapshot(daemon_->registry());
  const absl::Time start = absl::Now();
  absl::StatusOr<iommu::v1::ReleaseDeviceResponse> refused =
      admin_->ReleaseDevice(Release(kDevice, 300));
  EXPECT_ERROR(refused, kFailedPrecondition, "DEVICE_IN_USE");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));  // it waited
  const auto metadata = GetErrorMetadata(refused.status());
  EXPECT_EQ(metadata.at("owner"), kOwner);
  EXPECT_EQ(metadata.at("device"), kDevice);
  EXPECT_EQ(metadata.at("waited_millis"), "300");
  EXPECT_EQ(Snapshot(daemon_->registry()), before);
  EXPECT_THAT(Drain(), ElementsAre("requested", "resolved refused"));
  // A wait of 0 refuses at once, the same way.
  EXPECT_ERROR(admin_->ReleaseDevice(Release(kDevice, 0)), kFailedPrecondition, "DEVICE_IN_USE");
  EXPECT_EQ(Snapshot(daemon_->registry()), before);
}

TEST_F(OwnedDeviceReleaseTest, AnAdminForcesTheReleaseAndTheOwnersMappingsAreRevoked) {
  Claim();
  iommu::v1::AllocDomainRequest alloc;
  alloc.set_unit("u0");
  alloc.set_owner("vm");
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Domain domain, owner_->AllocDomain(alloc));
  iommu::v1::AttachGroupRequest attach;
  attach.set_group_id(GroupOf(kDevice));
  attach.set_domain_id(domain.id());
  attach.set_owner("vm");
  ASSERT_OK(owner_->AttachGroup(attach));
  iommu::v1::RegisterMemoryRequest memory;
  memory.set_size(0x200000);
  memory.set_owner("vm");
  ASSERT_OK_AND_ASSIGN(const iommu::v1::MemoryRegion region, owner_->RegisterMemory(memory));
  iommu::v1::MapRequest map;
  map.set_domain_id(domain.id());
  map.set_iova(0x100000);
  map.set_size(0x1000);
  map.set_region_id(region.id());
  map.set_prot(1);  // read
  map.set_owner("vm");
  ASSERT_OK(owner_->Map(map));
  ASSERT_EQ(daemon_->registry()->GetDomain(domain.id())->mapping_count, 1u);

  ASSERT_OK_AND_ASSIGN(const iommu::v1::ReleaseDeviceResponse released,
                       admin_->ReleaseDevice(Release(kDevice, 200, /*force=*/true)));
  EXPECT_TRUE(released.leaked_attachment());  // the group emptied while owned: today's leak
  EXPECT_ERROR(daemon_->registry()->GetDevice(kDevice), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_EQ(daemon_->registry()->GetDomain(domain.id())->mapping_count, 0u);
  EXPECT_THAT(Drain(), ElementsAre("requested", "resolved revoked"));
}

TEST_F(OwnedDeviceReleaseTest, ForceIsForAdminsOnly) {
  Claim();
  const std::string before = Snapshot(daemon_->registry());
  // The owner itself may release its device (it is its own group) but not force it.
  absl::StatusOr<iommu::v1::ReleaseDeviceResponse> refused =
      owner_->ReleaseDevice(Release(kDevice, 0, /*force=*/true));
  EXPECT_ERROR(refused, kPermissionDenied, "FORCE_RELEASE_ADMIN_ONLY");
  EXPECT_EQ(GetErrorMetadata(refused.status()).at("role"), "operator");
  EXPECT_EQ(Snapshot(daemon_->registry()), before);
  EXPECT_THAT(Drain(), ::testing::IsEmpty());  // refused before anyone was asked
}

TEST_F(OwnedDeviceReleaseTest, ADeadlineShorterThanTheWaitStopsItAndChangesNothing) {
  Claim();
  const std::string before = Snapshot(daemon_->registry());
  const absl::Time start = absl::Now();
  // IommuClient's deadline covers the wait a release asks for (see the next test): a call of the
  // raw stub with a deadline of its own.
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(start + absl::Milliseconds(500)));
  iommu::v1::ReleaseDeviceResponse response;
  EXPECT_EQ(admin_->stub()->ReleaseDevice(&context, Release(kDevice, 20000), &response).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  // The daemon stops waiting too (RELEASE_RESOLVED cancelled), and nothing changed.
  ASSERT_EQ(NextEvent().first, "requested");
  auto [kind, resolved] = NextEvent();
  ASSERT_EQ(kind, "resolved");
  EXPECT_THAT(resolved.detail, HasSubstr("cancelled"));
  EXPECT_EQ(Snapshot(daemon_->registry()), before);
  // The owner letting go later releases nothing on its own: the device stays.
  iommu::v1::ReleaseOwnershipRequest let_go;
  let_go.set_group_id(GroupOf(kDevice));
  let_go.set_owner("vm");
  ASSERT_OK(owner_->ReleaseOwnership(let_go));
  EXPECT_TRUE(daemon_->registry()->GetDevice(kDevice).ok());
}

TEST_F(OwnedDeviceReleaseTest, TheClientsDeadlineCoversTheWaitTheReleaseAsksFor) {
  // The client library's cap on the wait is the daemon's.
  EXPECT_EQ(kMaxReleaseDeviceWait, kMaxReleaseWait);
  Claim();
  const std::string before = Snapshot(daemon_->registry());
  // A client whose calls have 300 ms asks for a wait of 1 s: the daemon's answer, not a deadline.
  std::unique_ptr<IommuClient> hasty =
      Connect("unix:" + daemon_->socket_path(), absl::Milliseconds(300));
  ASSERT_NE(hasty, nullptr);
  const absl::Time start = absl::Now();
  absl::StatusOr<iommu::v1::ReleaseDeviceResponse> refused =
      hasty->ReleaseDevice(Release(kDevice, 1000));
  EXPECT_ERROR(refused, kFailedPrecondition, "DEVICE_IN_USE");
  EXPECT_GE(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(GetErrorMetadata(refused.status()).at("waited_millis"), "1000");
  EXPECT_EQ(Snapshot(daemon_->registry()), before);
}

TEST_F(OwnedDeviceReleaseTest, AnUnownedDeviceIsReleasedAtOnce) {
  const absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(const iommu::v1::ReleaseDeviceResponse released,
                       admin_->ReleaseDevice(Release(kUnowned, std::nullopt)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));  // not the 30 s default wait
  EXPECT_FALSE(released.leaked_attachment());
  EXPECT_ERROR(daemon_->registry()->GetDevice(kUnowned), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_THAT(Drain(), ::testing::IsEmpty());  // nobody to ask
  EXPECT_ERROR(admin_->ReleaseDevice(Release(kUnowned, std::nullopt)), kNotFound,
               "DEVICE_NOT_FOUND");
}

}  // namespace
}  // namespace iommud
