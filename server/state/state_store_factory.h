// Opening the daemon's StateStore (--state, --state_file, --state_sync, --init_state): which store,
// where, and whether a missing file may be created.
//
// A missing SQLite file is created only when nothing suggests that state existed before: with
// --init_state, or when none of the `previous_state_evidence` files (e.g. the emulated backend's
// memory file: hardware that outlived the daemon) and none of the file's own WAL/journal siblings
// exist. Otherwise the daemon refuses to start (NOT_FOUND STATE_MISSING) instead of starting empty.
#ifndef IOMMUD_SERVER_STATE_STATE_STORE_FACTORY_H_
#define IOMMUD_SERVER_STATE_STATE_STORE_FACTORY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/store/state_store.h"

namespace iommud {

enum class StateKind { kSqlite, kMemory };
enum class StateSync { kNormal, kFull };

struct StateStoreOptions {
  StateKind kind = StateKind::kSqlite;
  std::string path;  // the SQLite file; "" = <state_dir>/state.db
  // kNormal: WAL with synchronous=NORMAL, survives kill -9 of the daemon (a power loss may drop the
  // last commits); kFull: synchronous=FULL, every acknowledged change survives a power loss too.
  StateSync sync = StateSync::kNormal;
  bool init = false;  // create a new empty store; refused if the file exists (STATE_EXISTS)
  // Files whose existence means the host had state before (see the file comment).
  std::vector<std::string> previous_state_evidence;
};

struct OpenedStateStore {
  std::unique_ptr<StateStore> store;
  std::string path;      // "" for the in-memory store
  bool created = false;  // the file did not exist and was created empty by this call
};

// --state / --state_sync values ("sqlite"/"memory", "normal"/"full"); INVALID_ARGUMENT (INVALID_FLAG).
absl::StatusOr<StateKind> ParseStateKind(absl::string_view value);
absl::StatusOr<StateSync> ParseStateSync(absl::string_view value);

// The SQLite file `options` name for `state_dir`.
std::string StateFilePath(const StateStoreOptions& options, const std::string& state_dir);

// Opens (or creates, see above) the store. Errors name the file and the reason:
// NOT_FOUND (STATE_MISSING), FAILED_PRECONDITION (STATE_EXISTS) for --init_state on an existing
// file, DATA_LOSS (STATE_CORRUPT), FAILED_PRECONDITION (STATE_LOCKED), or the store's other errors.
absl::StatusOr<OpenedStateStore> OpenStateStore(const StateStoreOptions& options,
                                                const std::string& state_dir);

}  // namespace iommud

#endif  // IOMMUD_SERVER_STATE_STATE_STORE_FACTORY_H_
