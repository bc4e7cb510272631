// registry_ops_fuzzer: the input is a sequence of core operations (probe/release, the DMA ownership
// calls with and without leases, lease renewal, time passing and lease expiry on a manual clock,
// alloc/free, attach/detach, map/unmap, translate, reconcile) with arguments drawn from
// small sets so that they collide (the same devices, RIDs, group and domain ids, owners, IOVAs),
// run on a Registry over the backend the first byte picks (software, or emulated on anonymous
// memory) and over an in-memory StateStore. After every step: invariants and audit clean, every
// error has a reason, a failed step changed nothing. At the end, a fresh registry recovered from
// the store on fresh hardware must show the same state.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/backend/backend_factory.h"
#include "core/clock.h"
#include "core/registry.h"
#include "core/store/in_memory_state_store.h"
#include "tests/fuzz/fuzz_checks.h"

namespace iommud {
namespace fuzz {
namespace {

constexpr const char* kUnits[] = {"u0", "u1", "nope"};
constexpr const char* kDevices[] = {"d0", "d1", "d2", "d3", "d4", "d5"};
constexpr const char* kOwners[] = {"a", "b", ""};
constexpr DomainType kTypes[] = {DomainType::kBlocked, DomainType::kIdentity,
                                 DomainType::kUnmanaged, DomainType::kDma, DomainType::kDmaFq};

std::unique_ptr<IommuBackend> NewBackend(bool emulated) {
  absl::StatusOr<std::unique_ptr<IommuBackend>> backend =
      emulated ? CreateBackend("emulated", {{"memory_bytes", "2M"}, {"iotlb_entries", "8"}})
               : CreateBackend("software");
  if (!backend.ok()) Fail("cannot create the backend", backend.status().ToString());
  return *std::move(backend);
}

// u0: 4K|2M pages, a 32-bit aperture, the MSI window reserved. u1: 4K pages only, a 24-bit aperture
// (so a whole-aperture map stays small), 16 RIDs, a reserved page at 0x10000, no IDENTITY domains.
void AddUnits(Registry* registry) {
  UnitCaps u0;
  u0.pgsize_bitmap = kPage4K | kPage2M;
  u0.iova_bits = 32;
  u0.max_rids = 64;
  UnitCaps u1;
  u1.pgsize_bitmap = kPage4K;
  u1.iova_bits = 24;
  u1.max_rids = 16;
  u1.reserved_regions = {{0x10000, 0x1000}};
  u1.domain_types = {DomainType::kBlocked, DomainType::kUnmanaged, DomainType::kDma};
  for (const auto& [name, caps] : {std::make_pair("u0", u0), std::make_pair("u1", u1)}) {
    absl::StatusOr<UnitInfo> added = registry->AddUnit(name, caps);
    if (!added.ok()) Fail("cannot add a unit", added.status().ToString());
  }
}

std::unique_ptr<Registry> NewRegistry(IommuBackend* backend, StateStore* store, Clock* clock) {
  RegistryOptions options;
  options.backend = backend;
  options.store = store;
  options.clock = clock;
  absl::StatusOr<std::unique_ptr<Registry>> registry = Registry::Create(options);
  if (!registry.ok()) Fail("cannot create the registry", registry.status().ToString());
  return *std::move(registry);
}

class OpRunner {
 public:
  OpRunner(FuzzedDataProvider* input, Registry* registry, ManualClock* clock)
      : in_(*input), registry_(*registry), clock_(*clock) {}

