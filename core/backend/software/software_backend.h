// The "software" IommuBackend: the IOMMU as plain data structures.
//
//   - per unit, a RID table (RID -> domain; absent = invalid entry: DMA faults UNKNOWN_RID);
//   - per paging domain, a 4-level radix page table (core/backend/software/page_table.h);
//   - per domain, an IOTLB of leaf translations filled by walks and cleared only by
//     InvalidateIotlb (and FreeDomain): after Unmap without an invalidation, a DMA still uses the
//     stale translation, as on real hardware;
//   - a bounded fault queue.
// Locking: units_mu_ and domains_mu_ guard the two maps (lookups only); each unit's mutex guards
// its RID table, each domain's mutex its page table and IOTLB. No lock is held across units or
// domains, so work on different domains runs in parallel.
#ifndef IOMMUD_CORE_BACKEND_SOFTWARE_SOFTWARE_BACKEND_H_
#define IOMMUD_CORE_BACKEND_SOFTWARE_SOFTWARE_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "core/backend/backend_factory.h"
#include "core/backend/iommu_backend.h"

namespace iommud {

// Creates a software backend. Options: "iotlb_entries" (per-domain IOTLB capacity, default 4096),
// "fault_queue" (fault queue capacity, default 4096). INVALID_ARGUMENT for an unknown key or a bad
// value. `faults` (not owned; may be null; BackendHooks::faults) is hit at pgtable.alloc.
absl::StatusOr<std::unique_ptr<IommuBackend>> NewSoftwareBackend(const BackendOptions& options,
                                                                 FaultInjector* faults = nullptr);

}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_SOFTWARE_SOFTWARE_BACKEND_H_
