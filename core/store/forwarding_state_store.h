// ForwardingStateStore: a StateStore that forwards every call to another one (beside
// core/backend/forwarding_backend.h). Decorators (fault injection, crash points, test doubles)
// derive from it and override only what they change. Thread-safe as the wrapped store is.
#ifndef IOMMUD_CORE_STORE_FORWARDING_STATE_STORE_H_
#define IOMMUD_CORE_STORE_FORWARDING_STATE_STORE_H_

#include <optional>
#include <string>
#include <utility>

#include "core/store/state_store.h"

namespace iommud {

class ForwardingStateStore : public StateStore {
 public:
  // `wrapped` is not owned and must outlive this.
  explicit ForwardingStateStore(StateStore* wrapped) : wrapped_(wrapped) {}

  absl::string_view kind() const override { return wrapped()->kind(); }
  StoreDurability durability() const override { return wrapped()->durability(); }
  absl::Status Commit(const StoreBatch& batch) override { return wrapped()->Commit(batch); }
  absl::StatusOr<StoreSnapshot> Load() override { return wrapped()->Load(); }
  absl::StatusOr<std::optional<RequestRecord>> FindRequest(absl::string_view request_id) override {
    return wrapped()->FindRequest(request_id);
  }
  absl::Status SetRequestResponse(absl::string_view request_id,
                                  const std::string& response) override {
    return wrapped()->SetRequestResponse(request_id, response);
  }
  void SetRequestResponseAsync(std::string request_id, std::string response,
                               std::function<void(absl::Status)> done) override {
    wrapped()->SetRequestResponseAsync(std::move(request_id), std::move(response),
                                       std::move(done));
  }
  absl::StatusOr<uint64_t> ExpireRequests(int64_t cutoff_unix_nanos) override {
    return wrapped()->ExpireRequests(cutoff_unix_nanos);
  }

 protected:
  // The store calls go to; a test double may override it to follow a store that is replaced
  // (a reopened SQLite store is a new object).
  virtual StateStore* wrapped() const { return wrapped_; }

 private:
  StateStore* const wrapped_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_STORE_FORWARDING_STATE_STORE_H_
