// Authorization end to end on an in-process Daemon with two identities: this process over the unix
// socket ("uid:<me>", from SO_PEERCRED) and over loopback plaintext TCP ("insecure:...").
// Viewers cannot mutate, operators cannot touch another identity's groups, admins can force a
// release, owners are prefixed with the caller's principal, bad policies are start-up errors.
// Every refused call is checked to have changed nothing.
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/cpp/iommud_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/daemon.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::iommud::test::TempDir;
using ::testing::HasSubstr;

// Two devices of the test topology in different groups of unit u0.
constexpr char kDevice[] = "0000:01:00.0";
constexpr char kOtherDevice[] = "0000:02:00.0";

std::string Me() { return absl::StrCat("uid:", getuid()); }

// The registry as text: a refused call must leave it byte for byte the same.
std::string Snapshot(Registry* registry) {
  std::string text;
  for (const GroupInfo& g : registry->ListGroups()) {
    absl::StrAppend(&text, "group ", g.id, " domain ", g.domain, " owner '", g.owner, "' cnt ",
                    g.owner_cnt, " devices ", g.devices.size(), "\n");
  }
  for (const DeviceInfo& d : registry->ListDevices()) {
    absl::StrAppend(&text, "device ", d.name, " group ", d.group, "\n");
  }
  for (const DomainInfo& d : registry->ListDomains()) {
    absl::StrAppend(&text, "domain ", d.id, " owner '", d.owner, "' groups ",
                    d.attached_groups.size(), " mappings ", d.mapping_count, "\n");
  }
  return text;
}

class AuthorizationTest : public ::testing::Test {
 protected:
  // Starts the daemon with `policy` (file contents; empty: the default policy).
  void Start(const std::string& policy) {
    DaemonOptions options;
    options.state_dir = dir_.path() + "/state";
    options.topology = dir_.WriteFile("topology.textpb", test::kTestTopology);
    options.audit_interval = absl::ZeroDuration();
    options.listen_tcp = "127.0.0.1:0";
    options.insecure_tcp = true;
    if (!policy.empty()) options.policy_file = dir_.WriteFile("policy.txt", policy);
    ASSERT_OK_AND_ASSIGN(daemon_, Daemon::Start(options));
    ClientOptions unix_options;
    unix_options.target = daemon_->unix_target();
    ASSERT_OK_AND_ASSIGN(unix_, IommuClient::Connect(unix_options));
    ClientOptions tcp_options;
    tcp_options.target = absl::StrCat("127.0.0.1:", daemon_->tcp_port());
    ASSERT_OK_AND_ASSIGN(tcp_, IommuClient::Connect(tcp_options));
  }

  uint64_t GroupOf(const std::string& device) {
    return daemon_->registry()->GetDevice(device)->group;
  }

  static absl::StatusOr<iommu::v1::Group> Claim(IommuClient& client, uint64_t group,
                                                const std::string& owner) {
    iommu::v1::ClaimOwnershipRequest request;
    request.set_group_id(group);
    request.set_owner(owner);
    return client.ClaimOwnership(request);
  }
  static absl::StatusOr<iommu::v1::Group> Release(IommuClient& client, uint64_t group,
                                                  const std::string& owner) {
    iommu::v1::ReleaseOwnershipRequest request;
    request.set_group_id(group);
    request.set_owner(owner);
    return client.ReleaseOwnership(request);
  }
  static absl::StatusOr<iommu::v1::Domain> Alloc(IommuClient& client, const std::string& owner) {
    iommu::v1::AllocDomainRequest request;
    request.set_unit("u0");
    request.set_owner(owner);
    return client.AllocDomain(request);
  }
  static absl::StatusOr<iommu::v1::Group> Attach(IommuClient& client, uint64_t group,
                                                 uint64_t domain, const std::string& owner) {
    iommu::v1::AttachGroupRequest request;
    request.set_group_id(group);
    request.set_domain_id(domain);
    request.set_owner(owner);
    return client.AttachGroup(request);
  }
  static absl::StatusOr<iommu::v1::MemoryRegion> Register(IommuClient& client,
                                                          const std::string& owner) {
    iommu::v1::RegisterMemoryRequest request;
    request.set_size(0x200000);
    request.set_owner(owner);
    return client.RegisterMemory(request);
  }
  // Maps a page of `region` (0: the raw paddr 0x80000000, admins only).
  static absl::StatusOr<iommu::v1::MapResponse> Map(IommuClient& client, uint64_t domain,
                                                    const std::string& owner,
                                                    uint64_t region = 0) {
    iommu::v1::MapRequest request;
    request.set_domain_id(domain);
    request.set_iova(0x100000);
    if (region == 0) request.set_paddr(0x80000000);
    request.set_region_id(region);
    request.set_size(0x1000);
    request.set_owner(owner);
    return client.Map(request);
  }
  static absl::StatusOr<iommu::v1::ReleaseDeviceResponse> Unplug(IommuClient& client,
                                                                 const std::string& device) {
    iommu::v1::ReleaseDeviceRequest request;
    request.set_device(device);
    return client.ReleaseDevice(request);
  }

