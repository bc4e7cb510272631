// Page tables of the emulated IOMMU, in EmulatedMemory (format: emulated_format.h), and the
// allocator of 4 KiB pages they are made of. Not thread-safe: the backend's lock guards them.
#ifndef IOMMUD_CORE_BACKEND_EMULATED_EMULATED_PAGE_TABLE_H_
#define IOMMUD_CORE_BACKEND_EMULATED_EMULATED_PAGE_TABLE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/backend/emulated/emulated_memory.h"
#include "core/fault_injector.h"
#include "core/types.h"

namespace iommud {

// Zeroed 4 KiB pages from the allocation area: a bump pointer, then a free list threaded through
// the free pages' first words. Its state is in the header, so it survives a re-open.
class PagePool {
 public:
  // `faults` (not owned; may be null) is hit at pgtable.alloc before each page allocation.
  explicit PagePool(EmulatedMemory* memory, FaultInjector* faults = nullptr)
      : memory_(memory), faults_(faults) {}
  // RESOURCE_EXHAUSTED (HW_MEMORY_FULL) when the memory is full.
  absl::StatusOr<uint64_t> Alloc();
  // Several contiguous pages (never freed; stream tables).
  absl::StatusOr<uint64_t> AllocContiguous(uint64_t pages);
  void Free(uint64_t pa);
  uint64_t in_use() const;

 private:
  EmulatedMemory* const memory_;
  FaultInjector* const faults_;
};

class EmulatedPageTable {
 public:
  // The table whose root page is at `root`; page sizes from `pgsize_bitmap`.
  EmulatedPageTable(EmulatedMemory* memory, PagePool* pool, uint64_t root, uint64_t pgsize_bitmap)
      : memory_(memory), pool_(pool), root_(root), pgsize_bitmap_(pgsize_bitmap) {}

  // Same contract as IommuBackend::Map (all or nothing, largest pages that fit).
  absl::Status Map(uint64_t iova, uint64_t paddr, uint64_t size, uint32_t prot);
  // Same contract as IommuBackend::Unmap (whole leaves only, holes skipped); frees empty tables.
  absl::StatusOr<uint64_t> Unmap(uint64_t iova, uint64_t size);
  // The leaf translating `iova`, walked from memory.
  std::optional<Mapping> Walk(uint64_t iova) const;
  // Every leaf in IOVA order.
  std::vector<Mapping> Leaves() const;
  // Frees every page of the table, the root included.
  void FreeAll();
  // Checks an image read from a memory file before anything walks it: no leaf at level 0, every
  // block aligned to its size, and every table page (root included) accepted by `claim`, which is
  // offered a page once per descriptor pointing at it (so a claim that accepts each page once
  // refuses tables shared within or between page tables). Returns the number of table pages, or
  // nullopt at the first refusal or bad descriptor.
  std::optional<uint64_t> ClaimTablePages(const std::function<bool(uint64_t page)>& claim) const;
  // ClaimTablePages accepting each page-aligned page of [begin, end) once.
  std::optional<uint64_t> CountTablePages(uint64_t begin, uint64_t end) const;

 private:
  uint64_t Entry(uint64_t table, uint64_t index) const { return memory_->Read64(table + 8 * index); }
  void SetEntry(uint64_t table, uint64_t index, uint64_t value) {
    memory_->Write64(table + 8 * index, value);
  }
  bool TableEmpty(uint64_t table) const;
  absl::Status MapLeaf(uint64_t iova, uint64_t paddr, int level, uint32_t prot);
  bool UnmapLeaf(uint64_t iova, int level);
  template <typename Visit>
  void ForEachLeaf(uint64_t table, int level, uint64_t base, uint64_t start, uint64_t end,
                   Visit&& visit) const;
  void FreeTable(uint64_t table, int level);
  bool ClaimTables(uint64_t table, int level, const std::function<bool(uint64_t)>& claim,
                   uint64_t* pages) const;

  EmulatedMemory* const memory_;
  PagePool* const pool_;
  const uint64_t root_;
  const uint64_t pgsize_bitmap_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_EMULATED_EMULATED_PAGE_TABLE_H_
