// MemoryRegionTable: the registered memory regions of a daemon run, and the MemoryResolver of the
// region address space (core/memory_resolver.h).
//
// A region is a range of memory a principal registered (RegisterMemory) and may map, in pieces,
// into the domains it owns (Registry::MapRegion). Each region has
//   - an id: from 1, never reused during the table's life (regions are not persisted: a restart
//     starts again from 1, see docs/semantics.md "Memory regions");
//   - an owner (an owner cookie, as domains have): only it maps or unregisters the region;
//   - a size: a positive multiple of kRegionPageSize, at most kMaxRegionSize;
//   - a base: its first address in the region address space [kRegionSpaceBase, kRegionSpaceEnd),
//     a multiple of kRegionAlignment (1 GiB), so that the backends may map it with 2M and 1G pages.
//     Regions never overlap; the window is far above anything a topology or an admin's raw paddr
//     uses (the registry refuses raw paddrs inside it) and below 2^52, the emulated backend's
//     output-address limit (PTE bits 12-51) and well inside the software backend's (64 bits);
//   - optional process memory (the region owns it): none for an emulated region (a range of the
//     software/emulated backend's physical memory), an mmap of the client's memfd otherwise;
//   - its mapped bytes: the sum of the sizes of the mappings that use it (a range mapped into two
//     domains counts twice), charged by Charge before a mapping is made and discharged when it is
//     removed. A region with mapped bytes cannot be removed (REGION_IN_USE).
// The bytes mapped from process-memory regions are the owner's pinned memory (a real backend pins
// them): Charge refuses to take an owner past `pinned_limit` (PINNED_MEMORY_LIMIT).
//
// Thread safety: every method may be called from any thread. One mutex (mu_) guards the table; it
// is a leaf: held only while reading or changing the table, never across anything that waits (the
// registry calls Charge/Discharge with a domain mutex held: group -> domain -> regions).
#ifndef IOMMUD_CORE_MEMORY_REGIONS_H_
#define IOMMUD_CORE_MEMORY_REGIONS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/memory_resolver.h"
#include "core/types.h"

namespace iommud {

// The region address space: [kRegionSpaceBase, kRegionSpaceEnd) = [1 TiB, 256 TiB).
inline constexpr uint64_t kRegionSpaceBase = uint64_t{1} << 40;
inline constexpr uint64_t kRegionSpaceEnd = uint64_t{1} << 48;
inline constexpr uint64_t kRegionAlignment = kPage1G;  // every base is a multiple
inline constexpr uint64_t kRegionPageSize = kPage4K;   // sizes and offsets are multiples
inline constexpr uint64_t kMaxRegionSize = uint64_t{1} << 40;  // 1 TiB

// True when [paddr, paddr + size) overlaps the region address space.
bool OverlapsRegionSpace(uint64_t paddr, uint64_t size);

enum class MemoryRegionKind { kEmulated, kProcessMemory };
absl::string_view MemoryRegionKindName(MemoryRegionKind kind);  // "EMULATED", "PROCESS_MEMORY"

// A snapshot of a region (a copy).
struct MemoryRegionInfo {
  uint64_t id = 0;
  std::string owner;
  uint64_t size = 0;
  uint64_t base = 0;
  uint64_t mapped_bytes = 0;
  MemoryRegionKind kind = MemoryRegionKind::kEmulated;
};

class MemoryRegionTable final : public MemoryResolver {
 public:
  MemoryRegionTable() = default;
  MemoryRegionTable(const MemoryRegionTable&) = delete;
  MemoryRegionTable& operator=(const MemoryRegionTable&) = delete;

