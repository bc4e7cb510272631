#include "core/memory_regions.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/sync.h"

namespace iommud {
namespace {

std::string Hex(uint64_t value) { return absl::StrCat("0x", absl::Hex(value)); }

uint64_t RoundUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

absl::Status RegionNotFound(uint64_t id) {
  return Error(absl::StatusCode::kNotFound, reason::kRegionNotFound,
               absl::StrCat("no memory region ", id), {{"region_id", absl::StrCat(id)}});
}

}  // namespace

bool OverlapsRegionSpace(uint64_t paddr, uint64_t size) {
  const uint64_t end = paddr + size < paddr ? ~uint64_t{0} : paddr + size;
  return paddr < kRegionSpaceEnd && end > kRegionSpaceBase;
}

absl::string_view MemoryRegionKindName(MemoryRegionKind kind) {
  return kind == MemoryRegionKind::kProcessMemory ? "PROCESS_MEMORY" : "EMULATED";
}

absl::StatusOr<MemoryRegionInfo> MemoryRegionTable::Add(absl::string_view owner, uint64_t size,
                                                        std::unique_ptr<ProcessMemory> backing) {
  ErrorMetadata metadata = {{"size", Hex(size)}};
  if (owner.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kMissingOwner,
                 "an owner cookie is required to register memory", metadata);
  }
  if (size == 0 || size % kRegionPageSize != 0 || size > kMaxRegionSize) {
    metadata["max_size"] = Hex(kMaxRegionSize);
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidRegionSize,
                 absl::StrCat("a region's size is a positive multiple of ", Hex(kRegionPageSize),
                              " up to ", Hex(kMaxRegionSize), ", not ", Hex(size)),
                 metadata);
  }
  if (backing != nullptr && backing->size() != size) {
    metadata["backing_size"] = Hex(backing->size());
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidRegionSize,
                 absl::StrCat("the region's memory has ", Hex(backing->size()), " bytes, not ",
                              Hex(size)),
                 metadata);
  }
  MutexLock lock(&mu_);
  const uint64_t base = FindBase(size);
  if (base == 0) {
    return Error(absl::StatusCode::kResourceExhausted, reason::kRegionSpaceExhausted,
                 absl::StrCat("no room for ", Hex(size), " more bytes in the region address space"),
                 metadata);
  }
  Region region;
  region.info.id = next_id_++;
  region.info.owner = std::string(owner);
  region.info.size = size;
  region.info.base = base;
  region.info.kind =
      backing != nullptr ? MemoryRegionKind::kProcessMemory : MemoryRegionKind::kEmulated;
  region.backing = std::move(backing);
  MemoryRegionInfo info = region.info;
  base_of_id_[info.id] = base;
  by_base_.emplace(base, std::move(region));
  return info;
}

absl::Status MemoryRegionTable::Restore(const MemoryRegionInfo& region,
                                        std::unique_ptr<ProcessMemory> backing) {
  ErrorMetadata metadata = {{"region_id", absl::StrCat(region.id)}, {"base", Hex(region.base)},
                            {"size", Hex(region.size)}};
  if (region.id == 0 || region.owner.empty() || region.size == 0 ||
      region.size % kRegionPageSize != 0 || region.size > kMaxRegionSize ||
      region.base % kRegionAlignment != 0 || region.base < kRegionSpaceBase ||
      region.base > kRegionSpaceEnd - region.size || backing == nullptr ||
      backing->size() != region.size) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidRegionSize,
                 absl::StrCat("memory region ", region.id, " cannot be restored as ",
                              Hex(region.size), " bytes at ", Hex(region.base)),
                 metadata);
  }
  MutexLock lock(&mu_);
  auto next = by_base_.lower_bound(region.base);
  const bool overlaps =
      (next != by_base_.end() && next->first < region.base + region.size) ||
      (next != by_base_.begin() &&
       std::prev(next)->first + std::prev(next)->second.info.size > region.base);
  if (overlaps || base_of_id_.count(region.id) != 0) {
    return Error(absl::StatusCode::kAlreadyExists, reason::kRegionExists,
                 absl::StrCat("memory region ", region.id, " overlaps a region or reuses its id"),
                 metadata);
  }
  Region restored;
  restored.info = region;
  restored.info.mapped_bytes = 0;
  restored.info.kind = MemoryRegionKind::kProcessMemory;
  restored.backing = std::move(backing);
  base_of_id_[region.id] = region.base;
  by_base_.emplace(region.base, std::move(restored));
  next_id_ = std::max(next_id_, region.id + 1);
  return absl::OkStatus();
}

