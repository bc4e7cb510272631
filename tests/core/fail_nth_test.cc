// fail-nth sweeps (the method of iommufd's selftest iommufd_fail_nth.c): run an operation sequence
// with an injected backend failure at hit n = 1, 2, 3, ... until a run hits none. After every run:
// the call that failed returned the injected error (or the backend's own error for it, e.g.
// SYNC_TIMEOUT); nothing leaked (the auditor finds nothing, the
// registry equals the hardware's read-back); then, with injection cleared, the failed step and the
// rest of the sequence succeed, and at the end no domain or page-table page is left in the
// hardware. Both backends.
//
// The same sequences also run over a state store with the store's write failing at commit
// n = 1, 2, ... (store.write): the registry undoes the change (or, for a device release, retries
// it), and after every run registry, hardware and store agree: the auditor finds nothing, and a
// registry recovered from a copy of the store's snapshot onto fresh hardware equals the live one.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/backend/backend_factory.h"
#include "core/error.h"
#include "core/fault_injector.h"
#include "core/registry.h"
#include "core/store/fault_injecting_state_store.h"
#include "core/store/in_memory_state_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/backends_under_test.h"

namespace iommud {
namespace {

using ::testing::IsEmpty;

constexpr char kOwner[] = "vmm";

struct World {
  // One injector for every point: the registry's backend.* hits (RegistryOptions::faults), the
  // backend's internal points (pgtable.alloc, cmdq.sync_timeout: BackendHooks::faults) and the
  // store's store.write.
  FaultInjector injector;
  std::unique_ptr<IommuBackend> hardware;
  InMemoryStateStore store;  // used with `with_store`, through `faulty_store`
  FaultInjectingStateStore faulty_store{&store, &injector};
  std::unique_ptr<Registry> registry;
  GroupId group = 0;
  DomainId domain = 0;
  DomainId domain2 = 0;  // the domain a replace moves the group to
};

using Step = std::function<absl::Status(World&)>;

absl::Status Probe(World& w, const std::string& name, Rid rid, std::vector<Rid> aliases = {}) {
  ProbeRequest request;
  request.unit = "u0";
  request.device = name;
  request.rid = rid;
  request.alias_rids = std::move(aliases);
  absl::StatusOr<DeviceInfo> device = w.registry->ProbeDevice(request);
  if (device.ok()) w.group = device->group;
  return device.status();
}
absl::Status Release(World& w, const std::string& name) {
  return w.registry->ReleaseDevice(name).status();
}
absl::Status Claim(World& w) { return w.registry->ClaimOwnership(w.group, kOwner).status(); }
absl::Status Unclaim(World& w) { return w.registry->ReleaseOwnership(w.group, kOwner).status(); }
absl::Status Alloc(World& w) {
  absl::StatusOr<DomainInfo> domain = w.registry->AllocDomain("u0", DomainType::kUnmanaged, kOwner);
  if (domain.ok()) w.domain = domain->id;
  return domain.status();
}
absl::Status Alloc2(World& w) {
  absl::StatusOr<DomainInfo> domain = w.registry->AllocDomain("u0", DomainType::kUnmanaged, kOwner);
  if (domain.ok()) w.domain2 = domain->id;
  return domain.status();
}
absl::Status Free2(World& w) { return w.registry->FreeDomain(w.domain2, kOwner).status(); }
absl::Status ReplaceTo2(World& w) {
  return w.registry->ReplaceDomain(w.group, w.domain, w.domain2, kOwner).status();
}
absl::Status ReplaceBack(World& w) {
  return w.registry->ReplaceDomain(w.group, w.domain2, w.domain, kOwner).status();
}
absl::Status UnmapAll(World& w) {
  return w.registry->Unmap(w.domain, 0, Registry::kUnmapAll, kOwner).status();
}
absl::Status UnmapAll2(World& w) {
  return w.registry->Unmap(w.domain2, 0, Registry::kUnmapAll, kOwner).status();
}
absl::Status Free(World& w) { return w.registry->FreeDomain(w.domain, kOwner).status(); }
absl::Status Attach(World& w) { return w.registry->AttachGroup(w.group, w.domain, kOwner).status(); }
absl::Status Detach(World& w) { return w.registry->DetachGroup(w.group, w.domain, kOwner).status(); }
Step MapStep(uint64_t iova, uint64_t size) {
  return [iova, size](World& w) {
    return w.registry->Map(w.domain, iova, iova, size, kProtRead | kProtWrite, kOwner).status();
  };
}
Step UnmapStep(uint64_t iova, uint64_t size) {
  return [iova, size](World& w) { return w.registry->Unmap(w.domain, iova, size, kOwner).status(); };
}

struct Sequence {
  std::string name;
  std::vector<Step> steps;
};

std::vector<Sequence> Sequences() {
  return {
      {"probe_release",
       {[](World& w) { return Probe(w, "a", 0x10); }, [](World& w) { return Probe(w, "b", 0x10); },
        [](World& w) { return Probe(w, "c", 0x20, {0x21}); },
        [](World& w) { return Release(w, "b"); }, [](World& w) { return Release(w, "a"); },
        [](World& w) { return Release(w, "c"); }}},
      {"claim_release_ownership",
       {[](World& w) { return Probe(w, "a", 0x10); }, [](World& w) { return Probe(w, "b", 0x10); },
        Claim, Unclaim,
        [](World& w) { return w.registry->ClaimDevice("a", kOwner).status(); },
        [](World& w) { return w.registry->ClaimDevice("b", kOwner).status(); },
        [](World& w) { return w.registry->ReleaseDeviceOwnership("a", kOwner).status(); },
        [](World& w) { return w.registry->ReleaseDeviceOwnership("b", kOwner).status(); },
        [](World& w) { return Release(w, "a"); }, [](World& w) { return Release(w, "b"); }}},
      {"attach_detach_multi_device_shared_rid",
       {[](World& w) { return Probe(w, "a", 0x30, {0x31}); },
        [](World& w) { return Probe(w, "b", 0x32, {0x31}); },
        [](World& w) { return Probe(w, "c", 0x31); }, Claim, Alloc, Attach, Detach, Attach,
        Unclaim, Free, [](World& w) { return Release(w, "c"); },
        [](World& w) { return Release(w, "a"); }, [](World& w) { return Release(w, "b"); }}},
      {"map_unmap_page_sizes",
       {[](World& w) { return Probe(w, "a", 0x40); }, Claim, Alloc, Attach,
        MapStep(0x1000, kPage4K), MapStep(kPage2M, kPage2M + kPage4K), MapStep(kPage1G, kPage1G),
        UnmapStep(0x1000, kPage4K), UnmapStep(kPage2M, kPage2M + kPage4K),
        UnmapStep(kPage1G, kPage1G), Detach, Free, Unclaim,
        [](World& w) { return Release(w, "a"); }}},
      // ReplaceDomain over three RIDs (0x50, 0x51 shared, 0x52) and Unmap all of several mappings.
      {"replace_unmap_all",
       {[](World& w) { return Probe(w, "a", 0x50, {0x51}); },
        [](World& w) { return Probe(w, "b", 0x52, {0x51}); }, Claim, Alloc, Alloc2, Attach,
        MapStep(0x1000, kPage4K), MapStep(kPage2M, kPage2M),
        [](World& w) {
          return w.registry->Map(w.domain2, 0x4000, 0x4000, kPage4K, kProtRead, kOwner).status();
        },
        ReplaceTo2, ReplaceBack, ReplaceTo2, UnmapAll, UnmapAll2,
        [](World& w) { return w.registry->DetachGroup(w.group, w.domain2, kOwner).status(); },
        Free, Free2, Unclaim,
        [](World& w) { return Release(w, "a"); }, [](World& w) { return Release(w, "b"); }}},
  };
}

std::unique_ptr<World> NewWorld(const std::string& backend, bool with_store = false) {
  auto world = std::make_unique<World>();
  BackendHooks hooks;
  hooks.faults = &world->injector;
  world->hardware = CreateBackend(backend, {}, hooks).value();
  RegistryOptions options;
  options.backend = world->hardware.get();
  options.faults = &world->injector;
  if (with_store) options.store = &world->faulty_store;
  world->registry = Registry::Create(options).value();
  EXPECT_TRUE(world->registry->AddUnit("u0", UnitCaps()).ok());
  return world;
}

std::vector<std::string> Problems(World& w) {
  std::vector<std::string> problems;
  for (const LeakRecord& leak : w.registry->Audit()) {
    problems.push_back(absl::StrCat("leak ", LeakReasonName(leak.reason), " rid ", leak.rid));
  }
  for (const InvariantViolation& violation : w.registry->CheckInvariants()) {
    problems.push_back(violation.what);
  }
  return problems;
}

// Everything a registry shows, mappings included (ids too: a recovered registry keeps them).
std::string Dump(const Registry& registry) {
  std::string out;
  for (const GroupInfo& group : registry.ListGroups()) {
    absl::StrAppend(&out, "group ", group.id, " [", absl::StrJoin(group.devices, ","), "] domain=",
                    group.domain, " default=", group.default_domain, " blocking=",
                    group.blocking_domain, " owner=", group.owner, " cnt=", group.owner_cnt,
                    " claimed=[", absl::StrJoin(group.claimed_devices, ","), "] attached=[",
                    absl::StrJoin(group.attached_devices, ","), "]\n");
  }
  for (const DeviceInfo& device : registry.ListDevices()) {
    absl::StrAppend(&out, "device ", device.name, " group=", device.group, " ",
                    DriverBindingName(device.binding), " domain=", device.domain, "\n");
  }
  for (const DomainInfo& domain : registry.ListDomains()) {
    absl::StrAppend(&out, "domain ", domain.id, " ", DomainTypeName(domain.type), " owner=",
                    domain.owner, " groups=[", absl::StrJoin(domain.attached_groups, ","), "]");
    absl::StatusOr<std::vector<Mapping>> mappings = registry.ListMappings(domain.id);
    if (mappings.ok()) {
      for (const Mapping& m : *mappings) absl::StrAppend(&out, " ", m.iova, "+", m.size);
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

// Recovers a registry from a copy of `w`'s store onto fresh hardware and returns its Dump (and the
// hardware's counts), or the error.
std::string RecoveredFromTheStore(World& w, const std::string& backend) {
  absl::StatusOr<StoreSnapshot> snapshot = w.store.Load();
  if (!snapshot.ok()) return snapshot.status().ToString();
  InMemoryStateStore copy;
  StoreBatch batch;
  batch.put_units = snapshot->units;
  batch.put_domains = snapshot->domains;
  batch.put_devices = snapshot->devices;
  batch.put_groups = snapshot->groups;
  batch.put_mappings = snapshot->mappings;
  batch.next_group_id = snapshot->next_group_id;
  batch.next_domain_id = snapshot->next_domain_id;
  if (absl::Status status = copy.Commit(batch); !status.ok()) return status.ToString();
  std::unique_ptr<IommuBackend> hardware = CreateBackend(backend).value();
  RegistryOptions options;
  options.backend = hardware.get();
  options.store = &copy;
  std::unique_ptr<Registry> registry = Registry::Create(options).value();
  absl::StatusOr<RecoveryReport> report = registry->Recover();
  if (!report.ok()) return report.status().ToString();
  const BackendStats stats = hardware->Stats();
  return absl::StrCat(Dump(*registry), "hw domains=", stats.domains, " rids=",
                      stats.programmed_rids, "\n");
}

std::string Live(World& w) {
  const BackendStats stats = w.hardware->Stats();
  return absl::StrCat(Dump(*w.registry), "hw domains=", stats.domains, " rids=",
                      stats.programmed_rids, "\n");
}

class FailNthTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FailNthTest, EveryStoreWriteFailureLeavesRegistryHardwareAndStoreAgreeing) {
  for (const Sequence& sequence : Sequences()) {
    int runs = 0;
    for (uint64_t n = 1;; ++n) {
      SCOPED_TRACE(absl::StrCat(sequence.name, " store.write n=", n));
      ASSERT_LT(n, 500u) << "the sweep does not terminate";
      std::unique_ptr<World> w = NewWorld(GetParam(), /*with_store=*/true);
      ASSERT_EQ(RecoveredFromTheStore(*w, GetParam()), Live(*w));
      FaultSpec spec;
      spec.point = "store.write";
      spec.n = n;
      spec.code = absl::StatusCode::kUnavailable;
      ASSERT_TRUE(w->injector.Add(spec).ok());
      size_t failed = sequence.steps.size();
      for (size_t i = 0; i < sequence.steps.size(); ++i) {
        const absl::Status status = sequence.steps[i](*w);
        if (status.ok()) continue;
        EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
        EXPECT_EQ(ErrorReason(status), "STORE_WRITE_FAILED") << status;
        failed = i;
        break;
      }
      const bool fired = w->injector.List()[0].injected > 0;
      w->injector.Clear();
      if (!fired) {
        EXPECT_EQ(failed, sequence.steps.size());
        break;  // n is past the sequence's last commit: the sweep is complete
      }
      ++runs;
      EXPECT_THAT(Problems(*w), IsEmpty()) << "after the failed commit at step " << failed;
      EXPECT_EQ(w->registry->unrecorded_changes(), 0u);  // a release retries its commit
      EXPECT_EQ(RecoveredFromTheStore(*w, GetParam()), Live(*w))
          << "after the failed commit at step " << failed;
      for (size_t i = failed; i < sequence.steps.size(); ++i) {
        const absl::Status status = sequence.steps[i](*w);
        EXPECT_TRUE(status.ok()) << "step " << i << " after clearing injection: " << status;
      }
      EXPECT_THAT(Problems(*w), IsEmpty());
      EXPECT_EQ(RecoveredFromTheStore(*w, GetParam()), Live(*w));
    }
    EXPECT_GE(runs, static_cast<int>(sequence.steps.size())) << sequence.name;
  }
}

TEST_P(FailNthTest, EveryFailureRollsBackAndTheSequenceThenSucceeds) {
  for (const Sequence& sequence : Sequences()) {
    int runs = 0;
    for (uint64_t n = 1;; ++n) {
      SCOPED_TRACE(absl::StrCat(sequence.name, " n=", n));
      ASSERT_LT(n, 500u) << "the sweep does not terminate";
      std::unique_ptr<World> w = NewWorld(GetParam());
      FaultSpec spec;
      spec.point = "*";
      spec.n = n;
      spec.code = absl::StatusCode::kUnavailable;
      ASSERT_TRUE(w->injector.Add(spec).ok());
      size_t failed = sequence.steps.size();
      for (size_t i = 0; i < sequence.steps.size(); ++i) {
        const absl::Status status = sequence.steps[i](*w);
        if (status.ok()) continue;
        EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
        EXPECT_THAT(ErrorReason(status), ::testing::AnyOf("INJECTED_FAULT", "SYNC_TIMEOUT"))
            << status;
        failed = i;
        break;
      }
      const bool fired = w->injector.List()[0].injected > 0;
      w->injector.Clear();
      if (!fired) {
        EXPECT_EQ(failed, sequence.steps.size());
        break;  // n is past the sequence's last backend call: the sweep is complete
      }
      ++runs;
      EXPECT_THAT(Problems(*w), IsEmpty()) << "after the injected failure at step " << failed;
      for (size_t i = failed; i < sequence.steps.size(); ++i) {
        const absl::Status status = sequence.steps[i](*w);
        EXPECT_TRUE(status.ok()) << "step " << i << " after clearing injection: " << status;
      }
      EXPECT_THAT(Problems(*w), IsEmpty());
      const BackendStats stats = w->hardware->Stats();
      EXPECT_EQ(stats.domains, 1u) << "only the unit's release domain may remain";
      EXPECT_EQ(stats.page_table_pages, 0u);
      EXPECT_EQ(stats.programmed_rids, 0u);
    }
    EXPECT_GT(runs, static_cast<int>(sequence.steps.size())) << sequence.name;
  }
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(FailNthTest);
INSTANTIATE_TEST_SUITE_P(Backends, FailNthTest, ::testing::ValuesIn(test::BackendsUnderTest()));

}  // namespace
}  // namespace iommud
