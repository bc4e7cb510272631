// Core registry benchmarks, in-process (software backend): attach/detach, claim/release,
// probe/release, use/unuse of the default domain, map/unmap through the registry; on distinct
// groups (one per thread) and on one shared group, 1..N threads. Run through tests/bench/run.sh.
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "core/backend/backend_factory.h"
#include "core/registry.h"
#include "tests/bench/bench_main.h"

namespace iommud {
namespace {

constexpr int kMaxThreads = 64;
constexpr char kOwner[] = "bench";

// One registry per benchmark run, shared by its threads: a device (own group) per thread slot.
struct World {
  std::unique_ptr<IommuBackend> backend;
  std::unique_ptr<Registry> registry;
  std::vector<std::string> devices;
  std::vector<GroupId> groups;
  std::vector<DomainId> domains;  // an UNMANAGED domain per slot, owned by kOwner
};

std::unique_ptr<World> MakeWorld(int slots, bool claim) {
  auto world = std::make_unique<World>();
  world->backend = CreateBackend("software").value();
  RegistryOptions options;
  options.backend = world->backend.get();
  world->registry = Registry::Create(options).value();
  (void)world->registry->AddUnit("u0", UnitCaps());
  for (int i = 0; i < slots; ++i) {
    ProbeRequest request;
    request.unit = "u0";
    request.device = absl::StrCat("dev", i);
    request.rid = 0x100 + i;
    const DeviceInfo device = world->registry->ProbeDevice(request).value();
    world->devices.push_back(device.name);
    world->groups.push_back(device.group);
    world->domains.push_back(
        world->registry->AllocDomain("u0", DomainType::kUnmanaged, kOwner).value().id);
    if (claim) (void)world->registry->ClaimOwnership(device.group, kOwner);
  }
  return world;
}

std::unique_ptr<World> g_world;

void SetUpWorld(const benchmark::State& state, bool claim) {
  if (state.thread_index() == 0) g_world = MakeWorld(kMaxThreads, claim);
}
void TearDownWorld(const benchmark::State& state) {
  if (state.thread_index() == 0) g_world.reset();
}

// Attach + detach of the thread's own group (items = attach/detach pairs, 2 ops each).
void BM_AttachDetach(benchmark::State& state) {
  SetUpWorld(state, /*claim=*/true);
  const int slot = state.thread_index();
  for (auto _ : state) {
    Registry& registry = *g_world->registry;
    if (!registry.AttachGroup(g_world->groups[slot], g_world->domains[slot], kOwner).ok() ||
        !registry.DetachGroup(g_world->groups[slot], g_world->domains[slot], kOwner).ok()) {
      state.SkipWithError("attach/detach failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * 2);
  TearDownWorld(state);
}
BENCHMARK(BM_AttachDetach)->ThreadRange(1, 8)->UseRealTime();

// Claim + release ownership of the thread's own group.
void BM_ClaimRelease(benchmark::State& state) {
  SetUpWorld(state, /*claim=*/false);
  const int slot = state.thread_index();
  for (auto _ : state) {
    Registry& registry = *g_world->registry;
    if (!registry.ClaimOwnership(g_world->groups[slot], kOwner).ok() ||
        !registry.ReleaseOwnership(g_world->groups[slot], kOwner).ok()) {
      state.SkipWithError("claim/release failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * 2);
  TearDownWorld(state);
}
BENCHMARK(BM_ClaimRelease)->ThreadRange(1, 8)->UseRealTime();

// UseDefaultDomain + UnuseDefaultDomain: on the thread's own group, or every thread on group 0
// through distinct devices of one group (the serialized case).
void BM_UseUnuse(benchmark::State& state, bool shared_group) {
  if (state.thread_index() == 0) {
    g_world = std::make_unique<World>();
    g_world->backend = CreateBackend("software").value();
    RegistryOptions options;
    options.backend = g_world->backend.get();
    g_world->registry = Registry::Create(options).value();
    (void)g_world->registry->AddUnit("u0", UnitCaps());
    for (int i = 0; i < kMaxThreads; ++i) {
      ProbeRequest request;
      request.unit = "u0";
      request.device = absl::StrCat("dev", i);
      request.rid = shared_group ? 0x100 : 0x100 + i;  // a shared RID puts them in one group
      g_world->devices.push_back(g_world->registry->ProbeDevice(request).value().name);
    }
  }
  const int slot = state.thread_index();
  for (auto _ : state) {
    Registry& registry = *g_world->registry;
    if (!registry.UseDefaultDomain(g_world->devices[slot]).ok() ||
        !registry.UnuseDefaultDomain(g_world->devices[slot]).ok()) {
      state.SkipWithError("use/unuse failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * 2);
  TearDownWorld(state);
}
BENCHMARK_CAPTURE(BM_UseUnuse, distinct_groups, false)->ThreadRange(1, 8)->UseRealTime();
BENCHMARK_CAPTURE(BM_UseUnuse, one_group, true)->ThreadRange(1, 8)->UseRealTime();

// Probe + release of a fresh device in its own group (default and blocking domains each time).
void BM_ProbeRelease(benchmark::State& state) {
  std::unique_ptr<World> world = MakeWorld(0, false);
  ProbeRequest request;
  request.unit = "u0";
  request.device = "hotplug";
  request.rid = 0x900;
  for (auto _ : state) {
    if (!world->registry->ProbeDevice(request).ok() ||
        !world->registry->ReleaseDevice("hotplug").ok()) {
      state.SkipWithError("probe/release failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(BM_ProbeRelease);

// Map + unmap of one 4K page through the registry (checks, mapping index, IOTLB invalidation).
void BM_RegistryMapUnmap4K(benchmark::State& state) {
  std::unique_ptr<World> world = MakeWorld(1, true);
  const DomainId domain = world->domains[0];
  uint64_t iova = 0;
  for (auto _ : state) {
    if (!world->registry->Map(domain, iova, iova, kPage4K, kProtRead, kOwner).ok() ||
        !world->registry->Unmap(domain, iova, kPage4K, kOwner).ok()) {
      state.SkipWithError("map/unmap failed");
      break;
    }
    iova = (iova + kPage4K) % 0xf0000000;  // below the MSI window
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RegistryMapUnmap4K);

}  // namespace
}  // namespace iommud

IOMMUD_BENCHMARK_MAIN()
