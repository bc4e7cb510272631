// Test-only entry point of the emulated backend (fuzzers, tests): the backend over memory the
// caller filled, so that an image can be checked and re-attached without a memory file.
#ifndef IOMMUD_CORE_BACKEND_EMULATED_EMULATED_BACKEND_FOR_TESTING_H_
#define IOMMUD_CORE_BACKEND_EMULATED_EMULATED_BACKEND_FOR_TESTING_H_

#include <memory>

#include "absl/status/statusor.h"
#include "core/backend/backend_factory.h"
#include "core/backend/emulated/emulated_memory.h"
#include "core/backend/iommu_backend.h"

namespace iommud {

// NewEmulatedBackend with `memory` instead of the memory file: `existed` true behaves like a
// memory file that already held data (the image check, then re-attach or DATA_LOSS
// CORRUPT_MEMORY_FILE); false formats it. `options` must not name "memory_file"/"memory_bytes"
// (INVALID_ARGUMENT).
absl::StatusOr<std::unique_ptr<IommuBackend>> NewEmulatedBackendOnMemoryForTesting(
    std::unique_ptr<EmulatedMemory> memory, bool existed, const BackendOptions& options = {});

}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_EMULATED_EMULATED_BACKEND_FOR_TESTING_H_
