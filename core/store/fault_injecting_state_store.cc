#include "core/store/fault_injecting_state_store.h"

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {

absl::Status FaultInjectingStateStore::Commit(const StoreBatch& batch) {
  if (batch.empty()) return ForwardingStateStore::Commit(batch);
  const absl::Status injected = injector_->Hit(kPoint, batch.fault_scope);
  if (!injected.ok()) {
    return Error(absl::StatusCode::kUnavailable, reason::kStoreWriteFailed,
                 absl::StrCat("the state store write failed: ", injected.message()),
                 GetErrorMetadata(injected));
  }
  return ForwardingStateStore::Commit(batch);
}

}  // namespace iommud