  double DeniedMetric(const std::string& method, const std::string& reason) {
    for (const auto& family : daemon_->metrics()->registry()->Collect()) {
      if (family.name != "iommud_authz_denied_total") continue;
      for (const auto& metric : family.metric) {
        std::map<std::string, std::string> labels;
        for (const auto& label : metric.label) labels[label.name] = label.value;
        if (labels["method"] == method && labels["reason"] == reason) return metric.counter.value;
      }
    }
    return 0;
  }

  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<IommuClient> unix_;  // uid:<me>
  std::unique_ptr<IommuClient> tcp_;   // insecure:127.0.0.1
};

TEST_F(AuthorizationTest, ViewerReadsButCannotMutate) {
  Start(absl::StrCat("admin ", Me(), "\nviewer insecure\n"));
  const uint64_t group = GroupOf(kDevice);
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Domain theirs, Alloc(*unix_, "vm"));
  const std::string before = Snapshot(daemon_->registry());

  // Reads work.
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::Group> groups, tcp_->ListAllGroups());
  EXPECT_FALSE(groups.empty());
  EXPECT_TRUE(tcp_->Audit(iommu::v1::AuditRequest()).ok());

  // Every kind of mutation is refused with the denial's metadata.
  absl::StatusOr<iommu::v1::Group> claim = Claim(*tcp_, group, "vm");
  EXPECT_ERROR(claim, kPermissionDenied, "PERMISSION_DENIED");
  const ErrorMetadata metadata = GetErrorMetadata(claim.status());
  EXPECT_EQ(metadata.at("principal"), "insecure:127.0.0.1");
  EXPECT_EQ(metadata.at("method"), "ClaimOwnership");
  EXPECT_EQ(metadata.at("required_role"), "operator");
  EXPECT_EQ(metadata.at("role"), "viewer");
  iommu::v1::ProbeDeviceRequest probe;
  probe.set_unit("u0");
  probe.set_device("0000:09:00.0");
  probe.set_rid(0x90);
  EXPECT_ERROR(tcp_->ProbeDevice(probe), kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_ERROR(Unplug(*tcp_, kOtherDevice), kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_ERROR(Alloc(*tcp_, "vm"), kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_ERROR(Map(*tcp_, theirs.id(), Me() + "/vm"), kPermissionDenied, "PERMISSION_DENIED");
  iommu::v1::TranslateRequest dma;
  dma.set_device(kDevice);
  EXPECT_ERROR(tcp_->Translate(dma), kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_ERROR(tcp_->Reconcile(iommu::v1::ReconcileRequest()), kPermissionDenied,
               "PERMISSION_DENIED");
  EXPECT_ERROR(tcp_->InjectFault(iommu::v1::InjectFaultRequest()), kPermissionDenied,
               "PERMISSION_DENIED");

  EXPECT_EQ(Snapshot(daemon_->registry()), before);
  EXPECT_EQ(DeniedMetric("ClaimOwnership", "role_too_low"), 1);
  EXPECT_EQ(DeniedMetric("Reconcile", "role_too_low"), 1);
}

// HandOverGroup: an operator may hand a group only to its own uid and gid (its unix peer
// credentials); an admin to anyone. The software backend then refuses (no host), so the calls
// that pass authorization end in HANDOVER_NEEDS_HOST_BACKEND and nothing changes either way.
TEST_F(AuthorizationTest, OperatorsHandGroupsOverOnlyToThemselves) {
  Start(absl::StrCat("operator ", Me(), "\noperator insecure\n"));
  const uint64_t group = GroupOf(kDevice);
  const std::string before = Snapshot(daemon_->registry());
  auto hand_over = [&](IommuClient& client, uint32_t uid, uint32_t gid) {
    iommu::v1::HandOverGroupRequest request;
    request.set_group_id(group);
    request.set_owner("vm");
    request.set_uid(uid);
    request.set_gid(gid);
    return client.HandOverGroup(request);
  };
  absl::StatusOr<iommu::v1::Group> foreign = hand_over(*unix_, getuid() + 1, getgid());
  EXPECT_ERROR(foreign, kPermissionDenied, "HANDOVER_UID_NOT_CALLERS");
  EXPECT_EQ(GetErrorMetadata(foreign.status()).at("role"), "operator");
  EXPECT_ERROR(hand_over(*unix_, getuid(), getgid() + 1), kPermissionDenied,
               "HANDOVER_UID_NOT_CALLERS");
  EXPECT_ERROR(hand_over(*tcp_, getuid(), getgid()), kPermissionDenied,
               "HANDOVER_UID_NOT_CALLERS");  // no peer credentials over TCP
  EXPECT_ERROR(hand_over(*unix_, getuid(), getgid()), kFailedPrecondition,
               "HANDOVER_NEEDS_HOST_BACKEND");
  EXPECT_EQ(Snapshot(daemon_->registry()), before);
  EXPECT_EQ(DeniedMetric("HandOverGroup", "foreign_uid"), 3);
}

TEST_F(AuthorizationTest, CallersWithoutARoleGetNothingNotEvenReads) {
  Start("");  // default policy: only root and this uid (the unix caller) are admin
  EXPECT_TRUE(unix_->ListAllGroups().ok());
  EXPECT_ERROR(tcp_->ListAllGroups(), kPermissionDenied, "PERMISSION_DENIED");
  iommu::v1::WatchEventsRequest watch;
  EXPECT_ERROR(tcp_->WatchEvents(watch, [](const iommu::v1::Event&) { return false; },
                                 absl::Seconds(5)),
               kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_EQ(DeniedMetric("WatchEvents", "no_role"), 1);
}

TEST_F(AuthorizationTest, OwnersArePrefixedWithTheCallersPrincipal) {
  Start(absl::StrCat("admin ", Me(), "\n"));
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group group, Claim(*unix_, GroupOf(kDevice), "vm-3"));
  EXPECT_EQ(group.owner(), Me() + "/vm-3");
  EXPECT_EQ(daemon_->registry()->GetGroup(group.id())->owner, Me() + "/vm-3");
  // Naming the full owner, or the short one, is the same owner.
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Domain domain, Alloc(*unix_, Me() + "/vm-3"));
  EXPECT_EQ(domain.owner(), Me() + "/vm-3");
  ASSERT_OK_AND_ASSIGN(group, Attach(*unix_, group.id(), domain.id(), "vm-3"));
  EXPECT_EQ(group.domain_id(), domain.id());
  // An empty owner is the principal itself: a different owner than vm-3.
  EXPECT_ERROR(Release(*unix_, group.id(), ""), kPermissionDenied, "NOT_OWNER");
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group other, Claim(*unix_, GroupOf(kOtherDevice), ""));
  EXPECT_EQ(other.owner(), Me());
}

TEST_F(AuthorizationTest, OperatorCannotTouchAGroupAnotherIdentityOwns) {
  Start(absl::StrCat("operator ", Me(), "\noperator insecure\n"));
  const uint64_t group = GroupOf(kDevice);
  ASSERT_TRUE(Claim(*unix_, group, "vm").ok());
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Domain mine, Alloc(*unix_, "vm"));
  ASSERT_TRUE(Attach(*unix_, group, mine.id(), "vm").ok());
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Domain theirs, Alloc(*tcp_, "vm"));
  EXPECT_EQ(theirs.owner(), "insecure:127.0.0.1/vm");
  ASSERT_OK_AND_ASSIGN(const iommu::v1::MemoryRegion my_memory, Register(*unix_, "vm"));
  ASSERT_OK_AND_ASSIGN(const iommu::v1::MemoryRegion their_memory, Register(*tcp_, "vm"));
  const std::string before = Snapshot(daemon_->registry());

  // Same short owner name, different identity: a different owner.
  EXPECT_ERROR(Claim(*tcp_, group, "vm"), kFailedPrecondition, "GROUP_IN_USE");
  EXPECT_ERROR(Release(*tcp_, group, "vm"), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(Attach(*tcp_, group, theirs.id(), "vm"), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(Map(*tcp_, mine.id(), "vm", their_memory.id()), kPermissionDenied, "NOT_OWNER");
  // Nobody maps another principal's memory, even into a domain of its own.
  EXPECT_ERROR(Map(*tcp_, theirs.id(), "vm", my_memory.id()), kPermissionDenied, "NOT_OWNER");
  // Naming the other identity's full owner is refused before the registry sees it.
  EXPECT_ERROR(Release(*tcp_, group, Me() + "/vm"), kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_ERROR(Map(*tcp_, mine.id(), Me() + "/vm", my_memory.id()), kPermissionDenied,
               "PERMISSION_DENIED");
  // Unplugging a device of the other identity's group needs admin.
  EXPECT_ERROR(Unplug(*tcp_, kDevice), kPermissionDenied, "PERMISSION_DENIED");
  // Nor can the unix operator free or map the TCP identity's domain.
  EXPECT_ERROR(Map(*unix_, theirs.id(), "insecure:127.0.0.1/vm", their_memory.id()),
               kPermissionDenied, "PERMISSION_DENIED");
  // Nor unregister the other identity's memory.
  iommu::v1::UnregisterMemoryRequest unregister;
  unregister.set_region_id(my_memory.id());
  unregister.set_owner("vm");
  EXPECT_ERROR(tcp_->UnregisterMemory(unregister), kPermissionDenied, "NOT_OWNER");
  EXPECT_EQ(daemon_->registry()->ListMemoryRegions().size(), 2u);

  EXPECT_EQ(Snapshot(daemon_->registry()), before);
  EXPECT_EQ(DeniedMetric("ReleaseOwnership", "foreign_owner"), 1);
  EXPECT_EQ(DeniedMetric("ReleaseDevice", "foreign_owner"), 1);
  // An unowned group's device can be unplugged by an operator.
  EXPECT_TRUE(Unplug(*tcp_, "0000:81:00.0").ok());
}

// Issue #15: raw physical addresses and IDENTITY domains reach all memory: admins only.
TEST_F(AuthorizationTest, OnlyAdminsMapRawPaddrsOrAllocateIdentityDomains) {
  Start(absl::StrCat("admin ", Me(), "\noperator insecure\n"));
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Domain theirs, Alloc(*tcp_, "vm"));
  ASSERT_OK_AND_ASSIGN(const iommu::v1::MemoryRegion memory, Register(*tcp_, "vm"));
  EXPECT_EQ(memory.owner(), "insecure:127.0.0.1/vm");
  EXPECT_EQ(memory.kind(), iommu::v1::MemoryRegion::EMULATED);
  const std::string before = Snapshot(daemon_->registry());

  absl::StatusOr<iommu::v1::MapResponse> raw = Map(*tcp_, theirs.id(), "vm");
  EXPECT_ERROR(raw, kPermissionDenied, "RAW_PADDR_ADMIN_ONLY");
  EXPECT_EQ(GetErrorMetadata(raw.status()).at("principal"), "insecure:127.0.0.1");
  EXPECT_EQ(GetErrorMetadata(raw.status()).at("role"), "operator");
  iommu::v1::AllocDomainRequest identity;
  identity.set_unit("u0");
  identity.set_type(iommu::v1::DOMAIN_TYPE_IDENTITY);
  identity.set_owner("vm");
  EXPECT_ERROR(tcp_->AllocDomain(identity), kPermissionDenied, "IDENTITY_DOMAIN_ADMIN_ONLY");
  iommu::v1::ProbeDeviceRequest bypassing;
  bypassing.set_unit("u0");
  bypassing.set_device("bypassing");
  bypassing.set_rid(0x77);
  bypassing.set_default_domain_type(iommu::v1::DOMAIN_TYPE_IDENTITY);
  EXPECT_ERROR(tcp_->ProbeDevice(bypassing), kPermissionDenied, "IDENTITY_DOMAIN_ADMIN_ONLY");
  EXPECT_EQ(Snapshot(daemon_->registry()), before);
  EXPECT_EQ(DeniedMetric("Map", "raw_paddr"), 1);
  EXPECT_EQ(DeniedMetric("AllocDomain", "identity_domain"), 1);
  EXPECT_EQ(DeniedMetric("ProbeDevice", "identity_domain"), 1);
  EXPECT_EQ(GetErrorMetadata(raw.status()).at("required_role"), "admin");

  // The operator maps its region instead, at the region's address.
  ASSERT_OK_AND_ASSIGN(iommu::v1::MapResponse mapped, Map(*tcp_, theirs.id(), "vm", memory.id()));
  EXPECT_EQ(mapped.mapping().paddr(), memory.base());
  EXPECT_EQ(daemon_->registry()->GetMemoryRegion(memory.id())->mapped_bytes, 0x1000u);
  // In a batch, one raw entry among region entries is enough to need the admin role; the
  // operator's batch of region entries is mapped, and the owner is rewritten as for Map.
  iommu::v1::MapBatchRequest batch;
  batch.set_domain_id(theirs.id());
  batch.set_owner("vm");
  iommu::v1::MapBatchEntry* first = batch.add_entries();
  first->set_iova(0x300000);
  first->set_size(0x1000);
  first->set_region_id(memory.id());
  first->set_region_offset(0x1000);
  iommu::v1::MapBatchEntry* raw_entry = batch.add_entries();
  raw_entry->set_iova(0x301000);
  raw_entry->set_size(0x1000);
  raw_entry->set_paddr(0x80000000);
  EXPECT_ERROR(tcp_->MapBatch(batch), kPermissionDenied, "RAW_PADDR_ADMIN_ONLY");
  EXPECT_EQ(DeniedMetric("MapBatch", "raw_paddr"), 1);
  EXPECT_EQ(daemon_->registry()->GetMemoryRegion(memory.id())->mapped_bytes, 0x1000u);
  raw_entry->set_paddr(0);
  raw_entry->set_region_id(memory.id());
  raw_entry->set_region_offset(0x2000);
  ASSERT_OK_AND_ASSIGN(iommu::v1::MapBatchResponse batched, tcp_->MapBatch(batch));
  ASSERT_EQ(batched.mappings_size(), 2);
  EXPECT_EQ(batched.mappings(1).paddr(), memory.base() + 0x2000);
  EXPECT_EQ(daemon_->registry()->GetMemoryRegion(memory.id())->mapped_bytes, 0x3000u);
  // Both together are a malformed request.
  iommu::v1::MapRequest both;
  both.set_domain_id(theirs.id());
  both.set_iova(0x200000);
  both.set_paddr(0x80000000);
  both.set_region_id(memory.id());
  both.set_size(0x1000);
  EXPECT_ERROR(tcp_->Map(both), kInvalidArgument, "REGION_AND_PADDR");

  // The admin may do both.
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Domain admins, Alloc(*unix_, "vm"));
  EXPECT_OK(Map(*unix_, admins.id(), "vm").status());
  identity.set_owner("vm");
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Domain bypass, unix_->AllocDomain(identity));
  EXPECT_EQ(bypass.type(), iommu::v1::DOMAIN_TYPE_IDENTITY);
  EXPECT_OK(unix_->ProbeDevice(bypassing).status());
}

