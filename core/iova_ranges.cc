#include "core/iova_ranges.h"

#include <algorithm>

namespace iommud {

std::vector<IovaRange> UsableIovaRanges(uint64_t aperture_end,
                                        const std::vector<IovaRange>& reserved) {
  std::vector<IovaRange> holes;
  for (const IovaRange& range : reserved) {
    if (range.size == 0 || range.start >= aperture_end) continue;
    // Clamp to the aperture (also a range whose end would overflow 64 bits).
    const uint64_t end = range.size > aperture_end - range.start ? aperture_end : range.end();
    holes.push_back({range.start, end - range.start});
  }
  std::sort(holes.begin(), holes.end(),
            [](const IovaRange& a, const IovaRange& b) { return a.start < b.start; });
  std::vector<IovaRange> usable;
  uint64_t next = 0;  // the first address not yet placed in `usable` or a hole
  for (const IovaRange& hole : holes) {
    if (hole.start > next) usable.push_back({next, hole.start - next});
    next = std::max(next, hole.end());
  }
  if (next < aperture_end) usable.push_back({next, aperture_end - next});
  return usable;
}

std::vector<IovaRange> IntersectIovaRanges(const std::vector<IovaRange>& a,
                                           const std::vector<IovaRange>& b) {
  std::vector<IovaRange> out;
  size_t i = 0;
  size_t j = 0;
  while (i < a.size() && j < b.size()) {
    // Inclusive last addresses: a range may end at 2^64 - 1.
    const uint64_t a_last = a[i].start + (a[i].size - 1);
    const uint64_t b_last = b[j].start + (b[j].size - 1);
    if (a[i].size == 0) { ++i; continue; }
    if (b[j].size == 0) { ++j; continue; }
    const uint64_t start = std::max(a[i].start, b[j].start);
    const uint64_t last = std::min(a_last, b_last);
    if (start <= last) out.push_back({start, last - start + 1});
    if (a_last < b_last) {
      ++i;
    } else {
      ++j;
    }
  }
  return out;
}

}  // namespace iommud
