#include "core/backend/emulated/emulated_page_table.h"

#include <array>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/backend/emulated/emulated_format.h"
#include "core/backend/leaf_mapping.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/fault_injector.h"
#include "core/status_macros.h"

namespace iommud {

using namespace emu;  // NOLINT: the format's constants

namespace {
constexpr uint64_t kInputLimit = uint64_t{1} << kInputBits;
std::string Hex(uint64_t value) { return absl::StrCat("0x", absl::Hex(value)); }
uint64_t ProtBits(uint32_t prot) {
  return ((prot & kProtRead) ? kPteRead : 0) | ((prot & kProtWrite) ? kPteWrite : 0);
}
uint32_t ProtOf(uint64_t pte) {
  uint32_t prot = 0;
  if (pte & kPteRead) prot |= kProtRead;
  if (pte & kPteWrite) prot |= kProtWrite;
  return prot;
}
bool IsLeaf(uint64_t pte, int level) {
  return (pte & kPteValid) && (level == kLevels - 1 || !(pte & kPteTable));
}
}  // namespace

absl::StatusOr<uint64_t> PagePool::Alloc() {
  if (faults_ != nullptr) RETURN_IF_ERROR(faults_->Hit("pgtable.alloc"));
  uint64_t page = memory_->Read64(kHdrFreeList);
  if (page != 0) {
    memory_->Write64(kHdrFreeList, memory_->Read64(page));
  } else {
    page = memory_->Read64(kHdrBump);
    if (page + kPage > memory_->size()) {
      return Error(absl::StatusCode::kResourceExhausted, reason::kHwMemoryFull,
                   "the emulated IOMMU's memory is full");
    }
    memory_->Write64(kHdrBump, page + kPage);
  }
  memory_->Zero(page, kPage);
  memory_->Write64(kHdrPagesInUse, memory_->Read64(kHdrPagesInUse) + 1);
  return page;
}

absl::StatusOr<uint64_t> PagePool::AllocContiguous(uint64_t pages) {
  const uint64_t start = memory_->Read64(kHdrBump);
  if (start + pages * kPage > memory_->size()) {
    return Error(absl::StatusCode::kResourceExhausted, reason::kHwMemoryFull,
                 "the emulated IOMMU's memory is full");
  }
  memory_->Write64(kHdrBump, start + pages * kPage);
  memory_->Zero(start, pages * kPage);
  return start;
}

void PagePool::Free(uint64_t pa) {
  memory_->Write64(pa, memory_->Read64(kHdrFreeList));
  memory_->Write64(kHdrFreeList, pa);
  memory_->Write64(kHdrPagesInUse, memory_->Read64(kHdrPagesInUse) - 1);
}

uint64_t PagePool::in_use() const { return memory_->Read64(kHdrPagesInUse); }

bool EmulatedPageTable::TableEmpty(uint64_t table) const {
  for (uint64_t i = 0; i < 512; ++i) {
    if (Entry(table, i) & kPteValid) return false;
  }
  return true;
}

absl::Status EmulatedPageTable::MapLeaf(uint64_t iova, uint64_t paddr, int leaf_level,
                                        uint32_t prot) {
  uint64_t table = root_;
  // The first table this call creates, so that a failure takes the new subtree back out.
  uint64_t created_parent = 0, created_index = 0, created_table = 0;
  int created_level = 0;
  auto undo = [&](absl::Status status) {
    if (created_table != 0) {
      SetEntry(created_parent, created_index, 0);
      FreeTable(created_table, created_level);
    }
    return status;
  };
  for (int level = 0; level < leaf_level; ++level) {
    const uint64_t index = IndexAt(iova, level);
    uint64_t pte = Entry(table, index);
    if (IsLeaf(pte, level)) {
      return undo(Error(absl::StatusCode::kAlreadyExists, reason::kMappingExists,
                        absl::StrCat(Hex(iova), " is inside a mapped block"),
                        {{"iova", Hex(iova)}}));
    }
    if (!(pte & kPteValid)) {
      absl::StatusOr<uint64_t> page = pool_->Alloc();
      if (!page.ok()) return undo(page.status());
      if (created_table == 0) {
        created_parent = table;
        created_index = index;
        created_table = *page;
        created_level = level + 1;
      }
      pte = *page | kPteTable | kPteValid;
      SetEntry(table, index, pte);
    }
    table = pte & kPteAddrMask;
  }
  const uint64_t index = IndexAt(iova, leaf_level);
  if (Entry(table, index) & kPteValid) {
    return undo(Error(absl::StatusCode::kAlreadyExists, reason::kMappingExists,
                      absl::StrCat(Hex(iova), " is already mapped"), {{"iova", Hex(iova)}}));
  }
  SetEntry(table, index,
           (paddr & kPteAddrMask) | ProtBits(prot) | kPteValid |
               (leaf_level == kLevels - 1 ? kPteTable : 0));
  return absl::OkStatus();
}

bool EmulatedPageTable::UnmapLeaf(uint64_t iova, int leaf_level) {
  std::array<uint64_t, kLevels> path{};
  uint64_t table = root_;
  for (int level = 0; level < leaf_level; ++level) {
    path[level] = table;
    const uint64_t pte = Entry(table, IndexAt(iova, level));
    if (!(pte & kPteValid) || IsLeaf(pte, level)) return false;
    table = pte & kPteAddrMask;
  }
  if (!IsLeaf(Entry(table, IndexAt(iova, leaf_level)), leaf_level)) return false;
  SetEntry(table, IndexAt(iova, leaf_level), 0);
  for (int level = leaf_level - 1; level >= 0 && TableEmpty(table); --level) {
    // Unlinked before it is freed: a crash in between leaks the page, never leaves it both in the
    // table and on the free list.
    SetEntry(path[level], IndexAt(iova, level), 0);
    pool_->Free(table);
    table = path[level];
  }
  return true;
}

absl::Status EmulatedPageTable::Map(uint64_t iova, uint64_t paddr, uint64_t size, uint32_t prot) {
  if (size == 0 || iova >= kInputLimit || size > kInputLimit - iova) {
    return Error(absl::StatusCode::kOutOfRange, reason::kOutOfAperture,
                 absl::StrCat("[", Hex(iova), ", +", Hex(size), ") is beyond the 48-bit table"),
                 {{"iova", Hex(iova)}, {"size", Hex(size)}});
  }
  return MapAsLeaves(
      pgsize_bitmap_, iova, paddr, size,
      [&](uint64_t at, uint64_t to, int level) { return MapLeaf(at, to, level, prot); },
      [&](uint64_t at, int level) { UnmapLeaf(at, level); });
}

template <typename Visit>
void EmulatedPageTable::ForEachLeaf(uint64_t table, int level, uint64_t base, uint64_t start,
                                    uint64_t end, Visit&& visit) const {
  const uint64_t span = SpanOf(level);
  const uint64_t first = start <= base ? 0 : (start - base) / span;
  for (uint64_t i = first; i < 512; ++i) {
    const uint64_t entry_base = base + i * span;
    if (entry_base >= end) break;
    const uint64_t pte = Entry(table, i);
    if (!(pte & kPteValid)) continue;
    if (IsLeaf(pte, level)) {
      visit(entry_base, level, pte);
    } else {
      ForEachLeaf(pte & kPteAddrMask, level + 1, entry_base, start, end, visit);
    }
  }
}

absl::StatusOr<uint64_t> EmulatedPageTable::Unmap(uint64_t iova, uint64_t size) {
  if (size == 0 || iova >= kInputLimit) return 0;
  const uint64_t end = size > kInputLimit - iova ? kInputLimit : iova + size;
  std::vector<std::pair<uint64_t, int>> leaves;
  bool splits = false;
  ForEachLeaf(root_, 0, 0, iova, end, [&](uint64_t leaf_iova, int level, uint64_t) {
    if (leaf_iova < iova || leaf_iova + SpanOf(level) > end) splits = true;
    leaves.emplace_back(leaf_iova, level);
  });
  if (splits) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kUnmapSplit,
                 absl::StrCat("[", Hex(iova), ", +", Hex(size), ") would split a leaf"),
                 {{"iova", Hex(iova)}, {"size", Hex(size)}});
  }
  uint64_t bytes = 0;
  for (const auto& [leaf_iova, level] : leaves) {
    if (UnmapLeaf(leaf_iova, level)) bytes += SpanOf(level);
  }
  return bytes;
}

