// Durability benchmarks, in-process: Registry::Recover of a store holding N devices (each in its
// own group, claimed and attached to one of N/10 user domains with 10 mappings each), onto fresh
// hardware (a software IOMMU after a restart: everything reprogrammed) and onto the hardware that
// survived (adopted, then reconciled); and the cost of committing every mutation (attach+detach
// with an in-memory store vs none). The SQLite store's own figures are in store_bench.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "core/backend/backend_factory.h"
#include "core/registry.h"
#include "core/store/in_memory_state_store.h"
#include "tests/bench/bench_main.h"

namespace iommud {
namespace {

constexpr char kOwner[] = "bench";
constexpr int kMappingsPerDomain = 10;

struct Populated {
  std::unique_ptr<IommuBackend> hardware;
  InMemoryStateStore store;
};

// Fills `world` through a registry, so the store holds exactly what a daemon would have written.
bool Populate(Populated* world, int devices) {
  world->hardware = CreateBackend("software").value();
  RegistryOptions options;
  options.backend = world->hardware.get();
  options.store = &world->store;
  std::unique_ptr<Registry> registry = Registry::Create(options).value();
  if (!registry->AddUnit("u0", UnitCaps()).ok()) return false;
  std::vector<DomainId> domains;
  for (int d = 0; d < devices / 10; ++d) {
    absl::StatusOr<DomainInfo> domain =
        registry->AllocDomain("u0", DomainType::kUnmanaged, kOwner);
    if (!domain.ok()) return false;
    domains.push_back(domain->id);
    for (int m = 0; m < kMappingsPerDomain; ++m) {
      const uint64_t iova = uint64_t{0x100000000} + m * kPage2M;
      if (!registry->Map(domain->id, iova, iova, kPage2M, kProtRead, kOwner).ok()) return false;
    }
  }
  for (int i = 0; i < devices; ++i) {
    ProbeRequest request;
    request.unit = "u0";
    request.device = absl::StrCat("dev", i);
    request.rid = 0x100 + i;
    absl::StatusOr<DeviceInfo> device = registry->ProbeDevice(request);
    if (!device.ok() || !registry->ClaimOwnership(device->group, kOwner).ok() ||
        !registry->AttachGroup(device->group, domains[i % domains.size()], kOwner).ok()) {
      return false;
    }
  }
  return true;
}

void BM_Recover(benchmark::State& state, bool surviving_hardware) {
  const int devices = static_cast<int>(state.range(0));
  Populated world;
  if (!Populate(&world, devices)) {
    state.SkipWithError("populate failed");
    return;
  }
  for (auto _ : state) {
    state.PauseTiming();
    std::unique_ptr<IommuBackend> fresh;
    if (!surviving_hardware) fresh = CreateBackend("software").value();
    RegistryOptions options;
    options.backend = surviving_hardware ? world.hardware.get() : fresh.get();
    options.store = &world.store;
    std::unique_ptr<Registry> registry = Registry::Create(options).value();
    state.ResumeTiming();
    absl::StatusOr<RecoveryReport> report = registry->Recover();
    state.PauseTiming();
    if (!report.ok() || report->devices != static_cast<size_t>(devices) ||
        !report->remaining.empty()) {
      state.SkipWithError("recover failed or left leaks");
    }
    registry.reset();
    fresh.reset();
    state.ResumeTiming();
  }
  state.counters["devices"] = devices;
  state.counters["domains"] = devices / 10;
}
BENCHMARK_CAPTURE(BM_Recover, fresh_hardware, false)
    ->Arg(10000)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Recover, surviving_hardware, true)
    ->Arg(10000)->Unit(benchmark::kMillisecond)->UseRealTime();

// Attach + detach of a claimed group, with every change committed to an in-memory store or not:
// what building and committing the batches costs the registry.
void BM_AttachDetachCommitted(benchmark::State& state, bool with_store) {
  std::unique_ptr<IommuBackend> hardware = CreateBackend("software").value();
  InMemoryStateStore store;
  RegistryOptions options;
  options.backend = hardware.get();
  if (with_store) options.store = &store;
  std::unique_ptr<Registry> registry = Registry::Create(options).value();
  (void)registry->AddUnit("u0", UnitCaps());
  ProbeRequest request;
  request.unit = "u0";
  request.device = "dev";
  request.rid = 0x100;
  const GroupId group = registry->ProbeDevice(request).value().group;
  const DomainId domain = registry->AllocDomain("u0", DomainType::kUnmanaged, kOwner).value().id;
  (void)registry->ClaimOwnership(group, kOwner);
  for (auto _ : state) {
    if (!registry->AttachGroup(group, domain, kOwner).ok() ||
        !registry->DetachGroup(group, domain, kOwner).ok()) {
      state.SkipWithError("attach/detach failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK_CAPTURE(BM_AttachDetachCommitted, no_store, false);
BENCHMARK_CAPTURE(BM_AttachDetachCommitted, memory_store, true);

}  // namespace
}  // namespace iommud

IOMMUD_BENCHMARK_MAIN()
