// The "emulated" IommuBackend: an SMMUv3-like IOMMU emulated at the register/queue level.
//
// The driver half (this backend) writes stream table entries, a domain table and page tables into
// emulated physical memory (format: emulated_format.h) and tells the device half
// (emulated_device.h) about changes only through the command queue: CFGI_STE after writing an
// STE, TLBI_DOMAIN / TLBI_RANGE for InvalidateIotlb, each followed by SYNC. Unmap issues no TLBI
// (the registry invalidates), so a missing invalidation shows up as a stale translation, as on real
// hardware. Faults arrive through the event queue. Read-back walks memory, never the caches.
//
// Options: "memory_file" (path; default "" = anonymous memory), "memory_bytes" (default 256M; K/M/G
// suffixes), "iotlb_entries" (default 4096), "test_skip_invalidation" ("true": no CFGI/TLBI
// commands, to demonstrate stale translations). A memory file with valid contents is re-attached
// with its units, domains, stream tables and page tables (the hardware outlives the daemon); one
// with a corrupt header is refused (DATA_LOSS), never reinitialized. INVALID_ARGUMENT for unknown
// keys or bad values.
//
// Thread safety: one lock over the memory and both halves.
#ifndef IOMMUD_CORE_BACKEND_EMULATED_EMULATED_BACKEND_H_
#define IOMMUD_CORE_BACKEND_EMULATED_EMULATED_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "core/backend/backend_factory.h"
#include "core/backend/iommu_backend.h"

namespace iommud {

// `hooks.before_durable_write` is called before every write to the memory (file or anonymous).
absl::StatusOr<std::unique_ptr<IommuBackend>> NewEmulatedBackend(const BackendOptions& options,
                                                                 const BackendHooks& hooks = {});

}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_EMULATED_EMULATED_BACKEND_H_