std::optional<Mapping> EmulatedPageTable::Walk(uint64_t iova) const {
  if (iova >= kInputLimit) return std::nullopt;
  uint64_t table = root_;
  for (int level = 0; level < kLevels; ++level) {
    const uint64_t pte = Entry(table, IndexAt(iova, level));
    if (!(pte & kPteValid)) return std::nullopt;
    if (IsLeaf(pte, level)) {
      const uint64_t page = SpanOf(level);
      return Mapping{iova & ~(page - 1), pte & kPteAddrMask, page, ProtOf(pte)};
    }
    table = pte & kPteAddrMask;
  }
  return std::nullopt;
}

std::vector<Mapping> EmulatedPageTable::Leaves() const {
  std::vector<Mapping> leaves;
  ForEachLeaf(root_, 0, 0, 0, kInputLimit, [&](uint64_t iova, int level, uint64_t pte) {
    leaves.push_back(Mapping{iova, pte & kPteAddrMask, SpanOf(level), ProtOf(pte)});
  });
  return leaves;
}

void EmulatedPageTable::FreeTable(uint64_t table, int level) {
  if (level < kLevels - 1) {
    for (uint64_t i = 0; i < 512; ++i) {
      const uint64_t pte = Entry(table, i);
      if ((pte & kPteValid) && !IsLeaf(pte, level)) FreeTable(pte & kPteAddrMask, level + 1);
    }
  }
  pool_->Free(table);
}

void EmulatedPageTable::FreeAll() { FreeTable(root_, 0); }

bool EmulatedPageTable::ClaimTables(uint64_t table, int level,
                                    const std::function<bool(uint64_t)>& claim,
                                    uint64_t* pages) const {
  if (!claim(table)) return false;
  ++*pages;
  for (uint64_t i = 0; i < 512; ++i) {
    const uint64_t pte = Entry(table, i);
    if (!(pte & kPteValid)) continue;
    const uint64_t address = pte & kPteAddrMask;
    if (IsLeaf(pte, level)) {
      // No 512G blocks in this format; a block's output is aligned to its size.
      if (level == 0 || address % SpanOf(level) != 0) return false;
      continue;
    }
    if (!ClaimTables(address, level + 1, claim, pages)) return false;
  }
  return true;
}

std::optional<uint64_t> EmulatedPageTable::ClaimTablePages(
    const std::function<bool(uint64_t page)>& claim) const {
  uint64_t pages = 0;
  if (!ClaimTables(root_, 0, claim, &pages)) return std::nullopt;
  return pages;
}

std::optional<uint64_t> EmulatedPageTable::CountTablePages(uint64_t begin, uint64_t end) const {
  std::set<uint64_t> seen;
  return ClaimTablePages([&](uint64_t page) {
    return page >= begin && page < end && page % kPage == 0 && seen.insert(page).second;
  });
}

}  // namespace iommud
