// IOVA range arithmetic for the IovaRanges query (docs/semantics.md "Domains and mappings"): the
// usable ranges of a domain are its aperture minus the reserved regions, intersected with what the
// kernel reports where there is a kernel (iommufd's iopt_check_iova / IOMMU_IOAS_IOVA_RANGES,
// VFIO type1's vfio_iommu_iova_build_caps). Pure functions; thread-compatible.
#ifndef IOMMUD_CORE_IOVA_RANGES_H_
#define IOMMUD_CORE_IOVA_RANGES_H_

#include <cstdint>
#include <vector>

#include "core/types.h"

namespace iommud {

// [0, aperture_end) minus every range of `reserved` (in any order, may overlap each other or lie
// outside the aperture). The result is sorted, disjoint, without empty ranges.
std::vector<IovaRange> UsableIovaRanges(uint64_t aperture_end,
                                        const std::vector<IovaRange>& reserved);

// The addresses in both `a` and `b` (each sorted and disjoint), sorted and disjoint.
std::vector<IovaRange> IntersectIovaRanges(const std::vector<IovaRange>& a,
                                           const std::vector<IovaRange>& b);

}  // namespace iommud

#endif  // IOMMUD_CORE_IOVA_RANGES_H_
