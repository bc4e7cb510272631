#include "core/backend/software/page_table.h"

#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/backend/leaf_mapping.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/fault_injector.h"
#include "core/status_macros.h"

namespace iommud {

namespace {
constexpr uint64_t kInputLimit = uint64_t{1} << PageTable::kInputBits;
std::string Hex(uint64_t value) { return absl::StrCat("0x", absl::Hex(value)); }
}  // namespace

PageTable::PageTable(uint64_t pgsize_bitmap, std::atomic<uint64_t>* table_pages,
                     FaultInjector* faults)
    : pgsize_bitmap_(pgsize_bitmap), table_pages_(table_pages), faults_(faults) {}

absl::Status PageTable::HitAlloc() {
  return faults_ == nullptr ? absl::OkStatus() : faults_->Hit("pgtable.alloc");
}

PageTable::~PageTable() { FreeTable(std::move(root_)); }

uint64_t PageTable::SpanOf(int level) { return uint64_t{1} << (12 + 9 * (kLevels - 1 - level)); }
uint64_t PageTable::LeafSize(int level) { return SpanOf(level); }
int PageTable::IndexAt(uint64_t iova, int level) {
  return static_cast<int>((iova >> (12 + 9 * (kLevels - 1 - level))) & (kEntries - 1));
}

std::unique_ptr<PageTable::Table> PageTable::NewTable() {
  if (table_pages_ != nullptr) table_pages_->fetch_add(1, std::memory_order_relaxed);
  if (spare_.empty()) return std::make_unique<Table>();
  std::unique_ptr<Table> table = std::move(spare_.back());
  spare_.pop_back();
  return table;
}

void PageTable::RecycleTable(std::unique_ptr<Table> table) {
  if (table_pages_ != nullptr) table_pages_->fetch_sub(1, std::memory_order_relaxed);
  if (spare_.size() < kSpareTables) spare_.push_back(std::move(table));
}

void PageTable::FreeTable(std::unique_ptr<Table> table) {
  if (table == nullptr) return;
  for (Entry& entry : table->entries) FreeTable(std::move(entry.table));
  if (table_pages_ != nullptr) table_pages_->fetch_sub(1, std::memory_order_relaxed);
}

absl::Status PageTable::MapLeaf(uint64_t iova, uint64_t paddr, int leaf_level, uint32_t prot) {
  // Tables this call creates, so that a failed allocation leaves the table as it was.
  std::array<std::pair<Table*, int>, kLevels> created_in{};  // (parent table, its level)
  int created = 0;
  auto undo = [&](absl::Status status) {
    for (int i = created - 1; i >= 0; --i) {
      auto [parent, level] = created_in[i];
      Entry& entry = parent->entries[IndexAt(iova, level)];
      RecycleTable(std::move(entry.table));
      entry = Entry();
      --parent->used;
    }
    if (root_ != nullptr && root_->used == 0) RecycleTable(std::move(root_));
    return status;
  };
  if (root_ == nullptr) {  // an unused domain costs no table
    RETURN_IF_ERROR(HitAlloc());
    root_ = NewTable();
  }
  Table* table = root_.get();
  for (int level = 0; level < leaf_level; ++level) {
    Entry& entry = table->entries[IndexAt(iova, level)];
    if (entry.leaf) {
      return Error(absl::StatusCode::kAlreadyExists, reason::kMappingExists,
                   absl::StrCat(Hex(iova), " is inside a mapped block"), {{"iova", Hex(iova)}});
    }
    if (entry.table == nullptr) {
      if (absl::Status status = HitAlloc(); !status.ok()) {
        return undo(status);
      }
      entry.table = NewTable();
      ++table->used;
      created_in[created++] = {table, level};
    }
    table = entry.table.get();
  }
  Entry& slot = table->entries[IndexAt(iova, leaf_level)];
  if (slot.leaf || slot.table != nullptr) {
    return Error(absl::StatusCode::kAlreadyExists, reason::kMappingExists,
                 absl::StrCat(Hex(iova), " is already mapped"), {{"iova", Hex(iova)}});
  }
  slot.leaf = true;
  slot.paddr = paddr;
  slot.prot = prot;
  ++table->used;
  return absl::OkStatus();
}

bool PageTable::UnmapLeaf(uint64_t iova, int leaf_level) {
  // Remember the path to prune tables that become empty.
  std::array<Table*, kLevels> path{};
  Table* table = root_.get();
  if (table == nullptr) return false;
  for (int level = 0; level < leaf_level; ++level) {
    path[level] = table;
    Entry& entry = table->entries[IndexAt(iova, level)];
    if (entry.table == nullptr) return false;
    table = entry.table.get();
  }
  Entry& slot = table->entries[IndexAt(iova, leaf_level)];
  if (!slot.leaf) return false;
  slot = Entry();
  --table->used;
  for (int level = leaf_level - 1; level >= 0 && table->used == 0; --level) {
    Entry& parent = path[level]->entries[IndexAt(iova, level)];
    RecycleTable(std::move(parent.table));  // empty: its children were pruned before it
    parent = Entry();
    --path[level]->used;
    table = path[level];
  }
  if (root_->used == 0) RecycleTable(std::move(root_));  // an empty table holds no pages
  return true;
}

absl::Status PageTable::Map(uint64_t iova, uint64_t paddr, uint64_t size, uint32_t prot) {
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
void PageTable::ForEachLeaf(const Table& table, int level, uint64_t base, uint64_t start,
                            uint64_t end, Visit&& visit) const {
  const uint64_t span = SpanOf(level);
  const int first = start <= base ? 0 : static_cast<int>((start - base) / span);
  for (int i = first; i < kEntries; ++i) {
    const uint64_t entry_base = base + static_cast<uint64_t>(i) * span;
    if (entry_base >= end) break;
    const Entry& entry = table.entries[i];
    if (entry.leaf) {
      visit(entry_base, level, entry);
    } else if (entry.table != nullptr) {
      ForEachLeaf(*entry.table, level + 1, entry_base, start, end, visit);
    }
  }
}

absl::StatusOr<uint64_t> PageTable::Unmap(uint64_t iova, uint64_t size) {
  if (size == 0 || iova >= kInputLimit || root_ == nullptr) return 0;
  const uint64_t end = size > kInputLimit - iova ? kInputLimit : iova + size;
  std::vector<std::pair<uint64_t, int>> leaves;
  bool splits = false;
  uint64_t split_at = 0;
  ForEachLeaf(*root_, 0, 0, iova, end, [&](uint64_t leaf_iova, int level, const Entry&) {
    if (leaf_iova < iova || leaf_iova + LeafSize(level) > end) {
      if (!splits) split_at = leaf_iova;
      splits = true;
    }
    leaves.emplace_back(leaf_iova, level);
  });
  if (splits) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kUnmapSplit,
                 absl::StrCat("[", Hex(iova), ", +", Hex(size), ") would split the leaf at ",
                              Hex(split_at)),
                 {{"iova", Hex(iova)}, {"size", Hex(size)}});
  }
  uint64_t bytes = 0;
  for (const auto& [leaf_iova, level] : leaves) {
    if (UnmapLeaf(leaf_iova, level)) bytes += LeafSize(level);
  }
  return bytes;
}

std::optional<Mapping> PageTable::Lookup(uint64_t iova) const {
  if (iova >= kInputLimit || root_ == nullptr) return std::nullopt;
  const Table* table = root_.get();
  for (int level = 0; level < kLevels; ++level) {
    const Entry& entry = table->entries[IndexAt(iova, level)];
    if (entry.leaf) {
      const uint64_t page = LeafSize(level);
      return Mapping{iova & ~(page - 1), entry.paddr, page, entry.prot};
    }
    if (entry.table == nullptr) return std::nullopt;
    table = entry.table.get();
  }
  return std::nullopt;
}

std::vector<Mapping> PageTable::Leaves() const {
  std::vector<Mapping> leaves;
  if (root_ == nullptr) return leaves;
  ForEachLeaf(*root_, 0, 0, 0, kInputLimit, [&](uint64_t iova, int level, const Entry& entry) {
    leaves.push_back(Mapping{iova, entry.paddr, LeafSize(level), entry.prot});
  });
  return leaves;
}

}  // namespace iommud