TEST_F(AuthorizationTest, AdminCanForceReleaseAnotherIdentitysGroup) {
  Start(absl::StrCat("admin ", Me(), "\noperator insecure\n"));
  const uint64_t group = GroupOf(kDevice);
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group claimed, Claim(*tcp_, group, "vm"));
  ASSERT_EQ(claimed.owner(), "insecure:127.0.0.1/vm");
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Domain theirs, Alloc(*tcp_, "vm"));
  ASSERT_TRUE(Attach(*tcp_, group, theirs.id(), "vm").ok());

  // The admin names the full owner: the group goes back to its default domain.
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Group released,
                       Release(*unix_, group, "insecure:127.0.0.1/vm"));
  EXPECT_EQ(released.owner(), "");
  EXPECT_EQ(released.domain_id(), released.default_domain_id());
  // And may unplug a device of a group someone else owns.
  ASSERT_TRUE(Claim(*tcp_, GroupOf(kOtherDevice), "vm2").ok());
  EXPECT_TRUE(Unplug(*unix_, kOtherDevice).ok());
}

// Unix callers carry the credentials the daemon's listener read (SO_PEERCRED): no fallback needed,
// and a policy that does not name this uid refuses it as itself, not as an unidentified caller.
TEST_F(AuthorizationTest, UnixCallersAreIdentifiedByTheirPeerCredentials) {
  DaemonOptions options;
  options.state_dir = dir_.path() + "/state";
  options.audit_interval = absl::ZeroDuration();
  options.policy_file = dir_.WriteFile("policy.txt", absl::StrCat("admin uid:", getuid() + 1, "\n"));
  ASSERT_OK_AND_ASSIGN(daemon_, Daemon::Start(options));
  ClientOptions client_options;
  client_options.target = daemon_->unix_target();
  ASSERT_OK_AND_ASSIGN(unix_, IommuClient::Connect(client_options));
  absl::StatusOr<std::vector<iommu::v1::IommuUnit>> units = unix_->ListAllUnits();
  EXPECT_ERROR(units, kPermissionDenied, "PERMISSION_DENIED");
  EXPECT_EQ(GetErrorMetadata(units.status()).at("cause"), "no_role");
  EXPECT_EQ(GetErrorMetadata(units.status()).at("principal"), Me());
  EXPECT_EQ(DeniedMetric("ListUnits", "no_role"), 1);
  EXPECT_EQ(DeniedMetric("ListUnits", "unidentified"), 0);
}

