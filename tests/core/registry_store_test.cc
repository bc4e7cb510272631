// The registry over a StateStore: every mutation is committed (and undone when the store refuses
// it), and Recover rebuilds the registry and the hardware from what was committed. Parameterized by
// backend and store kind ("software/sqlite", ...): over sqlite, Recover reads a reopened file.
#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/error.h"
#include "core/backend/backend_factory.h"
#include "core/store/call_context.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/refusing_state_store.h"
#include "tests/core/testing/registry_fixture.h"
#include "tests/core/testing/test_state_store.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// The store under test, refusing commits on demand. Follows whatever store `store` holds now (a
// reopened sqlite store is a new object).
class RefusingStore : public RefusingStateStore {
 public:
  explicit RefusingStore(const TestStateStore* store)
      : RefusingStateStore(store->get()), store_(store) {}

 protected:
  StateStore* wrapped() const override { return store_->get(); }

 private:
  const TestStateStore* const store_;
};

// Parameters: "<backend>/<store kind>".
std::vector<std::string> BackendsAndStores() {
  std::vector<std::string> params;
  for (const std::string& backend : BackendsUnderTest()) {
    for (const std::string& store : StoreKindsUnderTest()) params.push_back(backend + "/" + store);
  }
  return params;
}

std::string Dump(const StoreSnapshot& snapshot) {
  std::string out;
  for (const UnitRecord& unit : snapshot.units) {
    absl::StrAppend(&out, "unit ", unit.name, " release=", unit.release_domain, "\n");
  }
  for (const DomainRecord& domain : snapshot.domains) {
    absl::StrAppend(&out, "domain ", domain.id, " ", domain.unit, " ", DomainTypeName(domain.type),
                    " owner=", domain.owner, " core=", domain.core_owned, "\n");
  }
  for (const DeviceRecord& device : snapshot.devices) {
    absl::StrAppend(&out, "device ", device.name, " group=", device.group, " seq=",
                    device.probe_seq, " ", DriverBindingName(device.binding), "\n");
  }
  for (const GroupRecord& group : snapshot.groups) {
    absl::StrAppend(&out, "group ", group.id, " domain=", group.domain, " owner=", group.owner,
                    " cnt=", group.owner_cnt, " claimed=", group.group_claimed, "/",
                    absl::StrJoin(group.claimed_devices, ","), " attached=",
                    absl::StrJoin(group.attached_devices, ","), "\n");
  }
  for (const MappingRecord& mapping : snapshot.mappings) {
    absl::StrAppend(&out, "mapping ", mapping.domain, " ", mapping.mapping.iova, " ",
                    mapping.mapping.paddr, " ", mapping.mapping.size, "\n");
  }
  return out;
}

class RegistryStoreTest : public RegistryTest {
 protected:
  RegistryStoreTest()
      : test_store_(std::vector<std::string>(absl::StrSplit(GetParam(), '/'))[1]),
        store_(&test_store_) {}

  std::string BackendName() const override {
    return std::vector<std::string>(absl::StrSplit(GetParam(), '/'))[0];
  }

  void SetUp() override {
    Recreate([this](RegistryOptions* options) { options->store = &store_; });
  }

  std::string StoreDump() {
    absl::StatusOr<StoreSnapshot> snapshot = store_.Load();
    EXPECT_TRUE(snapshot.ok()) << snapshot.status();
    return snapshot.ok() ? Dump(*snapshot) : "";
  }

  // A workload touching every kind of record: groups with shared RIDs, ownership, user domains
  // with mappings, a kernel driver, a release that empties a group.
  void Workload() {
    Probe("a", 0x10);
    Probe("b", 0x20, {0x21});
    Probe("c", 0x21);  // joins b's group through the alias
    Probe("d", 0x30);
    Probe("e", 0x40, {}, "u1");
    domain_ = ClaimAndAttach("a");
    ASSERT_OK(registry_->Map(domain_, 0x100000, 0x800000, 0x4000, kProtRead, kOwner));
    ASSERT_OK(registry_->Map(domain_, 0x200000, 0x200000, kPage2M, kProtRead | kProtWrite,
                             kOwner));
    ASSERT_OK(registry_->Unmap(domain_, 0x100000, 0x4000, kOwner));
    ASSERT_OK(registry_->ClaimDevice("d", kOther));
    ASSERT_OK(registry_->UseDefaultDomain("e"));
    ASSERT_OK(registry_->AllocDomain("u1", DomainType::kUnmanaged, kOther));
    Probe("f", 0x50);
    ASSERT_OK(registry_->ReleaseDevice("f"));
  }