  // Runs one operation; returns its status and names it in `step`.
  absl::Status RunOne(std::string* step) {
    switch (in_.ConsumeIntegralInRange<int>(0, 23)) {
      case 0: {
        ProbeRequest probe;
        probe.unit = Unit();
        probe.device = Device();
        probe.rid = Rid();
        const int aliases = in_.ConsumeIntegralInRange<int>(0, 2);
        for (int i = 0; i < aliases; ++i) probe.alias_rids.push_back(Rid());
        if (in_.ConsumeBool()) probe.default_domain_type = Type();
        *step = absl::StrCat("ProbeDevice(", probe.unit, ", ", probe.device, ", ", probe.rid, ")");
        return registry_.ProbeDevice(probe).status();
      }
      case 1: {
        const std::string device = Device();
        *step = absl::StrCat("ReleaseDevice(", device, ")");
        return registry_.ReleaseDevice(device).status();
      }
      case 2: {
        const std::string device = Device();
        *step = absl::StrCat("UseDefaultDomain(", device, ")");
        return registry_.UseDefaultDomain(device).status();
      }
      case 3: {
        const std::string device = Device();
        *step = absl::StrCat("UnuseDefaultDomain(", device, ")");
        return registry_.UnuseDefaultDomain(device).status();
      }
      case 4: {
        const GroupId group = Id();
        const std::string owner = Owner();
        const absl::Duration ttl = LeaseTtl();
        *step = absl::StrCat("ClaimOwnership(", group, ", ", owner, ", ",
                             absl::FormatDuration(ttl), ")");
        return registry_.ClaimOwnership(group, owner, ttl).status();
      }
      case 5: {
        const GroupId group = Id();
        const std::string owner = Owner();
        *step = absl::StrCat("ReleaseOwnership(", group, ", ", owner, ")");
        return registry_.ReleaseOwnership(group, owner).status();
      }
      case 6: {
        const std::string device = Device(), owner = Owner();
        *step = absl::StrCat("ClaimDevice(", device, ", ", owner, ")");
        return registry_.ClaimDevice(device, owner).status();
      }
      case 7: {
        const std::string device = Device(), owner = Owner();
        *step = absl::StrCat("ReleaseDeviceOwnership(", device, ", ", owner, ")");
        return registry_.ReleaseDeviceOwnership(device, owner).status();
      }
      case 8: {
        const std::string unit = Unit(), owner = Owner();
        const DomainType type = Type();
        *step = absl::StrCat("AllocDomain(", unit, ", ", DomainTypeName(type), ", ", owner, ")");
        return registry_.AllocDomain(unit, type, owner).status();
      }
      case 9: {
        const DomainId domain = Id();
        const std::string owner = Owner();
        *step = absl::StrCat("FreeDomain(", domain, ", ", owner, ")");
        return registry_.FreeDomain(domain, owner).status();
      }
      case 10: {
        const std::string device = Device(), owner = Owner();
        const DomainId domain = Id();
        *step = absl::StrCat("AttachDevice(", device, ", ", domain, ", ", owner, ")");
        return registry_.AttachDevice(device, domain, owner).status();
      }
      case 11: {
        const GroupId group = Id();
        const DomainId domain = Id();
        const std::string owner = Owner();
        *step = absl::StrCat("AttachGroup(", group, ", ", domain, ", ", owner, ")");
        return registry_.AttachGroup(group, domain, owner).status();
      }
      case 12: {
        const GroupId group = Id();
        const DomainId domain = Id();
        const std::string owner = Owner();
        *step = absl::StrCat("DetachGroup(", group, ", ", domain, ", ", owner, ")");
        return registry_.DetachGroup(group, domain, owner).status();
      }
      case 13: {
        const DomainId domain = Id();
        const uint64_t iova = Address(), paddr = Address(), size = Size();
        const uint32_t prot = in_.ConsumeIntegralInRange<uint32_t>(0, 4);
        const std::string owner = Owner();
        *step = absl::StrCat("Map(", domain, ", 0x", absl::Hex(iova), ", 0x", absl::Hex(paddr),
                             ", 0x", absl::Hex(size), ", ", prot, ", ", owner, ")");
        return registry_.Map(domain, iova, paddr, size, prot, owner).status();
      }
      case 14: {
        const DomainId domain = Id();
        const uint64_t iova = Address(), size = Size();
        const std::string owner = Owner();
        *step = absl::StrCat("Unmap(", domain, ", 0x", absl::Hex(iova), ", 0x", absl::Hex(size),
                             ", ", owner, ")");
        return registry_.Unmap(domain, iova, size, owner).status();
      }
      case 15: {
        const std::string device = Device();
        const uint64_t iova = Address() + in_.ConsumeIntegralInRange<uint64_t>(0, 0xfff);
        const uint32_t access = in_.ConsumeIntegralInRange<uint32_t>(0, 3);
        *step = absl::StrCat("Translate(", device, ", 0x", absl::Hex(iova), ", ", access, ")");
        return registry_.Translate(device, iova, access).status();
      }
      case 16: {
        *step = "Reconcile()";
        const Registry::ReconcileResult result = registry_.Reconcile();
        if (!result.repaired.empty() || !result.remaining.empty()) {
          Fail("Reconcile found something to repair in a consistent registry",
               absl::StrCat(result.repaired.size(), " repaired, ", result.remaining.size(),
                            " remaining"));
        }
        return absl::OkStatus();
      }
      case 18: {
        const GroupId group = Id();
        const std::string owner = Owner();
        std::optional<absl::Duration> ttl;
        if (in_.ConsumeBool()) ttl = LeaseTtl();
        *step = absl::StrCat("RenewLease(", group, ", ", owner, ", ",
                             ttl.has_value() ? absl::FormatDuration(*ttl) : "same", ")");
        return registry_.RenewLease(group, owner, ttl).status();
      }
      case 19: {
        const absl::Duration by = absl::Milliseconds(in_.ConsumeIntegralInRange<int>(0, 3000));
        clock_.Advance(by);
        *step = absl::StrCat("Advance(", absl::FormatDuration(by), ") + ExpireLeases()");
        const LeaseReapResult reaped = registry_.ExpireLeases();
        if (!reaped.failed.empty()) Fail("a lease release failed without store failures", "");
        return absl::OkStatus();
      }
      case 20: {
        const GroupId group = Id();
        const DomainId from = Id();
        const DomainId to = Id();
        const std::string owner = Owner();
        *step = absl::StrCat("ReplaceDomain(", group, ", ", from, ", ", to, ", ", owner, ")");
        return registry_.ReplaceDomain(group, from, to, owner).status();
      }
      case 21: {
        const DomainId domain = Id();
        const std::string owner = Owner();
        *step = absl::StrCat("Unmap(", domain, ", all, ", owner, ") + IovaRanges");
        absl::StatusOr<std::vector<IovaRange>> ranges = registry_.IovaRanges(domain);
        if (ranges.ok()) {
          for (size_t i = 0; i < ranges->size(); ++i) {
            const IovaRange& range = (*ranges)[i];
            if (range.size == 0 || (i > 0 && range.start < (*ranges)[i - 1].end())) {
              Fail("IovaRanges are not ascending, disjoint and non-empty", "");
            }
          }
        }
        return registry_.Unmap(domain, 0, Registry::kUnmapAll, owner).status();
      }
      case 22: {
        const GroupId group = Id();
        const std::string owner = Owner();
        std::optional<absl::Duration> ttl;
        if (in_.ConsumeBool()) ttl = LeaseTtl();
        const uint64_t stream = in_.ConsumeIntegralInRange<uint64_t>(0, 3);
        *step = absl::StrCat("BindLease(", group, ", ", owner, ", ",
                             ttl.has_value() ? absl::FormatDuration(*ttl) : "same", ", stream ",
                             stream, ")");
        return registry_.BindLease(group, owner, ttl, stream).status();
      }
      case 23: {
        const GroupId group = Id();
        const uint64_t stream = in_.ConsumeIntegralInRange<uint64_t>(0, 3);
        *step = absl::StrCat("ReleaseBoundLease(", group, ", stream ", stream, ")");
        return registry_.ReleaseBoundLease(group, stream).status();
      }
      default: {
        const std::string unit = Unit();
        *step = absl::StrCat("AddUnit(", unit, ")");
        UnitCaps caps;
        caps.max_rids = in_.ConsumeIntegralInRange<uint32_t>(0, 8);
        caps.iova_bits = in_.ConsumeIntegralInRange<uint32_t>(0, 64);
        caps.pgsize_bitmap = in_.ConsumeBool() ? kPage4K : in_.ConsumeIntegral<uint64_t>();
        return registry_.AddUnit(unit, caps).status();
      }
    }
  }

