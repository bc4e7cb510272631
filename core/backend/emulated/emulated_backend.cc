#include "core/backend/emulated/emulated_backend.h"

#include "core/error.h"

namespace iommud {

// PLACEHOLDER: replaced by the real implementation.
absl::StatusOr<std::unique_ptr<IommuBackend>> NewEmulatedBackend(const BackendOptions& options) {
  return Error(absl::StatusCode::kUnimplemented, "UNIMPLEMENTED", "emulated backend not built yet");
}

}  // namespace iommud