  // Registers a region of `size` bytes for `owner`, with `backing` (may be null: emulated) whose
  // size must equal `size`. Its base is the lowest free, aligned window address at or above the
  // reserved floor (ReserveBelow). Errors: INVALID_ARGUMENT MISSING_OWNER (empty owner),
  // INVALID_REGION_SIZE (0, not a multiple of kRegionPageSize, above kMaxRegionSize, or not the
  // backing's size); RESOURCE_EXHAUSTED REGION_SPACE_EXHAUSTED (no room left in the window).
  absl::StatusOr<MemoryRegionInfo> Add(absl::string_view owner, uint64_t size,
                                       std::unique_ptr<ProcessMemory> backing);
  // Removes region `id` of `owner` and drops its process memory; returns it as it was.
  // NOT_FOUND REGION_NOT_FOUND; PERMISSION_DENIED NOT_OWNER; FAILED_PRECONDITION REGION_IN_USE
  // while any byte of it is charged.
  absl::StatusOr<MemoryRegionInfo> Remove(uint64_t id, absl::string_view owner);
  absl::StatusOr<MemoryRegionInfo> Get(uint64_t id) const;  // NOT_FOUND REGION_NOT_FOUND
  std::vector<MemoryRegionInfo> List() const;               // by id

  // Charges [offset, offset + size) of region `id` as mapped for `owner` and returns its
  // region-space address (base + offset). Checked in this order: REGION_NOT_FOUND; NOT_OWNER
  // (PERMISSION_DENIED: `owner` must be the region's owner); INVALID_SIZE (size 0); UNALIGNED
  // (offset or size not a multiple of kRegionPageSize); OUT_OF_RANGE REGION_RANGE_OUT_OF_BOUNDS
  // (past the region's end); for a process-memory region, RESOURCE_EXHAUSTED PINNED_MEMORY_LIMIT
  // when the owner's pinned bytes would exceed `pinned_limit` (0: no limit). Every charge must
  // be given back by Discharge (of the returned address) when the mapping fails or goes.
  absl::StatusOr<uint64_t> Charge(uint64_t id, uint64_t offset, uint64_t size,
                                  absl::string_view owner, uint64_t pinned_limit);
  // Gives back `size` bytes of the region holding region-space address `paddr` (a mapping that
  // went). No-op when no region holds it (a mapping from before a restart, or a raw one).
  void Discharge(uint64_t paddr, uint64_t size);
  // Puts back a region a previous process of the daemon registered, with its id, owner, size and
  // base (a restart with the fd store: server/host/kept_regions.h), and `backing` (its memory, of
  // `size` bytes). Later ids are above it. INVALID_ARGUMENT (INVALID_REGION_SIZE) for a size or
  // base Add would not give, a missing backing or one of another size; ALREADY_EXISTS
  // (REGION_EXISTS) when it overlaps a region or its id is taken.
  absl::Status Restore(const MemoryRegionInfo& region, std::unique_ptr<ProcessMemory> backing);
  // Charges `size` bytes at region-space `paddr` to the region holding it, without the owner's
  // limit (a mapping that survived the restart); false when no region holds the whole range.
  bool ChargeRestored(uint64_t paddr, uint64_t size);
  // Addresses below `end` are never given to a new region: the region-space mappings that
  // survived a restart keep their addresses (Registry::Recover).
  void ReserveBelow(uint64_t end);
  // Bytes charged to process-memory regions of `owner`.
  uint64_t PinnedBytes(absl::string_view owner) const;

  // MemoryResolver: data() + offset for a range wholly inside one region with process memory;
  // NOT_FOUND MEMORY_NOT_REGISTERED otherwise.
  absl::StatusOr<void*> Resolve(uint64_t paddr, uint64_t size) const override;

 private:
  struct Region {
    MemoryRegionInfo info;
    std::unique_ptr<ProcessMemory> backing;
  };
  // The region whose [base, base + size) holds `paddr`; null if none.
  const Region* RegionAt(uint64_t paddr) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  Region* RegionAt(uint64_t paddr) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The lowest aligned base >= floor_ where `size` bytes fit between regions; 0 if none.
  uint64_t FindBase(uint64_t size) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t floor_ ABSL_GUARDED_BY(mu_) = kRegionSpaceBase;
  std::map<uint64_t, Region> by_base_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, uint64_t> base_of_id_ ABSL_GUARDED_BY(mu_);  // id -> base
  absl::flat_hash_map<std::string, uint64_t> pinned_ ABSL_GUARDED_BY(mu_);  // owner -> bytes
};

}  // namespace iommud

#endif  // IOMMUD_CORE_MEMORY_REGIONS_H_