  // Replaces the registry with one recovered from the store (sqlite: the file reopened, as a
  // restarted daemon reads it), over the same hardware (memory that outlived the daemon) or over
  // fresh hardware (a software IOMMU after a restart).
  // `before_recover` (optional) plans the backend's failures of the recovery.
  RecoveryReport RecoverInto(bool same_hardware,
                             const std::function<void(FailingBackend&)>& before_recover = {}) {
    registry_.reset();
    test_store_.Reopen();
    if (!same_hardware) {
      auto hardware = CreateBackend(BackendName());
      EXPECT_TRUE(hardware.ok()) << hardware.status();
      hardware_ = *std::move(hardware);
    }
    backend_ = std::make_unique<FailingBackend>(hardware_.get());
    RegistryOptions options;
    options.backend = backend_.get();
    options.observer = &observer_;
    options.store = &store_;
    auto registry = Registry::Create(options);
    EXPECT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
    if (before_recover) before_recover(*backend_);
    absl::StatusOr<RecoveryReport> report = registry_->Recover();
    backend_->Clear();
    EXPECT_TRUE(report.ok()) << report.status();
    return report.ok() ? *std::move(report) : RecoveryReport{};
  }

  TestStateStore test_store_;
  RefusingStore store_;  // what the registry uses
  DomainId domain_ = 0;
};

TEST_P(RegistryStoreTest, EveryMutationIsCommitted) {
  Workload();
  const std::string dump = StoreDump();
  // The store holds exactly what the registry shows.
  for (const DeviceInfo& device : registry_->ListDevices()) {
    EXPECT_THAT(dump, ::testing::HasSubstr(absl::StrCat("device ", device.name, " group=",
                                                        device.group)));
  }
  EXPECT_THAT(dump, ::testing::Not(::testing::HasSubstr("device f ")));
  EXPECT_THAT(dump, ::testing::HasSubstr(absl::StrCat("mapping ", domain_, " 2097152 2097152 ",
                                                      kPage2M)));
  EXPECT_THAT(dump, ::testing::Not(::testing::HasSubstr(absl::StrCat("mapping ", domain_,
                                                                     " 1048576"))));
  EXPECT_THAT(dump, ::testing::HasSubstr("KERNEL_DRIVER"));
  EXPECT_THAT(dump, ::testing::HasSubstr(absl::StrCat("owner=", kOther, " cnt=1 claimed=0/d")));
}

TEST_P(RegistryStoreTest, RecoverOnFreshHardwareRebuildsEverything) {
  Workload();
  const std::string before = Snapshot();
  const size_t domains = registry_->ListDomains().size();
  const RecoveryReport report = RecoverInto(/*same_hardware=*/false);
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(report.domains, domains);
  EXPECT_EQ(report.devices, 5u);
  EXPECT_EQ(report.mappings, 1u);
  EXPECT_EQ(report.domains_adopted, 0u);
  EXPECT_THAT(report.repaired, IsEmpty());
  EXPECT_THAT(report.remaining, IsEmpty());
  EXPECT_THAT(registry_->Audit(), IsEmpty());
  // The recovered registry goes on where the old one stopped: new ids do not collide.
  const DeviceInfo g = Probe("g", 0x60);
  EXPECT_GT(g.group, registry_->GetDevice("e")->group);
  ASSERT_OK(registry_->ReleaseOwnership(GroupOf("a").id, kOwner).status());
  EXPECT_EQ(Hw(0x10), GroupOf("a").default_domain);
}

