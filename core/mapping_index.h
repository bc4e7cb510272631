// MappingIndex: the mappings of one domain as the user made them (one entry per successful Map),
// ordered by IOVA. It enforces the no-overlap rule of Map and the no-split rule of Unmap; the page
// table below may hold each mapping as many leaf pages. Not thread-safe: the owner's domain lock
// guards it.
#ifndef IOMMUD_CORE_MAPPING_INDEX_H_
#define IOMMUD_CORE_MAPPING_INDEX_H_

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "core/types.h"

namespace iommud {

class MappingIndex {
 public:
  // The first mapping overlapping [iova, iova+size), if any.
  std::optional<Mapping> FindOverlap(uint64_t iova, uint64_t size) const;

  // Records `mapping`; the caller has checked FindOverlap.
  void Insert(const Mapping& mapping);

  // The mappings overlapping [iova, iova+size) in IOVA order. Sets `*splits` when one of them is
  // not wholly inside the range (so unmapping the range would split it).
  std::vector<Mapping> Covered(uint64_t iova, uint64_t size, bool* splits) const;

  // Removes the mapping that starts at `iova` (no-op if none).
  void Erase(uint64_t iova);

  std::vector<Mapping> All() const;
  uint64_t count() const { return by_iova_.size(); }
  uint64_t bytes() const { return bytes_; }

 private:
  std::map<uint64_t, Mapping> by_iova_;
  uint64_t bytes_ = 0;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_MAPPING_INDEX_H_
