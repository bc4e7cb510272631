#include "server/observability/instrumented_state_store.h"

#include <utility>

namespace iommud {

namespace {

prometheus::Family<prometheus::Counter>& FailureFamily(prometheus::Registry* metrics) {
  return prometheus::BuildCounter()
      .Name("iommud_store_failures_total")
      .Help("Calls of the state store that failed (a refused commit undoes the change), by op")
      .Register(*metrics);
}

// Counts `status` into `counter` when it is an error; returns it.
template <typename T>
T Counted(T status, prometheus::Counter& counter) {
  if (!status.ok()) counter.Increment();
  return status;
}

}  // namespace

InstrumentedStateStore::InstrumentedStateStore(StateStore* wrapped, prometheus::Registry* metrics)
    : ForwardingStateStore(wrapped),
      commit_failures_(FailureFamily(metrics).Add({{"op", "commit"}})),
      load_failures_(FailureFamily(metrics).Add({{"op", "load"}})),
      find_request_failures_(FailureFamily(metrics).Add({{"op", "find_request"}})),
      set_request_response_failures_(FailureFamily(metrics).Add({{"op", "set_request_response"}})),
      expire_requests_failures_(FailureFamily(metrics).Add({{"op", "expire_requests"}})) {}

absl::Status InstrumentedStateStore::Commit(const StoreBatch& batch) {
  return Counted(ForwardingStateStore::Commit(batch), commit_failures_);
}

absl::StatusOr<StoreSnapshot> InstrumentedStateStore::Load() {
  return Counted(ForwardingStateStore::Load(), load_failures_);
}

absl::StatusOr<std::optional<RequestRecord>> InstrumentedStateStore::FindRequest(
    absl::string_view request_id) {
  return Counted(ForwardingStateStore::FindRequest(request_id), find_request_failures_);
}

absl::Status InstrumentedStateStore::SetRequestResponse(absl::string_view request_id,
                                                        const std::string& response) {
  return Counted(ForwardingStateStore::SetRequestResponse(request_id, response),
                 set_request_response_failures_);
}

void InstrumentedStateStore::SetRequestResponseAsync(std::string request_id, std::string response,
                                                     std::function<void(absl::Status)> done) {
  ForwardingStateStore::SetRequestResponseAsync(
      std::move(request_id), std::move(response),
      [this, done = std::move(done)](absl::Status status) {
        done(Counted(std::move(status), set_request_response_failures_));
      });
}

absl::StatusOr<uint64_t> InstrumentedStateStore::ExpireRequests(int64_t cutoff_unix_nanos) {
  return Counted(ForwardingStateStore::ExpireRequests(cutoff_unix_nanos),
                 expire_requests_failures_);
}

}  // namespace iommud
