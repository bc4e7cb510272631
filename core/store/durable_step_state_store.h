// DurableStepStateStore: a StateStore decorator that calls a DurableStepHook (core/crash_points.h)
// before each write it forwards: a non-empty Commit, SetRequestResponse and ExpireRequests. The
// daemon wraps its store in one when a crash point is set (--test_crash_before_step), so that the
// crash-point sweep can stop it before any store write. Reads are forwarded untouched. Thread-safe
// as the wrapped store is.
#ifndef IOMMUD_CORE_STORE_DURABLE_STEP_STATE_STORE_H_
#define IOMMUD_CORE_STORE_DURABLE_STEP_STATE_STORE_H_

#include <string>
#include <utility>

#include "core/crash_points.h"
#include "core/store/forwarding_state_store.h"

namespace iommud {

class DurableStepStateStore : public ForwardingStateStore {
 public:
  // `wrapped` is not owned and must outlive this.
  DurableStepStateStore(StateStore* wrapped, DurableStepHook before_write)
      : ForwardingStateStore(wrapped), before_write_(std::move(before_write)) {}

  absl::Status Commit(const StoreBatch& batch) override {
    if (!batch.empty()) before_write_("store commit");
    return ForwardingStateStore::Commit(batch);
  }
  absl::Status SetRequestResponse(absl::string_view request_id,
                                  const std::string& response) override {
    before_write_("store request response");
    return ForwardingStateStore::SetRequestResponse(request_id, response);
  }
  void SetRequestResponseAsync(std::string request_id, std::string response,
                               std::function<void(absl::Status)> done) override {
    before_write_("store request response");
    ForwardingStateStore::SetRequestResponseAsync(std::move(request_id), std::move(response),
                                                  std::move(done));
  }
  absl::StatusOr<uint64_t> ExpireRequests(int64_t cutoff_unix_nanos) override {
    before_write_("store request expiry");
    return ForwardingStateStore::ExpireRequests(cutoff_unix_nanos);
  }

 private:
  const DurableStepHook before_write_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_STORE_DURABLE_STEP_STATE_STORE_H_