bool MemoryRegionTable::ChargeRestored(uint64_t paddr, uint64_t size) {
  MutexLock lock(&mu_);
  Region* region = RegionAt(paddr);
  if (region == nullptr || paddr + size > region->info.base + region->info.size) return false;
  region->info.mapped_bytes += size;
  pinned_[region->info.owner] += size;
  return true;
}

absl::StatusOr<MemoryRegionInfo> MemoryRegionTable::Remove(uint64_t id, absl::string_view owner) {
  std::unique_ptr<ProcessMemory> backing;  // unmapped after the lock is dropped
  MemoryRegionInfo info;
  {
    MutexLock lock(&mu_);
    auto base = base_of_id_.find(id);
    if (base == base_of_id_.end()) return RegionNotFound(id);
    auto it = by_base_.find(base->second);
    Region& region = it->second;
    ErrorMetadata metadata = {{"region_id", absl::StrCat(id)}};
    if (region.info.owner != owner) {
      metadata["owner"] = std::string(owner);
      return Error(absl::StatusCode::kPermissionDenied, reason::kNotOwner,
                   absl::StrCat("memory region ", id, " is owned by another client"), metadata);
    }
    if (region.info.mapped_bytes != 0) {
      metadata["mapped_bytes"] = absl::StrCat(region.info.mapped_bytes);
      return Error(absl::StatusCode::kFailedPrecondition, reason::kRegionInUse,
                   absl::StrCat("memory region ", id, " has ", region.info.mapped_bytes,
                                " bytes mapped: unmap them first"),
                   metadata);
    }
    info = region.info;
    backing = std::move(region.backing);
    by_base_.erase(it);
    base_of_id_.erase(base);
  }
  return info;
}

absl::StatusOr<MemoryRegionInfo> MemoryRegionTable::Get(uint64_t id) const {
  ReaderMutexLock lock(&mu_);
  auto base = base_of_id_.find(id);
  if (base == base_of_id_.end()) return RegionNotFound(id);
  return by_base_.at(base->second).info;
}

std::vector<MemoryRegionInfo> MemoryRegionTable::List() const {
  ReaderMutexLock lock(&mu_);
  std::vector<MemoryRegionInfo> out;
  out.reserve(base_of_id_.size());
  for (const auto& [id, base] : base_of_id_) out.push_back(by_base_.at(base).info);
  return out;
}

absl::StatusOr<uint64_t> MemoryRegionTable::Charge(uint64_t id, uint64_t offset, uint64_t size,
                                                   absl::string_view owner,
                                                   uint64_t pinned_limit) {
  MutexLock lock(&mu_);
  auto base = base_of_id_.find(id);
  if (base == base_of_id_.end()) return RegionNotFound(id);
  Region& region = by_base_.at(base->second);
  ErrorMetadata metadata = {{"region_id", absl::StrCat(id)},
                            {"region_offset", Hex(offset)},
                            {"size", Hex(size)}};
  if (region.info.owner != owner) {
    metadata["owner"] = std::string(owner);
    return Error(absl::StatusCode::kPermissionDenied, reason::kNotOwner,
                 absl::StrCat("memory region ", id, " is owned by another client"), metadata);
  }
  if (size == 0) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidSize,
                 "size must not be 0", metadata);
  }
  if (offset % kRegionPageSize != 0 || size % kRegionPageSize != 0) {
    metadata["min_page_size"] = Hex(kRegionPageSize);
    return Error(absl::StatusCode::kInvalidArgument, reason::kUnaligned,
                 absl::StrCat("region_offset and size must be multiples of ",
                              Hex(kRegionPageSize)),
                 metadata);
  }
  if (offset >= region.info.size || size > region.info.size - offset) {
    metadata["region_size"] = Hex(region.info.size);
    return Error(absl::StatusCode::kOutOfRange, reason::kRegionRangeOutOfBounds,
                 absl::StrCat("[", Hex(offset), ", +", Hex(size), ") is outside memory region ",
                              id, " of ", Hex(region.info.size), " bytes"),
                 metadata);
  }
  if (region.info.kind == MemoryRegionKind::kProcessMemory) {
    uint64_t& pinned = pinned_[region.info.owner];
    if (pinned_limit != 0 && (pinned > pinned_limit || size > pinned_limit - pinned)) {
      metadata["owner"] = region.info.owner;
      metadata["pinned_bytes"] = absl::StrCat(pinned);
      metadata["limit"] = absl::StrCat(pinned_limit);
      if (pinned == 0) pinned_.erase(region.info.owner);
      return Error(absl::StatusCode::kResourceExhausted, reason::kPinnedMemoryLimit,
                   absl::StrCat("owner '", region.info.owner, "' has ", pinned,
                                " bytes of process memory mapped; ", size, " more would exceed ",
                                "the limit of ", pinned_limit),
                   metadata);
    }
    pinned += size;
  }
  region.info.mapped_bytes += size;
  return region.info.base + offset;
}

