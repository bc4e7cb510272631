// State store benchmarks: Commit of a typical attach batch (the batch Registry::AttachGroup of a
// claimed one-device group commits, with a request record of its own each time, as a durable RPC
// carrying a request_id writes) on the in-memory store and on SQLite with synchronous=NORMAL
// (survives kill -9) and FULL (survives power loss: an fsync per commit); and attach+detach
// through a Registry committing to each store. Items/s = commits/s (ops/s for the registry).
// The SQLite files live in a fresh directory under $IOMMUD_BENCH_DIR (default /var/tmp: a disk,
// not a tmpfs where fsync is free).
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "core/backend/backend_factory.h"
#include "core/registry.h"
#include "core/store/in_memory_state_store.h"
#include "core/store/sqlite_state_store.h"
#include "tests/bench/bench_main.h"

namespace iommud {
namespace {

constexpr char kOwner[] = "bench";

enum class Kind { kMemory, kSqliteNormal, kSqliteFull };

// A store of `kind` in its own temporary directory (removed with it).
class BenchStore {
 public:
  explicit BenchStore(Kind kind) {
    if (kind == Kind::kMemory) {
      store_ = std::make_unique<InMemoryStateStore>();
      return;
    }
    const char* base = getenv("IOMMUD_BENCH_DIR");
    std::string templ = absl::StrCat(base != nullptr ? base : "/var/tmp", "/store-bench-XXXXXX");
    if (mkdtemp(templ.data()) == nullptr) return;
    dir_ = templ;
    SqliteStateStoreOptions options;
    options.path = dir_ + "/state.db";
    options.create_if_missing = true;
    options.sync = kind == Kind::kSqliteFull ? SqliteSync::kFull : SqliteSync::kNormal;
    auto store = SqliteStateStore::Open(options);
    if (store.ok()) store_ = *std::move(store);
  }
  ~BenchStore() {
    store_.reset();
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }
  StateStore* get() const { return store_.get(); }

 private:
  std::string dir_;
  std::unique_ptr<StateStore> store_;
};

// Records the batches a registry commits.
class CapturingStore : public InMemoryStateStore {
 public:
  absl::Status Commit(const StoreBatch& batch) override {
    last = batch;
    return InMemoryStateStore::Commit(batch);
  }
  StoreBatch last;
};

// A registry with one unit, one probed device whose group `owner` claimed, and one domain.
struct World {
  explicit World(StateStore* store) {
    hardware = CreateBackend("software").value();
    RegistryOptions options;
    options.backend = hardware.get();
    options.store = store;
    registry = Registry::Create(options).value();
    (void)registry->AddUnit("u0", UnitCaps());
    ProbeRequest request;
    request.unit = "u0";
    request.device = "0000:03:00.0";
    request.rid = 0x300;
    group = registry->ProbeDevice(request).value().group;
    domain = registry->AllocDomain("u0", DomainType::kUnmanaged, kOwner).value().id;
    (void)registry->ClaimOwnership(group, kOwner);
  }
  std::unique_ptr<IommuBackend> hardware;
  std::unique_ptr<Registry> registry;
  GroupId group = 0;
  DomainId domain = 0;
};

// The batch AttachGroup commits, plus a request record.
StoreBatch AttachBatch() {
  CapturingStore capture;
  World world(&capture);
  (void)world.registry->AttachGroup(world.group, world.domain, kOwner);
  StoreBatch batch = capture.last;
  RequestRecord request;
  request.method = "AttachGroup";
  request.fingerprint = std::string(32, '\x5a');
  request.time_unix_nanos = 1;
  batch.request = request;
  return batch;
}

void BM_CommitAttachBatch(benchmark::State& state, Kind kind) {
  BenchStore store(kind);
  if (store.get() == nullptr) {
    state.SkipWithError("cannot open the store");
    return;
  }
  StoreBatch batch = AttachBatch();
  int64_t n = 0;
  batch.request->request_id = "warm-up";  // the first commit creates the WAL file
  if (!store.get()->Commit(batch).ok()) {
    state.SkipWithError("commit failed");
    return;
  }
  for (auto _ : state) {
    batch.request->request_id = absl::StrCat("req-", n);
    batch.request->time_unix_nanos = ++n;
    if (!store.get()->Commit(batch).ok()) {
      state.SkipWithError("commit failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["records"] = static_cast<double>(batch.put_groups.size() +
                                                  batch.put_devices.size() + 1);
}
BENCHMARK_CAPTURE(BM_CommitAttachBatch, memory, Kind::kMemory)->UseRealTime();
BENCHMARK_CAPTURE(BM_CommitAttachBatch, sqlite_normal, Kind::kSqliteNormal)->UseRealTime();
BENCHMARK_CAPTURE(BM_CommitAttachBatch, sqlite_full, Kind::kSqliteFull)->UseRealTime();

// Attach + detach through a registry committing every change to the store.
void BM_AttachDetachDurable(benchmark::State& state, Kind kind) {
  BenchStore store(kind);
  if (store.get() == nullptr) {
    state.SkipWithError("cannot open the store");
    return;
  }
  World world(store.get());
  for (auto _ : state) {
    if (!world.registry->AttachGroup(world.group, world.domain, kOwner).ok() ||
        !world.registry->DetachGroup(world.group, world.domain, kOwner).ok()) {
      state.SkipWithError("attach/detach failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK_CAPTURE(BM_AttachDetachDurable, memory, Kind::kMemory)->UseRealTime();
BENCHMARK_CAPTURE(BM_AttachDetachDurable, sqlite_normal, Kind::kSqliteNormal)->UseRealTime();
BENCHMARK_CAPTURE(BM_AttachDetachDurable, sqlite_full, Kind::kSqliteFull)->UseRealTime();

}  // namespace
}  // namespace iommud

IOMMUD_BENCHMARK_MAIN()