// Regions are not persisted; their mappings are, by address (docs/semantics.md "Memory regions").
TEST_P(RegistryStoreTest, RegionMappingsSurviveARestartAndNewRegionsGoAboveThem) {
  Probe("a", 0x10);
  domain_ = ClaimAndAttach("a");
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo region,
                       registry_->RegisterMemory(kOwner, kPage1G + kPage2M, nullptr));
  ASSERT_OK(registry_->MapRegion(domain_, 0x200000, region.id, kPage1G, kPage2M,
                                 kProtRead | kProtWrite, kOwner));
  RecoverInto(/*same_hardware=*/false);
  EXPECT_THAT(registry_->ListMemoryRegions(), IsEmpty());
  ASSERT_OK_AND_ASSIGN(std::vector<Mapping> mappings, registry_->ListMappings(domain_));
  ASSERT_EQ(mappings.size(), 1u);
  EXPECT_EQ(mappings[0].paddr, region.base + kPage1G);
  EXPECT_EQ(registry_->Translate("a", 0x200010, kProtRead)->paddr, region.base + kPage1G + 0x10);
  // A region registered after the restart never takes the surviving mapping's addresses.
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo after,
                       registry_->RegisterMemory(kOwner, kPage2M, nullptr));
  EXPECT_GE(after.base, region.base + kPage1G + kPage2M);
  // Unmapping the old mapping charges nothing back to the new region.
  ASSERT_OK(registry_->MapRegion(domain_, 0x800000, after.id, 0, kPage4K, kProtRead, kOwner));
  ASSERT_OK(registry_->Unmap(domain_, 0x200000, kPage2M, kOwner));
  EXPECT_EQ(registry_->GetMemoryRegion(after.id)->mapped_bytes, kPage4K);
}

TEST_P(RegistryStoreTest, RecoverOnSurvivingHardwareAdoptsIt) {
  Workload();
  const std::string before = Snapshot();
  const size_t domains = registry_->ListDomains().size();
  const RecoveryReport report = RecoverInto(/*same_hardware=*/true);
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(report.domains_adopted, domains);
  EXPECT_EQ(report.domains_rewritten, 0u);
  EXPECT_THAT(report.repaired, IsEmpty());
}

TEST_P(RegistryStoreTest, RecoverRepairsHardwareTowardTheStore) {
  Workload();
  const std::string before = Snapshot();
  const GroupInfo a = GroupOf("a");
  // The daemon "crashed" after programming things it never committed.
  ASSERT_OK(hardware_->AllocDomain("u0", 900, DomainType::kUnmanaged));
  ASSERT_OK(hardware_->AttachRid("u0", 0x10, a.blocking_domain));  // a's RID moved
  ASSERT_OK(hardware_->AttachRid("u0", 0x70, 900));                // a RID nobody probed
  ASSERT_OK(hardware_->Map(domain_, 0x40000000, 0x1000, 0x1000, kProtRead));  // stray mapping
  const RecoveryReport report = RecoverInto(/*same_hardware=*/true);
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(report.domains_rewritten, 1u);
  std::vector<LeakReason> reasons;
  for (const LeakRecord& leak : report.repaired) reasons.push_back(leak.reason);
  EXPECT_THAT(reasons, ::testing::UnorderedElementsAre(LeakReason::kRidOnWrongDomain,
                                                       LeakReason::kRidOnUnknownDomain,
                                                       LeakReason::kOrphanDomain));
  EXPECT_THAT(report.remaining, IsEmpty());
  EXPECT_EQ(Hw(0x70), 0u);
  // The orphan's id is never handed out again.
  absl::StatusOr<DomainInfo> next = registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner);
  ASSERT_OK(next.status());
  EXPECT_GT(next->id, 900u);
}

