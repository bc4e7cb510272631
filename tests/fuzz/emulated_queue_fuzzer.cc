// emulated_queue_fuzzer: the emulated IOMMU's memory image as an attacker (or a torn write) could
// leave it in the memory file. A valid image (two units, domains of every type, STEs, page tables
// with 4K/2M/1G leaves, a free list, queued events) is built once; each input overwrites words of
// it — header and queue indices, unit and domain table entries, command queue entries (consumed on
// re-attach), event queue entries (parsed by DrainFaults), stream tables and page-table pages — and
// re-attaches. The backend must refuse the image with DATA_LOSS (CORRUPT_MEMORY_FILE) or work:
// reads, DMA translations, fault draining and changes (alloc/attach/map/unmap/free) stay inside the
// memory, every error has a reason, and the image it leaves behind is accepted on the next
// re-attach.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "absl/strings/str_cat.h"
#include "core/backend/emulated/emulated_backend_for_testing.h"
#include "core/backend/emulated/emulated_format.h"
#include "core/backend/emulated/emulated_memory.h"
#include "core/error.h"
#include "tests/fuzz/fuzz_checks.h"

namespace iommud {
namespace fuzz {
namespace {

using namespace emu;  // NOLINT: the format's constants

// The smallest memory the backend accepts: the fixed tables and 64 pages to allocate from.
constexpr uint64_t kMemoryBytes = kAllocArea + 64 * kPage;

void Check(const absl::Status& status, absl::string_view step) {
  if (!status.ok()) Fail(absl::StrCat(step, " failed on the seed image"), status.ToString());
}

std::unique_ptr<EmulatedMemory> NewMemory() {
  bool existed = false;
  absl::StatusOr<std::unique_ptr<EmulatedMemory>> memory =
      EmulatedMemory::Open("", kMemoryBytes, &existed);
  if (!memory.ok()) Fail("cannot allocate memory", memory.status().ToString());
  return *std::move(memory);
}

// Copies `memory` out (the backend using it must be quiescent).
std::vector<uint8_t> ImageOf(const EmulatedMemory& memory) {
  std::vector<uint8_t> image(memory.size());
  memory.ReadBytes(0, image.data(), image.size());
  return image;
}

// The seed image, built once through the backend itself.
const std::vector<uint8_t>& SeedImage() {
  static const std::vector<uint8_t>* const image = [] {
    std::unique_ptr<EmulatedMemory> owned = NewMemory();
    EmulatedMemory* memory = owned.get();
    absl::StatusOr<std::unique_ptr<IommuBackend>> started =
        NewEmulatedBackendOnMemoryForTesting(std::move(owned), /*existed=*/false,
                                             {{"iotlb_entries", "4"}});
    if (!started.ok()) Fail("cannot format", started.status().ToString());
    IommuBackend& backend = **started;
    UnitCaps u0;
    u0.max_rids = 32;
    UnitCaps u1;
    u1.pgsize_bitmap = kPage4K;
    u1.iova_bits = 32;
    u1.max_rids = 8;
    Check(backend.AddUnit("u0", u0), "AddUnit u0");
    Check(backend.AddUnit("u1", u1), "AddUnit u1");
    Check(backend.AllocDomain("u0", 1, DomainType::kBlocked), "AllocDomain 1");
    Check(backend.AllocDomain("u0", 2, DomainType::kIdentity), "AllocDomain 2");
    Check(backend.AllocDomain("u0", 3, DomainType::kUnmanaged), "AllocDomain 3");
    Check(backend.AllocDomain("u0", 4, DomainType::kDma), "AllocDomain 4");
    Check(backend.AllocDomain("u1", 5, DomainType::kDmaFq), "AllocDomain 5");
    Check(backend.AttachRid("u0", 1, 1), "AttachRid 1");
    Check(backend.AttachRid("u0", 2, 2), "AttachRid 2");
    Check(backend.AttachRid("u0", 3, 3), "AttachRid 3");
    Check(backend.AttachRid("u0", 4, 3), "AttachRid 4");
    Check(backend.AttachRid("u1", 0, 5), "AttachRid u1/0");
    Check(backend.Map(3, 0x1000, 0x80000000, kPage4K, kProtRead), "Map 4K");
    Check(backend.Map(3, 0x200000, 0x40000000, kPage2M, kProtRead | kProtWrite), "Map 2M");
    Check(backend.Map(3, 0x40000000, 0xc0000000, kPage1G, kProtWrite), "Map 1G");
    Check(backend.Map(5, 0x3000, 0x5000, 2 * kPage4K, kProtRead), "Map u1");
    // A table freed again: the free list is not empty.
    Check(backend.Map(4, 0x7f0000000, 0x1000, kPage4K, kProtRead), "Map 4");
    Check(backend.Unmap(4, 0x7f0000000, kPage4K).status(), "Unmap 4");
    Check(backend.InvalidateIotlb(4, 0, 0), "InvalidateIotlb 4");
    // Translations fill the IOTLB and faults queue events that nobody drains.
    backend.Translate("u0", 3, 0x1008, kProtRead);
    backend.Translate("u0", 1, 0x1000, kProtRead);    // blocked
    backend.Translate("u0", 9, 0x1000, kProtRead);    // unknown RID
    backend.Translate("u0", 3, 0x9000, kProtRead);    // no mapping
    backend.Translate("u0", 3, 0x1000, kProtWrite);   // permission
    backend.Translate("u1", 0, 0x3000, kProtRead);
    return new std::vector<uint8_t>(ImageOf(*memory));
  }();
  return *image;
}

// Where the input writes: `words` 8-byte words at the start of each of `pages` pages from `start`.
struct Region {
  uint64_t start;
  uint64_t pages;
  uint64_t words;
  uint64_t count() const { return pages * words; }
  uint64_t address(uint64_t index) const {
    return start + index / words * kPage + index % words * 8;
  }
};

// The header, the unit and domain table entries in use, the first entries of both queues, the
// whole allocation area (stream tables, page tables, free pages), and the first words of each of
// its pages (the free list's links, the low descriptors of tables).
constexpr Region kRegions[] = {
    {0, 1, 12},
    {kUnitTable, 1, 2 * kUnitEntry / 8},
    {kDomainTable, 1, 6 * kDomainEntry / 8},
    {kCmdq, 1, 16 * kQueueEntry / 8},
    {kEvtq, 1, 16 * kQueueEntry / 8},
    {kAllocArea, 64, kPage / 8},
    {kAllocArea, 64, 8},
};

uint64_t Value(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 4)) {
    case 0: return in.ConsumeIntegralInRange<uint64_t>(0, 16);
    case 1:  // a page of the allocation area with descriptor bits
      return kAllocArea + in.ConsumeIntegralInRange<uint64_t>(0, 70) * kPage +
             in.ConsumeIntegralInRange<uint64_t>(0, 15);
    case 2: return in.ConsumeIntegralInRange<uint64_t>(0, 8) << 8 | in.ConsumeIntegral<uint8_t>();
    default: return in.ConsumeIntegral<uint64_t>();
  }
}

void CheckReason(const absl::Status& status, absl::string_view step) {
  CheckErrorHasReason(status, step);
}

// Drains the event queue: every fault names a unit the backend has, a known reason and access.
void DrainFaults(IommuBackend& backend) {
  for (const FaultRecord& fault : backend.DrainFaults()) {
    if (!backend.ReadRids(fault.unit).ok() || fault.reason < FaultReason::kUnknownRid ||
        fault.reason > FaultReason::kPermission ||
        (fault.access & ~uint32_t{kProtRead | kProtWrite}) != 0) {
      Fail("DrainFaults returned a fault the device cannot have reported",
           absl::StrCat("unit '", fault.unit, "' reason ", static_cast<int>(fault.reason),
                        " access ", fault.access));
    }
  }
}

// Uses an accepted backend the way the registry would: every read, then changes.
void Exercise(IommuBackend& backend, FuzzedDataProvider& in) {
  const std::vector<DomainId> domains = backend.ReadDomains();
  for (DomainId id : domains) CheckReason(backend.ReadMappings(id).status(), "ReadMappings");
  for (const char* unit : {"u0", "u1"}) {
    absl::StatusOr<std::vector<RidEntry>> rids = backend.ReadRids(unit);
    CheckReason(rids.status(), "ReadRids");
    if (!rids.ok()) continue;
    for (const RidEntry& entry : *rids) {
      if (!std::binary_search(domains.begin(), domains.end(), entry.domain)) {
        Fail("an accepted image has an STE on an unknown domain",
             absl::StrCat(unit, " RID ", entry.rid, " -> ", entry.domain));
      }
    }
  }
  backend.Stats();
  DrainFaults(backend);
  const char* const kUnits[] = {"u0", "u1", "u2"};
  while (in.remaining_bytes() > 0) {
    const std::string unit = kUnits[in.ConsumeIntegralInRange<int>(0, 2)];
    const Rid rid = in.ConsumeIntegralInRange<Rid>(0, 40);
    const DomainId domain = in.ConsumeIntegralInRange<DomainId>(0, 8);
    const uint64_t iova = in.ConsumeIntegralInRange<uint64_t>(0, 3) * kPage1G +
                          in.ConsumeIntegralInRange<uint64_t>(0, 3) * kPage2M +
                          in.ConsumeIntegralInRange<uint64_t>(0, 3) * kPage4K;
    const uint64_t size = kPage4K << (9 * in.ConsumeIntegralInRange<int>(0, 2));
    switch (in.ConsumeIntegralInRange<int>(0, 9)) {
      case 0:
        backend.Translate(unit, rid, iova + in.ConsumeIntegralInRange<uint64_t>(0, 4095),
                          in.ConsumeIntegralInRange<uint32_t>(1, 3));
        break;
      case 1: DrainFaults(backend); break;
      case 2: {
        UnitCaps caps;
        caps.max_rids = in.ConsumeIntegralInRange<uint32_t>(1, 300);
        CheckReason(backend.AddUnit(unit, caps), "AddUnit");
        break;
      }
      case 3: {
        const auto type = static_cast<DomainType>(in.ConsumeIntegralInRange<int>(0, 4));
        CheckReason(backend.AllocDomain(unit, domain, type), "AllocDomain");
        break;
      }
      case 4: CheckReason(backend.FreeDomain(domain), "FreeDomain"); break;
      case 5: CheckReason(backend.AttachRid(unit, rid, domain), "AttachRid"); break;
      case 6: CheckReason(backend.ReleaseRid(unit, rid), "ReleaseRid"); break;
      case 7:
        CheckReason(backend.Map(domain, iova, iova ^ (uint64_t{1} << 40), size,
                                in.ConsumeIntegralInRange<uint32_t>(1, 3)),
                    "Map");
        break;
      case 8: CheckReason(backend.Unmap(domain, iova, size).status(), "Unmap"); break;
      default: CheckReason(backend.InvalidateIotlb(domain, iova, size), "InvalidateIotlb"); break;
    }
  }
  for (DomainId id : backend.ReadDomains()) {
    CheckReason(backend.ReadMappings(id).status(), "ReadMappings");
  }
}

}  // namespace
}  // namespace fuzz
}  // namespace iommud

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace iommud;        // NOLINT
  using namespace iommud::fuzz;  // NOLINT
  FuzzedDataProvider in(data, size);
  std::unique_ptr<EmulatedMemory> owned = NewMemory();
  EmulatedMemory* memory = owned.get();
  const std::vector<uint8_t>& seed = SeedImage();
  memory->WriteBytes(0, seed.data(), seed.size());
  const int writes = in.ConsumeIntegralInRange<int>(0, 16);
  for (int i = 0; i < writes; ++i) {
    const Region& region = kRegions[in.ConsumeIntegralInRange<size_t>(0, std::size(kRegions) - 1)];
    const uint64_t at = region.address(in.ConsumeIntegralInRange<uint64_t>(0, region.count() - 1));
    memory->Write64(at, Value(in));
  }

  absl::StatusOr<std::unique_ptr<IommuBackend>> backend =
      NewEmulatedBackendOnMemoryForTesting(std::move(owned), /*existed=*/true,
                                           {{"iotlb_entries", "4"}});
  if (!backend.ok()) {
    if (backend.status().code() != absl::StatusCode::kDataLoss ||
        ErrorReason(backend.status()) != "CORRUPT_MEMORY_FILE") {
      Fail("a bad image must be refused with DATA_LOSS CORRUPT_MEMORY_FILE",
           backend.status().ToString());
    }
    return 0;
  }
  Exercise(**backend, in);

  // What the accepted backend left behind is an image it accepts again.
  std::unique_ptr<EmulatedMemory> copy = NewMemory();
  const std::vector<uint8_t> after = ImageOf(*memory);
  copy->WriteBytes(0, after.data(), after.size());
  absl::StatusOr<std::unique_ptr<IommuBackend>> again =
      NewEmulatedBackendOnMemoryForTesting(std::move(copy), /*existed=*/true);
  if (!again.ok()) {
    Fail("the image an accepted backend left behind is refused", again.status().ToString());
  }
  return 0;
}
