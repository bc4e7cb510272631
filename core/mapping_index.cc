#include "core/mapping_index.h"

namespace iommud {

std::optional<Mapping> MappingIndex::FindOverlap(uint64_t iova, uint64_t size) const {
  const IovaRange range{iova, size};
  auto it = by_iova_.upper_bound(iova);
  if (it != by_iova_.begin()) {
    auto before = std::prev(it);
    if (range.Overlaps(before->second.iova, before->second.size)) return before->second;
  }
  if (it != by_iova_.end() && range.Overlaps(it->second.iova, it->second.size)) return it->second;
  return std::nullopt;
}

void MappingIndex::Insert(const Mapping& mapping) {
  by_iova_[mapping.iova] = mapping;
  bytes_ += mapping.size;
}

std::vector<Mapping> MappingIndex::Covered(uint64_t iova, uint64_t size, bool* splits) const {
  *splits = false;
  std::vector<Mapping> covered;
  const IovaRange range{iova, size};
  auto it = by_iova_.upper_bound(iova);
  if (it != by_iova_.begin()) --it;
  for (; it != by_iova_.end() && it->second.iova < range.end(); ++it) {
    const Mapping& mapping = it->second;
    if (!range.Overlaps(mapping.iova, mapping.size)) continue;
    if (mapping.iova < iova || mapping.iova + mapping.size > range.end()) *splits = true;
    covered.push_back(mapping);
  }
  return covered;
}

void MappingIndex::Erase(uint64_t iova) {
  auto it = by_iova_.find(iova);
  if (it == by_iova_.end()) return;
  bytes_ -= it->second.size;
  by_iova_.erase(it);
}

std::vector<Mapping> MappingIndex::All() const {
  std::vector<Mapping> all;
  all.reserve(by_iova_.size());
  for (const auto& [iova, mapping] : by_iova_) all.push_back(mapping);
  return all;
}

}  // namespace iommud