// The backend cannot program an owned group again at the restart (the linux backend with the fd
// store: a group whose fd was not handed back, and that a VMM now holds, cannot be claimed again):
// the start goes on; that group's ownership is dropped (on its default domain, no owner),
// committed and reported, and everything else is recovered as it was.
TEST_P(RegistryStoreTest, AnOwnedGroupRecoverCannotProgramLosesItsOwnershipNotTheStart) {
  Workload();
  const GroupInfo a = GroupOf("a");
  ASSERT_EQ(a.owner, kOwner);
  ASSERT_EQ(a.domain, domain_);
  const GroupInfo d = GroupOf("d");
  // The hardware lost a's RID (so Recover programs it), and that programming fails.
  ASSERT_OK(hardware_->ReleaseRid("u0", 0x10));
  const RecoveryReport report = RecoverInto(/*same_hardware=*/true, [](FailingBackend& backend) {
    backend.FailNth(FailingBackend::Op::kAttachRid, 1, absl::UnavailableError("held by a VMM"));
  });
  ASSERT_EQ(report.dropped_groups.size(), 1u);
  const RecoveryReport::DroppedGroup& dropped = report.dropped_groups[0];
  EXPECT_EQ(dropped.group, a.id);
  EXPECT_EQ(dropped.unit, "u0");
  EXPECT_EQ(dropped.owner, kOwner);
  EXPECT_EQ(dropped.domain, domain_);
  EXPECT_THAT(dropped.devices, ::testing::ElementsAre("a"));
  EXPECT_EQ(dropped.status.code(), absl::StatusCode::kUnavailable);
  // Not owned, on its default domain, in the registry and the hardware.
  const GroupInfo after = GroupOf("a");
  EXPECT_EQ(after.owner, "");
  EXPECT_EQ(after.domain, a.default_domain);
  EXPECT_EQ(Hw(0x10), a.default_domain);
  // The owner's domain and its mapping stay (the owner frees them); it has no group any more.
  ASSERT_OK_AND_ASSIGN(DomainInfo domain, registry_->GetDomain(domain_));
  EXPECT_EQ(domain.owner, kOwner);
  EXPECT_THAT(domain.attached_groups, IsEmpty());
  ASSERT_OK_AND_ASSIGN(std::vector<Mapping> mappings, registry_->ListMappings(domain_));
  EXPECT_EQ(mappings.size(), 1u);
  // The rest is as it was.
  EXPECT_EQ(GroupOf("d").owner, d.owner);
  EXPECT_EQ(GroupOf("d").domain, d.domain);
  EXPECT_THAT(report.remaining, IsEmpty());
  EXPECT_THAT(registry_->Audit(), IsEmpty());
  // Committed: the next start reads the group as not owned, and drops nothing.
  EXPECT_THAT(StoreDump(), ::testing::HasSubstr(absl::StrCat("group ", a.id, " domain=",
                                                             a.default_domain, " owner= cnt=0")));
  const std::string before = Snapshot();
  const RecoveryReport again = RecoverInto(/*same_hardware=*/true);
  EXPECT_THAT(again.dropped_groups, IsEmpty());
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(GroupOf("a").owner, "");
  // The group can be claimed again, and the owner can free its domain.
  ASSERT_OK(registry_->ClaimOwnership(a.id, kOther).status());
  ASSERT_OK(registry_->Unmap(domain_, 0x200000, kPage2M, kOwner).status());
  ASSERT_OK(registry_->FreeDomain(domain_, kOwner).status());
  EXPECT_THAT(registry_->Audit(), IsEmpty());
}

// A group nobody owns has no ownership to drop: the backend refusing its RIDs still fails the
// start, as before.
TEST_P(RegistryStoreTest, AnUnownedGroupRecoverCannotProgramFailsTheStart) {
  Workload();
  ASSERT_EQ(GroupOf("b").owner, "");
  ASSERT_OK(hardware_->ReleaseRid("u0", 0x20));
  registry_.reset();
  test_store_.Reopen();
  backend_ = std::make_unique<FailingBackend>(hardware_.get());
  backend_->FailNth(FailingBackend::Op::kAttachRid, 1, absl::UnavailableError("refused"));
  RegistryOptions options;
  options.backend = backend_.get();
  options.store = &store_;
  ASSERT_OK_AND_ASSIGN(registry_, Registry::Create(options));
  absl::StatusOr<RecoveryReport> report = registry_->Recover();
  EXPECT_EQ(report.status().code(), absl::StatusCode::kUnavailable);
  registry_.reset();  // refused to start: nothing of it to check against the hardware
}