 private:
  template <typename T, size_t N>
  T Pick(const T (&values)[N]) {
    return values[in_.ConsumeIntegralInRange<size_t>(0, N - 1)];
  }
  std::string Unit() { return Pick(kUnits); }
  std::string Device() { return Pick(kDevices); }
  std::string Owner() { return Pick(kOwners); }
  DomainType Type() { return Pick(kTypes); }
  iommud::Rid Rid() { return in_.ConsumeIntegralInRange<iommud::Rid>(0, 20); }
  uint64_t Id() { return in_.ConsumeIntegralInRange<uint64_t>(0, 24); }
  // No lease, or around the allowed range [1s, 24h].
  absl::Duration LeaseTtl() {
    switch (in_.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: return absl::ZeroDuration();
      case 1: return absl::Milliseconds(in_.ConsumeIntegralInRange<int>(0, 4000));
      case 2: return absl::Hours(24) + absl::Milliseconds(in_.ConsumeIntegralInRange<int>(-1, 1));
      default: return absl::Nanoseconds(in_.ConsumeIntegral<int64_t>());
    }
  }
  // Page multiples near the bottom, near 2M boundaries, near the MSI window and the apertures'
  // ends, and now and then anything.
  uint64_t Address() {
    static constexpr uint64_t kBases[] = {0, 0x200000, 0x10000, 0xfee00000, 0xff000000,
                                          0xfff000};
    if (in_.ConsumeIntegralInRange<int>(0, 15) == 0) return in_.ConsumeIntegral<uint64_t>();
    return Pick(kBases) + in_.ConsumeIntegralInRange<uint64_t>(0, 7) * kPage4K;
  }
  uint64_t Size() {
    static constexpr uint64_t kSizes[] = {0, kPage4K, 2 * kPage4K, kPage2M, kPage2M + kPage4K,
                                          1u << 24};
    if (in_.ConsumeIntegralInRange<int>(0, 15) == 0) return in_.ConsumeIntegral<uint64_t>();
    return Pick(kSizes);
  }

