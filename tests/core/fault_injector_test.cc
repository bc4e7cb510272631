// FaultInjector policies and scopes, and the injection points inside the backends.
#include "core/fault_injector.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "core/backend/backend_factory.h"
#include "core/error.h"
#include "core/registry.h"
#include "core/store/call_context.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace iommud {
namespace {

FaultSpec Spec(const std::string& point, FaultSpec::Mode mode = FaultSpec::Mode::kNth,
               uint64_t n = 1) {
  FaultSpec spec;
  spec.point = point;
  spec.mode = mode;
  spec.n = n;
  return spec;
}

std::vector<bool> Fails(FaultInjector& injector, const std::string& point, int hits) {
  std::vector<bool> fails;
  for (int i = 0; i < hits; ++i) fails.push_back(!injector.Hit(point).ok());
  return fails;
}

TEST(FaultInjectorTest, NthAndEveryKth) {
  FaultInjector injector;
  ASSERT_TRUE(injector.Add(Spec("backend.map", FaultSpec::Mode::kNth, 3)).ok());
  EXPECT_EQ(Fails(injector, "backend.map", 5),
            (std::vector<bool>{false, false, true, false, false}));
  EXPECT_EQ(Fails(injector, "backend.unmap", 3), (std::vector<bool>{false, false, false}));
  injector.Clear();
  ASSERT_TRUE(injector.Add(Spec("*", FaultSpec::Mode::kEveryKth, 2)).ok());
  EXPECT_EQ(Fails(injector, "backend.attach", 4), (std::vector<bool>{false, true, false, true}));
  const std::vector<FaultState> listed = injector.List();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].hits, 4u);
  EXPECT_EQ(listed[0].injected, 2u);
}

TEST(FaultInjectorTest, TheInjectedErrorCarriesCodeReasonAndPoint) {
  FaultInjector injector;
  FaultSpec spec = Spec("backend.attach");
  spec.code = absl::StatusCode::kResourceExhausted;
  ASSERT_TRUE(injector.Add(spec).ok());
  std::vector<std::string> seen;
  injector.SetOnInjected([&](absl::string_view point) { seen.emplace_back(point); });
  const absl::Status status = injector.Hit("backend.attach");
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorReason(status), "INJECTED_FAULT");
  EXPECT_EQ(GetErrorMetadata(status).at("point"), "backend.attach");
  EXPECT_EQ(seen, (std::vector<std::string>{"backend.attach"}));
}

TEST(FaultInjectorTest, ProbabilityIsSeededAndRepeatable) {
  auto run = [](uint64_t seed) {
    FaultInjector injector;
    FaultSpec spec = Spec("backend.map", FaultSpec::Mode::kProbability);
    spec.probability = 0.3;
    spec.seed = seed;
    EXPECT_TRUE(injector.Add(spec).ok());
    return Fails(injector, "backend.map", 200);
  };
  const std::vector<bool> first = run(7);
  EXPECT_EQ(first, run(7));
  EXPECT_NE(first, run(8));
  const int failures = std::count(first.begin(), first.end(), true);
  EXPECT_GT(failures, 30);
  EXPECT_LT(failures, 90);
}

TEST(FaultInjectorTest, LatencyOnlyDelaysWithoutFailing) {
  FaultInjector injector;
  FaultSpec spec = Spec("backend.map");
  spec.fail = false;
  spec.latency = absl::Milliseconds(20);
  ASSERT_TRUE(injector.Add(spec).ok());
  const absl::Time start = absl::Now();
  EXPECT_TRUE(injector.Hit("backend.map").ok());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(20));
}

TEST(FaultInjectorTest, ScopedToAGroupOrADevice) {
  FaultInjector injector;
  FaultSpec by_group = Spec("backend.attach", FaultSpec::Mode::kEveryKth, 1);
  by_group.group = 7;
  FaultSpec by_device = Spec("backend.release", FaultSpec::Mode::kEveryKth, 1);
  by_device.device = "0000:03:00.0";
  ASSERT_TRUE(injector.Add(by_group).ok());
  ASSERT_TRUE(injector.Add(by_device).ok());
  EXPECT_TRUE(injector.Hit("backend.attach").ok());  // no scope: no group 7
  const FaultScope in_7{7, "0000:01:00.0"};
  const FaultScope in_8{8, "0000:03:00.0"};
  EXPECT_FALSE(injector.Hit("backend.attach", in_7).ok());
  EXPECT_TRUE(injector.Hit("backend.release", in_7).ok());
  EXPECT_TRUE(injector.Hit("backend.attach", in_8).ok());
  EXPECT_FALSE(injector.Hit("backend.release", in_8).ok());
  EXPECT_TRUE(injector.Hit("backend.attach").ok());
}