// The per-device attachments are durable: a restart keeps which devices of a group are attached,
// so a recovered registry detaches the group on its last attached device, not before.
TEST_P(RegistryStoreTest, AttachedDevicesSurviveARestart) {
  const DeviceInfo a = Probe("a", 0x208, {0x200});
  Probe("b", 0x210, {0x200});
  Probe("c", 0x218, {0x200});
  ASSERT_OK(registry_->ClaimOwnership(a.group, kOwner));
  ASSERT_OK_AND_ASSIGN(DomainInfo domain,
                       registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner));
  ASSERT_OK(registry_->AttachDevice("a", domain.id, kOwner));
  ASSERT_OK(registry_->AttachDevice("c", domain.id, kOwner));
  EXPECT_THAT(StoreDump(), ::testing::HasSubstr("attached=a,c\n"));
  const std::string before = Snapshot();
  RecoverInto(/*same_hardware=*/false);
  EXPECT_EQ(Snapshot(), before);
  EXPECT_THAT(GroupOf("a").attached_devices, ElementsAre("a", "c"));
  EXPECT_FALSE(registry_->GetDevice("b")->attached);
  // A join the store refuses changes nothing.
  store_.set_refuse(true);
  EXPECT_ERROR(registry_->AttachDevice("b", domain.id, kOwner), kUnavailable,
               "STORE_WRITE_FAILED");
  store_.set_refuse(false);
  EXPECT_EQ(Snapshot(), before);
  ASSERT_OK_AND_ASSIGN(GroupInfo group, registry_->DetachDevice("a", domain.id, kOwner));
  EXPECT_EQ(group.domain, domain.id);
  EXPECT_ERROR(registry_->DetachDevice("b", domain.id, kOwner), kFailedPrecondition,
               "DEVICE_NOT_ATTACHED");
  ASSERT_OK_AND_ASSIGN(group, registry_->DetachDevice("c", domain.id, kOwner));
  EXPECT_EQ(group.domain, group.blocking_domain);
  EXPECT_EQ(Hw(0x200), group.blocking_domain);
  ExpectConsistent();
  EXPECT_THAT(registry_->Audit(), IsEmpty());
}

// A store written before per-device attach has an attached group without attached devices:
// AttachGroup attached them all, and Recover says so.
TEST_P(RegistryStoreTest, AnAttachedGroupWithoutAttachedDevicesRecoversWithAllOfThem) {
  const DeviceInfo a = Probe("a", 0x208, {0x200});
  Probe("b", 0x210, {0x200});
  const DomainId domain = ClaimAndAttach("a");
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snapshot, store_.Load());
  StoreBatch batch;
  for (GroupRecord group : snapshot.groups) {
    if (group.id != a.group) continue;
    group.attached_devices.clear();
    batch.put_groups.push_back(group);
  }
  ASSERT_EQ(batch.put_groups.size(), 1u);
  ASSERT_OK(store_.Commit(batch));
  RecoverInto(/*same_hardware=*/true);
  EXPECT_THAT(GroupOf("a").attached_devices, ElementsAre("a", "b"));
  EXPECT_EQ(GroupOf("a").domain, domain);
  ExpectConsistent();
}

TEST_P(RegistryStoreTest, RefusedCommitsChangeNothing) {
  Probe("a", 0x10);
  Probe("b", 0x20);
  Probe("k", 0x30);
  const DomainId domain = ClaimAndAttach("a");
  ASSERT_OK(registry_->Map(domain, 0x100000, 0x100000, 0x2000, kProtRead, kOwner));
  ASSERT_OK(registry_->UseDefaultDomain("k"));
  const GroupId a = GroupOf("a").id;
  const GroupId b = GroupOf("b").id;
  std::string registry_before = Snapshot();
  const std::string store_before = StoreDump();
  store_.set_refuse(true);
  auto refused = [&](const absl::Status& status, const char* what) {
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << what << ": " << status;
    EXPECT_EQ(ErrorReason(status), "STORE_WRITE_FAILED") << what;
    EXPECT_EQ(Snapshot(), registry_before) << what;
  };
  ProbeRequest probe;
  probe.unit = "u0";
  probe.device = "new";
  probe.rid = 0x40;
  refused(registry_->ProbeDevice(probe).status(), "probe into a new group");
  probe.rid = 0x20;
  probe.alias_rids = {0x22};
  refused(registry_->ProbeDevice(probe).status(), "probe into b's group");
  refused(registry_->ClaimOwnership(b, kOther).status(), "claim");
  refused(registry_->ClaimDevice("b", kOther).status(), "claim device");
  refused(registry_->UseDefaultDomain("b").status(), "use default");
  refused(registry_->UnuseDefaultDomain("k").status(), "unuse default");
  refused(registry_->DetachGroup(a, domain, kOwner).status(), "detach");
  refused(registry_->DetachDevice("a", domain, kOwner).status(), "detach device");
  refused(registry_->ReleaseOwnership(a, kOwner).status(), "release ownership");
  refused(registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner).status(), "alloc");
  refused(registry_->Map(domain, 0x400000, 0x400000, 0x1000, kProtRead, kOwner).status(), "map");
  refused(registry_->Unmap(domain, 0x100000, 0x2000, kOwner).status(), "unmap");
  refused(registry_->AddUnit("u9", U0Caps()).status(), "add unit");
  store_.set_refuse(false);
  EXPECT_EQ(StoreDump(), store_before);
  ASSERT_OK(registry_->DetachGroup(a, domain, kOwner));
  registry_before = Snapshot();
  store_.set_refuse(true);
  refused(registry_->FreeDomain(domain, kOwner).status(), "free domain");
  store_.set_refuse(false);
  ExpectConsistent();
  EXPECT_THAT(registry_->Audit(), IsEmpty());
}