TEST_F(AuthorizationTest, BadPolicyIsAStartUpErrorAndNothingListens) {
  DaemonOptions options;
  options.state_dir = dir_.path() + "/state";
  options.policy_file = dir_.WriteFile("bad.txt", "admin uid:0\nroot uid:1\n");
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(options);
  EXPECT_ERROR(daemon, kInvalidArgument, "INVALID_POLICY");
  EXPECT_THAT(std::string(daemon.status().message()), HasSubstr("bad.txt:2: unknown role 'root'"));
  EXPECT_NE(access((options.state_dir + "/iommud.sock").c_str(), F_OK), 0);
  options.policy_file = dir_.path() + "/missing.txt";
  EXPECT_ERROR(Daemon::Start(options), kNotFound, "POLICY_UNREADABLE");
}

TEST(AuthorizationBinaryTest, BadPolicyFileStopsTheDaemonWithTheLine) {
  TempDir dir;
  test::TestDaemonOptions options;
  options.flags = {absl::StrCat("--policy_file=",
                                dir.WriteFile("policy.txt", "viewer uid:1\nviewer uid:1\n"))};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<test::Subprocess> process,
                       test::SpawnDaemon(options, dir.path() + "/state", dir.path(), "log"));
  ASSERT_OK_AND_ASSIGN(const int exit_status, process->WaitForExit(absl::Seconds(30)));
  EXPECT_EQ(exit_status, 1);
  EXPECT_THAT(process->Log(), HasSubstr("policy.txt:2: 'uid:1' already listed on line 1"));
  EXPECT_THAT(process->Log(), HasSubstr("INVALID_POLICY"));
}

}  // namespace
}  // namespace iommud