TEST(FaultInjectorTest, TheScopeTravelsWithTheCallNotTheThread) {
  FaultInjector injector;
  FaultSpec by_group = Spec("backend.attach", FaultSpec::Mode::kEveryKth, 1);
  by_group.group = 7;
  ASSERT_TRUE(injector.Add(by_group).ok());
  CallContext call;
  FaultScopeGuard guard(call, 7, "");
  absl::Status elsewhere;
  std::thread worker([&] { elsewhere = injector.Hit("backend.attach", call.fault_scope()); });
  worker.join();
  EXPECT_EQ(ErrorReason(elsewhere), "INJECTED_FAULT");
  EXPECT_TRUE(injector.Hit("backend.attach").ok());  // this thread has no scope of its own
}

TEST(FaultInjectorTest, OnlyScopedPointsTakeAScope) {
  FaultInjector injector;
  for (const std::string point : {"pgtable.alloc", "cmdq.sync_timeout", "host.map_dma"}) {
    FaultSpec scoped = Spec(point);
    scoped.group = 1;
    EXPECT_EQ(ErrorReason(injector.Add(scoped).status()), "INVALID_FAULT") << point;
    scoped.group = 0;
    scoped.device = "0000:01:00.0";
    EXPECT_EQ(ErrorReason(injector.Add(scoped).status()), "INVALID_FAULT") << point;
    EXPECT_TRUE(injector.Add(Spec(point)).ok()) << point;
  }
  for (const std::string point : {"backend.map", "store.write", "*"}) {
    FaultSpec scoped = Spec(point);
    scoped.group = 1;
    EXPECT_TRUE(injector.Add(scoped).ok()) << point;
  }
}

TEST(FaultInjectorTest, BadSpecsAreRefused) {
  FaultInjector injector;
  FaultSpec probability = Spec("backend.map", FaultSpec::Mode::kProbability);
  probability.probability = 1.5;
  FaultSpec no_effect = Spec("backend.map");
  no_effect.fail = false;
  FaultSpec ok_code = Spec("backend.map");
  ok_code.code = absl::StatusCode::kOk;
  for (const FaultSpec& bad : {Spec("backend.nowhere"), Spec("backend.map", FaultSpec::Mode::kNth, 0),
                               probability, no_effect, ok_code}) {
    EXPECT_EQ(ErrorReason(injector.Add(bad).status()), "INVALID_FAULT") << bad.point;
  }
  EXPECT_TRUE(injector.List().empty());
}

// One registry with its own backend and injector, as one daemon has them.
struct Stack {
  explicit Stack(const std::string& backend_name) {
    BackendHooks hooks;
    hooks.faults = &injector;
    backend = CreateBackend(backend_name, {}, hooks).value();
    RegistryOptions options;
    options.backend = backend.get();
    options.faults = &injector;
    registry = Registry::Create(options).value();
    EXPECT_TRUE(registry->AddUnit("u0", UnitCaps()).ok());
  }
  GroupId Probe(const std::string& device, Rid rid) {
    ProbeRequest request;
    request.unit = "u0";
    request.device = device;
    request.rid = rid;
    return registry->ProbeDevice(request).value().group;
  }
  FaultInjector injector;
  std::unique_ptr<IommuBackend> backend;
  std::unique_ptr<Registry> registry;
};

TEST(FaultInjectorTest, TwoRegistriesInOneProcessHaveTheirOwnInjectors) {
  auto a = std::make_unique<Stack>("software");
  Stack b("software");
  ASSERT_TRUE(a->injector.Add(Spec("backend.alloc_domain", FaultSpec::Mode::kEveryKth, 1)).ok());
  ASSERT_TRUE(a->injector.Add(Spec("pgtable.alloc", FaultSpec::Mode::kEveryKth, 1)).ok());
  EXPECT_EQ(ErrorReason(a->registry->AllocDomain("u0", DomainType::kUnmanaged, "vm").status()),
            "INJECTED_FAULT");
  absl::StatusOr<DomainInfo> in_b = b.registry->AllocDomain("u0", DomainType::kUnmanaged, "vm");
  ASSERT_TRUE(in_b.ok()) << in_b.status();
  // b's backend allocates page tables: a's pgtable.alloc fault is not b's.
  EXPECT_TRUE(b.registry->Map(in_b->id, 0x1000, 0x1000, kPage4K, kProtRead, "vm").ok());
  EXPECT_EQ(a->injector.List()[0].hits, 1u);
  EXPECT_EQ(a->injector.List()[1].hits, 0u);
  // b's faults are b's; a going away (its daemon stopping) clears nothing of b's.
  ASSERT_TRUE(b.injector.Add(Spec("backend.map", FaultSpec::Mode::kEveryKth, 1)).ok());
  a.reset();
  EXPECT_EQ(ErrorReason(b.registry->Map(in_b->id, 0x2000, 0x2000, kPage4K, kProtRead, "vm").status()),
            "INJECTED_FAULT");
  EXPECT_EQ(b.injector.List().size(), 1u);
}

