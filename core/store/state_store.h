// StateStore: where the registry's state lives durably (core/store/state_records.h).
//
// Contract:
//   - Commit applies a whole StoreBatch atomically: on OK every record is in and durable at the
//     store's level (durability() below); on an error nothing of it is (the store is unchanged).
//   - Every method is thread-safe. Commit is called with the registry's group (and domain) mutex
//     held, so implementations never call back into the registry and never wait on anything but
//     their own (leaf) locks, their I/O and their own committer thread (SqliteStateStore's
//     group commit: a Commit waits for the transaction that holds it, which never waits on the
//     registry).
//   - Errors carry reasons (core/error.h): UNAVAILABLE (STORE_WRITE_FAILED) for a failed write;
//     DATA_LOSS (STATE_CORRUPT) for a store that cannot be read back; FAILED_PRECONDITION
//     (STATE_LOCKED) for one another process holds; INVALID_ARGUMENT (REQUEST_ID_REUSED) is not the
//     store's business (the server compares fingerprints).
#ifndef IOMMUD_CORE_STORE_STATE_STORE_H_
#define IOMMUD_CORE_STORE_STATE_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/store/state_records.h"

namespace iommud {

enum class StoreDurability {
  kNone,          // in memory: gone with the process (tests, --state=memory)
  kProcessCrash,  // survives kill -9 of the daemon (SQLite WAL, synchronous=NORMAL)
  kPowerLoss,     // survives power loss / kernel crash (SQLite WAL, synchronous=FULL)
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  virtual absl::string_view kind() const = 0;  // "sqlite", "memory"
  virtual StoreDurability durability() const = 0;

  // Applies `batch` atomically (see the contract above). An empty batch is OK and writes nothing.
  virtual absl::Status Commit(const StoreBatch& batch) = 0;

  // Everything committed so far (request records excepted).
  virtual absl::StatusOr<StoreSnapshot> Load() = 0;

  // --- Idempotency records (the bounded window of request ids) ---
  // The record of `request_id`, or nullopt if there is none (never stored, or expired).
  virtual absl::StatusOr<std::optional<RequestRecord>> FindRequest(absl::string_view request_id) = 0;
  // Fills in the response of a record Commit stored; NOT_FOUND (REQUEST_NOT_FOUND) if there is none.
  virtual absl::Status SetRequestResponse(absl::string_view request_id,
                                          const std::string& response) = 0;
  // SetRequestResponse without waiting for it: `done` gets its status once the reply is stored
  // (durable at the store's level), on any thread, possibly before this returns. `done` must not
  // call back into the store. A store that cannot do better runs SetRequestResponse, then `done`
  // (the default). SqliteStateStore queues the write for its committer and returns at once.
  virtual void SetRequestResponseAsync(std::string request_id, std::string response,
                                       std::function<void(absl::Status)> done) {
    done(SetRequestResponse(request_id, response));
  }
  // Drops the records older than `cutoff_unix_nanos`; returns how many went.
  virtual absl::StatusOr<uint64_t> ExpireRequests(int64_t cutoff_unix_nanos) = 0;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_STORE_STATE_STORE_H_
