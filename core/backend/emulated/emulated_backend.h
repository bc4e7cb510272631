// The "emulated" IommuBackend.
#ifndef IOMMUD_CORE_BACKEND_EMULATED_EMULATED_BACKEND_H_
#define IOMMUD_CORE_BACKEND_EMULATED_EMULATED_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "core/backend/backend_factory.h"
#include "core/backend/iommu_backend.h"

namespace iommud {

// Creates a emulated backend. INVALID_ARGUMENT for an unknown option key.
absl::StatusOr<std::unique_ptr<IommuBackend>> NewEmulatedBackend(const BackendOptions& options);

}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_EMULATED_EMULATED_BACKEND_H_