  FuzzedDataProvider& in_;
  Registry& registry_;
  ManualClock& clock_;
};

}  // namespace
}  // namespace fuzz
}  // namespace iommud

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace iommud;        // NOLINT
  using namespace iommud::fuzz;  // NOLINT
  FuzzedDataProvider input(data, size);
  const bool emulated = input.ConsumeBool();
  InMemoryStateStore store;
  ManualClock clock;
  std::unique_ptr<IommuBackend> backend = NewBackend(emulated);
  std::unique_ptr<Registry> registry = NewRegistry(backend.get(), &store, &clock);
  AddUnits(registry.get());
  OpRunner runner(&input, registry.get(), &clock);
  for (int steps = 0; steps < 64 && input.remaining_bytes() > 0; ++steps) {
    const std::string before = Snapshot(*registry);
    std::string step;
    const absl::Status status = runner.RunOne(&step);
    Trace(step, status);
    CheckErrorHasReason(status, step);
    CheckUnchangedOnError(status, before, *registry, step);
    CheckConsistent(*registry, step);
  }
  if (registry->unrecorded_changes() != 0) Fail("unrecorded changes", "without store failures");

  // The store holds what the registry shows: recovering it onto fresh hardware gives it back.
  const std::string final_state = Snapshot(*registry);
  std::unique_ptr<IommuBackend> fresh = NewBackend(emulated);
  std::unique_ptr<Registry> recovered = NewRegistry(fresh.get(), &store, &clock);
  absl::StatusOr<RecoveryReport> report = recovered->Recover();
  if (!report.ok()) Fail("Recover failed", report.status().ToString());
  if (!report->repaired.empty() || !report->remaining.empty()) {
    Fail("Recover onto fresh hardware repaired something", final_state);
  }
  CheckConsistent(*recovered, "Recover");
  const std::string recovered_state = Snapshot(*recovered);
  if (recovered_state != final_state) {
    Fail("the recovered registry differs",
         absl::StrCat("before:\n", final_state, "recovered:\n", recovered_state));
  }
  return 0;
}
