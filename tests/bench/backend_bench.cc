// Backend benchmarks (both backends): map+unmap by page size, a 1 GiB map with 2M pages, and
// translation with IOTLB hits and misses. Run through tests/bench/run.sh.
#include <memory>
#include <string>

#include "benchmark/benchmark.h"
#include "core/backend/backend_factory.h"
#include "core/backend/iommu_backend.h"
#include "tests/bench/bench_main.h"

namespace iommud {
namespace {

constexpr DomainId kDomain = 1;
constexpr Rid kRid = 1;

std::unique_ptr<IommuBackend> Setup(const std::string& name) {
  std::unique_ptr<IommuBackend> backend = CreateBackend(name).value();
  UnitCaps caps;
  caps.max_rids = 256;
  (void)backend->AddUnit("u0", caps);
  (void)backend->AllocDomain("u0", kDomain, DomainType::kUnmanaged);
  (void)backend->AttachRid("u0", kRid, kDomain);
  return backend;
}

// One map and one unmap of a `page`-sized page (plus the IOTLB invalidation of the range, as the
// registry issues it) per iteration; items = pages.
void BM_MapUnmap(benchmark::State& state, const std::string& backend_name, uint64_t page) {
  std::unique_ptr<IommuBackend> backend = Setup(backend_name);
  uint64_t iova = 0;
  for (auto _ : state) {
    if (!backend->Map(kDomain, iova, iova, page, kProtRead | kProtWrite).ok()) {
      state.SkipWithError("map failed");
      break;
    }
    benchmark::DoNotOptimize(backend->Unmap(kDomain, iova, page));
    (void)backend->InvalidateIotlb(kDomain, iova, page);
    iova = (iova + page) % (uint64_t{1} << 38);
  }
  state.SetItemsProcessed(state.iterations());
}

// Map 1 GiB with 2M pages in one call, then unmap it; items = calls.
void BM_Map1GiBWith2MPages(benchmark::State& state, const std::string& backend_name) {
  std::unique_ptr<IommuBackend> backend = CreateBackend(backend_name).value();
  UnitCaps caps;
  caps.pgsize_bitmap = kPage4K | kPage2M;  // no 1G pages: 512 leaves of 2M
  (void)backend->AddUnit("u0", caps);
  (void)backend->AllocDomain("u0", kDomain, DomainType::kUnmanaged);
  for (auto _ : state) {
    if (!backend->Map(kDomain, kPage1G, kPage1G, kPage1G, kProtRead).ok()) {
      state.SkipWithError("map failed");
      break;
    }
    state.PauseTiming();
    (void)backend->Unmap(kDomain, kPage1G, kPage1G);
    (void)backend->InvalidateIotlb(kDomain, 0, 0);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations());
}

// Translations of one page (IOTLB hit) or of 64K distinct pages cycling through an IOTLB of 4096
// entries (almost every one a miss and a page-table walk).
void BM_Translate(benchmark::State& state, const std::string& backend_name, bool hit) {
  std::unique_ptr<IommuBackend> backend = Setup(backend_name);
  constexpr uint64_t kPages = 65536;
  // paddr 4K past iova: no 2M block fits, so these are 65536 distinct 4K leaves (with paddr 0
  // the range would be 128 2M blocks, all of which stay in the IOTLB: every "miss" a hit).
  if (!backend->Map(kDomain, 0, kPage4K, kPages * kPage4K, kProtRead).ok()) {
    state.SkipWithError("map failed");
    return;
  }
  uint64_t page = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(backend->Translate("u0", kRid, page * kPage4K + 8, kProtRead));
    if (!hit) page = (page + 4099) % kPages;
  }
  state.SetItemsProcessed(state.iterations());
}

#define IOMMUD_BACKEND_BENCHES(backend)                                                  \
  BENCHMARK_CAPTURE(BM_MapUnmap, backend##_4K, #backend, kPage4K);                       \
  BENCHMARK_CAPTURE(BM_MapUnmap, backend##_2M, #backend, kPage2M);                       \
  BENCHMARK_CAPTURE(BM_MapUnmap, backend##_1G, #backend, kPage1G);                       \
  BENCHMARK_CAPTURE(BM_Map1GiBWith2MPages, backend, #backend)->Unit(benchmark::kMicrosecond); \
  BENCHMARK_CAPTURE(BM_Translate, backend##_iotlb_hit, #backend, true);                  \
  BENCHMARK_CAPTURE(BM_Translate, backend##_iotlb_miss, #backend, false);

IOMMUD_BACKEND_BENCHES(software)
IOMMUD_BACKEND_BENCHES(emulated)

}  // namespace
}  // namespace iommud

IOMMUD_BENCHMARK_MAIN()