TEST(FaultInjectorTest, TheRegistryHitsBackendPointsWithItsOperationsScope) {
  Stack stack("software");
  const GroupId g1 = stack.Probe("0000:01:00.0", 0x10);
  const GroupId g2 = stack.Probe("0000:02:00.0", 0x20);
  FaultSpec in_g1 = Spec("backend.attach", FaultSpec::Mode::kEveryKth, 1);
  in_g1.group = g1;
  ASSERT_TRUE(stack.injector.Add(in_g1).ok());
  // Claiming blocks the group: an attach of its RIDs, in g1's operation only.
  EXPECT_TRUE(stack.registry->ClaimOwnership(g2, "vm").ok());
  EXPECT_EQ(ErrorReason(stack.registry->ClaimOwnership(g1, "vm").status()), "INJECTED_FAULT");
  FaultSpec on_device = Spec("backend.attach", FaultSpec::Mode::kEveryKth, 1);
  on_device.device = "0000:02:00.0";
  ASSERT_TRUE(stack.injector.Add(on_device).ok());
  // ClaimDevice names the device: its attach carries it.
  EXPECT_EQ(ErrorReason(stack.registry->ReleaseOwnership(g2, "vm").status()), "");
  EXPECT_EQ(ErrorReason(stack.registry->ClaimDevice("0000:02:00.0", "vm").status()),
            "INJECTED_FAULT");
  EXPECT_TRUE(stack.registry->CheckInvariants().empty());
}

class BackendPointsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    BackendHooks hooks;
    hooks.faults = &injector_;  // the backend's own injector, through its hooks
    backend_ = CreateBackend(GetParam(), {}, hooks).value();
    ASSERT_TRUE(backend_->AddUnit("u0", UnitCaps()).ok());
    ASSERT_TRUE(backend_->AllocDomain("u0", 1, DomainType::kUnmanaged).ok());
    ASSERT_TRUE(backend_->AllocDomain("u0", 2, DomainType::kBlocked).ok());
  }
  FaultInjector injector_;
  std::unique_ptr<IommuBackend> backend_;
};

TEST_P(BackendPointsTest, PageTableAllocationFailureChangesNothing) {
  ASSERT_TRUE(backend_->Map(1, 0x1000, 0x1000, kPage4K, kProtRead).ok());
  const uint64_t pages = backend_->Stats().page_table_pages;
  // A map far away needs new tables at every level; fail the 2nd table allocation.
  ASSERT_TRUE(injector_.Add(Spec("pgtable.alloc", FaultSpec::Mode::kNth, 2)).ok());
  const absl::Status status = backend_->Map(1, uint64_t{1} << 40, 0, kPage4K, kProtRead);
  EXPECT_EQ(ErrorReason(status), "INJECTED_FAULT");
  EXPECT_EQ(backend_->Stats().page_table_pages, pages);
  EXPECT_EQ(backend_->ReadMappings(1).value().size(), 1u);
  injector_.Clear();
  EXPECT_TRUE(backend_->Map(1, uint64_t{1} << 40, 0, kPage4K, kProtRead).ok());
}

TEST_P(BackendPointsTest, ASyncTimeoutLeavesTheStreamTableAsItWas) {
  ASSERT_TRUE(backend_->AttachRid("u0", 5, 2).ok());
  ASSERT_TRUE(injector_.Add(Spec("cmdq.sync_timeout")).ok());
  const absl::Status status = backend_->AttachRid("u0", 5, 1);
  injector_.Clear();
  if (GetParam() != "emulated") {
    EXPECT_TRUE(status.ok());  // only the emulated backend has a command queue
    return;
  }
  EXPECT_EQ(ErrorReason(status), "SYNC_TIMEOUT");
  EXPECT_EQ(backend_->ReadRid("u0", 5)->domain, 2u);
  EXPECT_EQ(backend_->Translate("u0", 5, 0, kProtRead).fault, FaultReason::kBlocked);
  EXPECT_EQ(backend_->FreeDomain(1).code(), absl::StatusCode::kOk);  // no reference was left
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendPointsTest, ::testing::Values("software", "emulated"));

}  // namespace
}  // namespace iommud