void MemoryRegionTable::Discharge(uint64_t paddr, uint64_t size) {
  MutexLock lock(&mu_);
  Region* region = RegionAt(paddr);
  if (region == nullptr) return;
  const uint64_t bytes = std::min(size, region->info.mapped_bytes);
  region->info.mapped_bytes -= bytes;
  if (region->info.kind != MemoryRegionKind::kProcessMemory) return;
  auto pinned = pinned_.find(region->info.owner);
  if (pinned == pinned_.end()) return;
  pinned->second -= std::min(bytes, pinned->second);
  if (pinned->second == 0) pinned_.erase(pinned);
}

void MemoryRegionTable::ReserveBelow(uint64_t end) {
  MutexLock lock(&mu_);
  floor_ = std::max(floor_, std::min(RoundUp(end, kRegionAlignment), kRegionSpaceEnd));
}

uint64_t MemoryRegionTable::PinnedBytes(absl::string_view owner) const {
  ReaderMutexLock lock(&mu_);
  auto it = pinned_.find(owner);
  return it == pinned_.end() ? 0 : it->second;
}

absl::StatusOr<void*> MemoryRegionTable::Resolve(uint64_t paddr, uint64_t size) const {
  ReaderMutexLock lock(&mu_);
  const Region* region = RegionAt(paddr);
  if (region != nullptr && region->backing != nullptr && size <= region->info.size &&
      paddr - region->info.base <= region->info.size - size) {
    return static_cast<char*>(region->backing->data()) + (paddr - region->info.base);
  }
  return Error(absl::StatusCode::kNotFound, reason::kMemoryNotRegistered,
               absl::StrCat("[", Hex(paddr), ", +", Hex(size),
                            ") is not inside one registered region of process memory"),
               {{"paddr", Hex(paddr)}, {"size", Hex(size)}});
}

const MemoryRegionTable::Region* MemoryRegionTable::RegionAt(uint64_t paddr) const {
  auto it = by_base_.upper_bound(paddr);
  if (it == by_base_.begin()) return nullptr;
  --it;
  return paddr - it->first < it->second.info.size ? &it->second : nullptr;
}

MemoryRegionTable::Region* MemoryRegionTable::RegionAt(uint64_t paddr) {
  auto it = by_base_.upper_bound(paddr);
  if (it == by_base_.begin()) return nullptr;
  --it;
  return paddr - it->first < it->second.info.size ? &it->second : nullptr;
}

uint64_t MemoryRegionTable::FindBase(uint64_t size) const {
  const uint64_t span = RoundUp(size, kRegionAlignment);
  uint64_t candidate = floor_;
  for (const auto& [base, region] : by_base_) {
    const uint64_t end = RoundUp(base + region.info.size, kRegionAlignment);
    if (end <= candidate) continue;
    if (base >= candidate && base - candidate >= span) break;
    candidate = std::max(candidate, end);
  }
  if (candidate >= kRegionSpaceEnd || kRegionSpaceEnd - candidate < span) return 0;
  return candidate;
}

}  // namespace iommud
