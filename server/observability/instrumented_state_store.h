// InstrumentedStateStore: a StateStore decorator counting the calls of the wrapped store that fail
// into iommud_store_failures_total{op} (op: commit, set_request_response, expire_requests,
// find_request, load), for the IommudStoreFailures alert (deploy/prometheus/alerts.yml). Every
// op's series exists from the start at 0. Thread-safe as the wrapped store is.
#ifndef IOMMUD_SERVER_OBSERVABILITY_INSTRUMENTED_STATE_STORE_H_
#define IOMMUD_SERVER_OBSERVABILITY_INSTRUMENTED_STATE_STORE_H_

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <optional>
#include <string>

#include "core/store/forwarding_state_store.h"

namespace iommud {

class InstrumentedStateStore : public ForwardingStateStore {
 public:
  // Neither is owned; both must outlive this.
  InstrumentedStateStore(StateStore* wrapped, prometheus::Registry* metrics);

  absl::Status Commit(const StoreBatch& batch) override;
  absl::StatusOr<StoreSnapshot> Load() override;
  absl::StatusOr<std::optional<RequestRecord>> FindRequest(absl::string_view request_id) override;
  absl::Status SetRequestResponse(absl::string_view request_id,
                                  const std::string& response) override;
  void SetRequestResponseAsync(std::string request_id, std::string response,
                               std::function<void(absl::Status)> done) override;
  absl::StatusOr<uint64_t> ExpireRequests(int64_t cutoff_unix_nanos) override;

 private:
  prometheus::Counter& commit_failures_;
  prometheus::Counter& load_failures_;
  prometheus::Counter& find_request_failures_;
  prometheus::Counter& set_request_response_failures_;
  prometheus::Counter& expire_requests_failures_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_OBSERVABILITY_INSTRUMENTED_STATE_STORE_H_
