// FaultInjectingStateStore: a StateStore decorator that asks a FaultInjector at the `store.write`
// injection point before forwarding each non-empty Commit. When the point fires, Commit returns
// UNAVAILABLE (STORE_WRITE_FAILED), as a store whose disk write failed would, without reaching
// the wrapped store (so the batch left nothing, as the contract requires); metadata "point" and
// "fault_id" name the fault. Reads, SetRequestResponse and ExpireRequests are never injected.
// Thread-safe as the wrapped store is.
#ifndef IOMMUD_CORE_STORE_FAULT_INJECTING_STATE_STORE_H_
#define IOMMUD_CORE_STORE_FAULT_INJECTING_STATE_STORE_H_

#include <optional>
#include <string>

#include "core/fault_injector.h"
#include "core/store/state_store.h"

namespace iommud {

class FaultInjectingStateStore : public StateStore {
 public:
  // The injection point Commit hits.
  static constexpr char kPoint[] = "store.write";

  // Neither is owned; both must outlive this.
  FaultInjectingStateStore(StateStore* wrapped, FaultInjector* injector)
      : wrapped_(wrapped), injector_(injector) {}

  absl::string_view kind() const override { return wrapped_->kind(); }
  StoreDurability durability() const override { return wrapped_->durability(); }
  absl::Status Commit(const StoreBatch& batch) override;
  absl::StatusOr<StoreSnapshot> Load() override { return wrapped_->Load(); }
  absl::StatusOr<std::optional<RequestRecord>> FindRequest(absl::string_view request_id) override {
    return wrapped_->FindRequest(request_id);
  }
  absl::Status SetRequestResponse(absl::string_view request_id,
                                  const std::string& response) override {
    return wrapped_->SetRequestResponse(request_id, response);
  }
  absl::StatusOr<uint64_t> ExpireRequests(int64_t cutoff_unix_nanos) override {
    return wrapped_->ExpireRequests(cutoff_unix_nanos);
  }

 private:
  StateStore* const wrapped_;
  FaultInjector* const injector_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_STORE_FAULT_INJECTING_STATE_STORE_H_
