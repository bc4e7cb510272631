// How both backends' page tables cut a Map into leaves: the largest leaf of a 4-level, 4K-granule
// table (1G at level 1, 2M at level 2, 4K at level 3) that the unit's page sizes allow, that the
// alignment of the IOVA and the physical address permit and that the remaining size fills.
#ifndef IOMMUD_CORE_BACKEND_LEAF_MAPPING_H_
#define IOMMUD_CORE_BACKEND_LEAF_MAPPING_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {

// Bytes a leaf at `level` (1..3) maps.
inline uint64_t LeafBytes(int level) { return uint64_t{1} << (12 + 9 * (3 - level)); }

// Maps [iova, iova+size) -> [paddr, ...) as leaves, calling map_leaf(iova, paddr, level) ->
// absl::Status for each. All or nothing: after the first error the leaves already mapped are
// removed with unmap_leaf(iova, level) and the error is returned; INVALID_ARGUMENT (UNALIGNED)
// when no allowed leaf fits.
template <typename MapLeaf, typename UnmapLeaf>
absl::Status MapAsLeaves(uint64_t pgsize_bitmap, uint64_t iova, uint64_t paddr, uint64_t size,
                         MapLeaf&& map_leaf, UnmapLeaf&& unmap_leaf) {
  std::vector<std::pair<uint64_t, int>> mapped;
  for (uint64_t done = 0; done < size;) {
    const uint64_t at = iova + done, to = paddr + done;
    int leaf_level = -1;
    for (int level = 1; level <= 3; ++level) {
      const uint64_t page = LeafBytes(level);
      if ((pgsize_bitmap & page) != 0 && at % page == 0 && to % page == 0 &&
          size - done >= page) {
        leaf_level = level;
        break;
      }
    }
    absl::Status status =
        leaf_level < 0
            ? Error(absl::StatusCode::kInvalidArgument, reason::kUnaligned,
                    absl::StrCat("no allowed page size fits at 0x", absl::Hex(at)),
                    {{"iova", absl::StrCat("0x", absl::Hex(at))}})
            : map_leaf(at, to, leaf_level);
    if (!status.ok()) {
      for (const auto& [leaf_iova, level] : mapped) unmap_leaf(leaf_iova, level);
      return status;
    }
    mapped.emplace_back(at, leaf_level);
    done += LeafBytes(leaf_level);
  }
  return absl::OkStatus();
}

}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_LEAF_MAPPING_H_
