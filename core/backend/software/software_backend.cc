#include "core/backend/software/software_backend.h"

#include "core/error.h"

namespace iommud {

// PLACEHOLDER: replaced by the real implementation.
absl::StatusOr<std::unique_ptr<IommuBackend>> NewSoftwareBackend(const BackendOptions& options) {
  return Error(absl::StatusCode::kUnimplemented, "UNIMPLEMENTED", "software backend not built yet");
}

}  // namespace iommud
