// IdempotencyKeeper: runs each mutating request that carries a request_id at most once per caller
// identity within a window, and answers retries with the original result.
//
// The record of a request goes into the state store in the same transaction as the first change the
// request makes: Run hands the handler a CallContext carrying the record (core/store/
// call_context.h), which the handler passes to its registry call, so "acknowledged" and
// "remembered" cannot disagree after a crash, whatever thread the registry commits on; the
// serialized reply is added right after the handler returns. Contract of Run:
//   - no request_id: the handler runs, nothing is remembered;
//   - an invalid id (empty is "none"; 1..kMaxRequestIdBytes printable ASCII otherwise):
//     INVALID_ARGUMENT INVALID_REQUEST_ID, nothing runs;
//   - an id this caller used within the window for the same method and the same fields (the
//     fingerprint: SHA-256 of the method and the deterministically serialized request without its
//     id): the stored reply (a success, or the error of a request that failed after changing
//     something); if the daemon died between the change and storing the reply, the reply is rebuilt
//     from the state now (`rebuild`, given the record's result_ref) and stored;
//   - the same id with other fields or another method: INVALID_ARGUMENT REQUEST_ID_REUSED;
//   - the same id while the first request is still running: ABORTED REQUEST_IN_PROGRESS;
//   - otherwise the handler runs; a success is remembered (a success that changed nothing durable
//     is remembered by a commit of its record alone), a failure that changed nothing is not: a
//     failed request leaves no trace and a retry runs it again.
// Store errors while looking up are returned as they are (UNAVAILABLE ...) and nothing runs.
// Records older than the window are ignored and removed by ExpireNow (Start runs it periodically).
// Exported: iommud_request_ids_total{outcome} (first, replayed, rebuilt, reused, in_progress,
// invalid) and iommud_request_ids_expired_total. Thread-safe.
#ifndef IOMMUD_SERVER_API_IDEMPOTENCY_H_
#define IOMMUD_SERVER_API_IDEMPOTENCY_H_

#include <google/protobuf/message.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "core/store/call_context.h"
#include "core/store/state_store.h"

namespace iommud {

inline constexpr size_t kMaxRequestIdBytes = 128;
inline constexpr absl::Duration kDefaultRequestIdWindow = absl::Hours(24);

// OK for "" (no id) and for 1..kMaxRequestIdBytes characters in '!'..'~'; else INVALID_ARGUMENT
// INVALID_REQUEST_ID.
absl::Status ValidateRequestId(absl::string_view request_id);

class IdempotencyKeeper {
 public:
  // `store` and `clock` (not owned) must outlive this; `store` null: ids are validated and
  // otherwise ignored. `metrics` (not owned) may be null. `window` must be positive.
  IdempotencyKeeper(StateStore* store, Clock* clock, absl::Duration window,
                    prometheus::Registry* metrics);
  ~IdempotencyKeeper();  // Stop()
  IdempotencyKeeper(const IdempotencyKeeper&) = delete;
  IdempotencyKeeper& operator=(const IdempotencyKeeper&) = delete;

  absl::Duration window() const { return window_; }

  // See the contract above. `principal` is the caller's identity (ids are per principal);
  // `request` is the request as the handler sees it (owner already rewritten).
  template <typename Request, typename Response>
  absl::Status Run(absl::string_view method, absl::string_view principal, const Request& request,
                   Response* response,
                   absl::FunctionRef<absl::Status(const Request&, Response*, CallContext*)> handler,
                   absl::FunctionRef<absl::Status(uint64_t result_ref, Response*)> rebuild) {
    if (request.request_id().empty()) {
      CallContext none;
      return handler(request, response, &none);
    }
    Request without_id = request;
    without_id.clear_request_id();
    return RunMessage(
        method, principal, request.request_id(), without_id, response,
        [&](CallContext* context) { return handler(request, response, context); },
        [&](uint64_t result_ref) { return rebuild(result_ref, response); });
  }

  // Removes the records older than the window; returns how many went.
  absl::StatusOr<uint64_t> ExpireNow();
  // Runs ExpireNow every `interval` on a thread of its own (none if not positive). Call at most
  // once.
  void Start(absl::Duration interval);
  // Stops that thread. Idempotent.
  void Stop();

 private:
  absl::Status RunMessage(absl::string_view method, absl::string_view principal,
                          absl::string_view request_id,
                          const google::protobuf::Message& request_without_id,
                          google::protobuf::Message* response,
                          absl::FunctionRef<absl::Status(CallContext*)> handler,
                          absl::FunctionRef<absl::Status(uint64_t)> rebuild);
  // Answers a retry from its record. Called with the key marked in flight.
  absl::Status Replay(const RequestRecord& record, google::protobuf::Message* response,
                      absl::FunctionRef<absl::Status(uint64_t)> rebuild);
  // Stores the reply of a request that ran (its record was committed with its change, or is
  // committed now alone when it changed nothing durable). Failures are logged: a retry then
  // rebuilds the reply or, for a record that never got in, runs the request again. With
  // `committed` the reply is stored without waiting (StateStore::SetRequestResponseAsync): the
  // key moves from in_flight_ to unstored_replies_ until it is, and Remember returns true.
  bool Remember(RequestRecord record, bool committed, const absl::Status& status,
                const google::protobuf::Message& response);
  void Count(prometheus::Counter* counter) {
    if (counter != nullptr) counter->Increment();
  }
  void Loop(absl::Duration interval);

  StateStore* const store_;
  Clock* const clock_;
  const absl::Duration window_;

  prometheus::Counter* first_ = nullptr;
  prometheus::Counter* replayed_ = nullptr;
  prometheus::Counter* rebuilt_ = nullptr;
  prometheus::Counter* reused_ = nullptr;
  prometheus::Counter* in_progress_ = nullptr;
  prometheus::Counter* invalid_ = nullptr;
  prometheus::Counter* expired_ = nullptr;

  absl::Mutex mu_;
  absl::flat_hash_set<std::string> in_flight_ ABSL_GUARDED_BY(mu_);  // store keys
  // Requests answered whose reply Remember is still storing (by store key; the record with its
  // reply): a retry is answered from here.
  absl::flat_hash_map<std::string, RequestRecord> unstored_replies_ ABSL_GUARDED_BY(mu_);
  absl::CondVar replies_changed_;  // an entry of unstored_replies_ went
  absl::CondVar stop_changed_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_IDEMPOTENCY_H_