TEST_P(RegistryStoreTest, ARefusedReleaseIsCountedNotUndone) {
  Probe("a", 0x10);
  store_.set_refuse(true);
  ASSERT_OK(registry_->ReleaseDevice("a"));
  store_.set_refuse(false);
  EXPECT_EQ(registry_->unrecorded_changes(), 1u);
  EXPECT_THAT(registry_->ListDevices(), IsEmpty());
}

TEST_P(RegistryStoreTest, TheRequestRecordIsCommittedWithTheChange) {
  Probe("a", 0x10);
  RequestRecord record;
  record.request_id = "req-1";
  record.method = "AllocDomain";
  record.fingerprint = "f1";
  absl::StatusOr<DomainInfo> domain;
  {
    CallContext context(&record);
    domain = registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner, &context);
    ASSERT_OK(domain.status());
    EXPECT_TRUE(context.record_committed());
    EXPECT_EQ(context.pending_record(), nullptr);  // one batch carries it, not every later one
  }
  absl::StatusOr<std::optional<RequestRecord>> found = store_.FindRequest("req-1");
  ASSERT_OK(found.status());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->result_ref, domain->id);
  EXPECT_EQ((*found)->method, "AllocDomain");

  // A failed request leaves no record.
  RequestRecord failed = record;
  failed.request_id = "req-2";
  {
    CallContext context(&failed);
    EXPECT_FALSE(registry_->AllocDomain("u0", DomainType::kDma, kOwner, &context).ok());
    EXPECT_FALSE(context.record_committed());
  }
  found = store_.FindRequest("req-2");
  ASSERT_OK(found.status());
  EXPECT_FALSE(found->has_value());
}

TEST_P(RegistryStoreTest, RecoverRefusesMisuse) {
  absl::StatusOr<RecoveryReport> again = registry_->Recover();
  EXPECT_EQ(ErrorReason(again.status()), "REGISTRY_NOT_EMPTY");
  RegistryOptions options;
  options.backend = backend_.get();
  auto bare = Registry::Create(options);
  ASSERT_OK(bare.status());
  EXPECT_EQ(ErrorReason((*bare)->Recover().status()), "NO_STATE_STORE");
}

TEST_P(RegistryStoreTest, AnInconsistentStoreIsDataLoss) {
  StoreBatch bad;
  bad.put_mappings.push_back({777, Mapping{0, 0, 0x1000, kProtRead}});
  ASSERT_OK(store_.Commit(bad));
  registry_.reset();
  RegistryOptions options;
  options.backend = backend_.get();
  options.store = &store_;
  auto registry = Registry::Create(options);
  ASSERT_OK(registry.status());
  absl::StatusOr<RecoveryReport> report = (*registry)->Recover();
  EXPECT_EQ(report.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ErrorReason(report.status()), "STATE_CORRUPT");
}

INSTANTIATE_TEST_SUITE_P(BackendsAndStores, RegistryStoreTest,
                         ::testing::ValuesIn(BackendsAndStores()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '/', '_');
                           return name;
                         });

}  // namespace
}  // namespace test
}  // namespace iommud
