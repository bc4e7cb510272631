// PageTable: a 4-level radix page table (x86-64 / ARM LPAE shaped): 512 entries per table, 4K
// granule, leaves at level 3 (4K pages), level 2 (2M blocks) and level 1 (1G blocks). Covers a
// 48-bit input address space. Not thread-safe: the owning domain's lock guards it.
#ifndef IOMMUD_CORE_BACKEND_SOFTWARE_PAGE_TABLE_H_
#define IOMMUD_CORE_BACKEND_SOFTWARE_PAGE_TABLE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/fault_injector.h"
#include "core/types.h"

namespace iommud {

class PageTable {
 public:
  static constexpr int kLevels = 4;
  static constexpr int kEntries = 512;
  static constexpr uint32_t kInputBits = 48;

  // `pgsize_bitmap`: the page sizes Map may use (a subset of 4K|2M|1G).
  // `table_pages`: counts the table pages in use (the root too, allocated with the first
  // mapping and freed with the last); may be null. `faults` (not owned; may be null) is hit at
  // pgtable.alloc before each table page allocation.
  PageTable(uint64_t pgsize_bitmap, std::atomic<uint64_t>* table_pages,
            FaultInjector* faults = nullptr);
  ~PageTable();
  PageTable(const PageTable&) = delete;
  PageTable& operator=(const PageTable&) = delete;

  // Maps [iova, iova+size) -> [paddr, paddr+size) with `prot`, with the largest allowed page sizes
  // that fit the alignment of iova and paddr and the remaining size. All or nothing:
  // ALREADY_EXISTS on an overlap, INVALID_ARGUMENT if no allowed page size fits, OUT_OF_RANGE
  // beyond 48 bits.
  absl::Status Map(uint64_t iova, uint64_t paddr, uint64_t size, uint32_t prot);

  // Removes the leaves inside [iova, iova+size) and returns their bytes; holes are skipped.
  // INVALID_ARGUMENT (nothing removed) if a leaf straddles the range's ends. Table pages that
  // become empty are freed.
  absl::StatusOr<uint64_t> Unmap(uint64_t iova, uint64_t size);

  // The leaf translating `iova`, if any (its iova/paddr/size are the whole leaf's).
  std::optional<Mapping> Lookup(uint64_t iova) const;

  // Every leaf in IOVA order.
  std::vector<Mapping> Leaves() const;

  // Page size of a leaf at `level` (1: 1G, 2: 2M, 3: 4K).
  static uint64_t LeafSize(int level);

 private:
  struct Table;
  struct Entry {
    // A leaf when `leaf` is set: paddr and prot below. A table when `table` is set.
    bool leaf = false;
    uint32_t prot = 0;
    uint64_t paddr = 0;
    std::unique_ptr<Table> table;
  };
  struct Table {
    std::array<Entry, kEntries> entries;
    uint32_t used = 0;  // non-empty entries
  };

  static int IndexAt(uint64_t iova, int level);
  static uint64_t SpanOf(int level);  // bytes one entry at `level` covers
  std::unique_ptr<Table> NewTable();
  // The pgtable.alloc injection point (OK without an injector).
  absl::Status HitAlloc();
  void FreeTable(std::unique_ptr<Table> table);
  // A table that became empty: kept for reuse (it is all-empty already), up to kSpareTables.
  void RecycleTable(std::unique_ptr<Table> table);
  // Installs one leaf; ALREADY_EXISTS if anything is in the way.
  absl::Status MapLeaf(uint64_t iova, uint64_t paddr, int leaf_level, uint32_t prot);
  // Removes the leaf at exactly (iova, leaf_level), pruning empty tables; false if none.
  bool UnmapLeaf(uint64_t iova, int leaf_level);
  // Calls `visit(leaf_iova, level, entry)` for each leaf overlapping [start, end), in order.
  template <typename Visit>
  void ForEachLeaf(const Table& table, int level, uint64_t base, uint64_t start, uint64_t end,
                   Visit&& visit) const;

  const uint64_t pgsize_bitmap_;
  std::atomic<uint64_t>* const table_pages_;
  FaultInjector* const faults_;  // not owned; may be null
  // Empty tables pruned by Unmap, reused by Map: map/unmap churn allocates nothing. Not counted in
  // table_pages (they hold no entries).
  static constexpr size_t kSpareTables = 16;
  std::vector<std::unique_ptr<Table>> spare_;
  std::unique_ptr<Table> root_;  // null while the table maps nothing
};

}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_SOFTWARE_PAGE_TABLE_H_
