// SqliteStateStore: the StateStore in one SQLite file (the daemon's state under its state dir).
//
// The file: WAL journal, one table per record kind plus `meta` (the schema version and the id
// counters) and `requests` (indexed by time for ExpireRequests); see sqlite_state_store.cc for the
// schema and the encoding of list fields. Every Commit is one BEGIN IMMEDIATE ... COMMIT
// transaction; a failed one is rolled back and reported as UNAVAILABLE (STORE_WRITE_FAILED).
//
// Durability: synchronous=NORMAL (kNormal) makes a commit survive kill -9 of the daemon (the WAL
// frames are written before COMMIT returns; the OS keeps them), synchronous=FULL (kFull) also
// fsyncs the WAL at every commit, so it survives power loss and kernel crashes.
//
// Exclusivity: the connection runs in locking_mode=EXCLUSIVE and takes the write lock at Open, so
// no other connection, in this process or another, can open the file while this store lives (and
// external tools such as the sqlite3 shell cannot read it either until the daemon stops).
//
// Thread-safe: one connection behind one mutex (a leaf lock: nothing else is taken under it).
#ifndef IOMMUD_CORE_STORE_SQLITE_STATE_STORE_H_
#define IOMMUD_CORE_STORE_SQLITE_STATE_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/store/state_store.h"

struct sqlite3;

namespace iommud {

enum class SqliteSync {
  kNormal,  // synchronous=NORMAL: survives a process crash (StoreDurability::kProcessCrash)
  kFull,    // synchronous=FULL: survives power loss (StoreDurability::kPowerLoss)
};

struct SqliteStateStoreOptions {
  std::string path;                // the database file
  bool create_if_missing = false;  // create (and initialize) the file if there is none
  SqliteSync sync = SqliteSync::kNormal;
};

class SqliteStateStore : public StateStore {
 public:
  // The schema version this build writes and reads.
  // Version 1 files (before per-device attach) and version 2 files (before per-device reserved
  // regions) are migrated to it when opened.
  static constexpr int64_t kSchemaVersion = 3;

  // Opens (or creates) the store at `options.path`. Errors, each naming the path (metadata "path"):
  //   NOT_FOUND (STATE_MISSING): no file and !create_if_missing;
  //   DATA_LOSS (STATE_CORRUPT): not an SQLite file, fails PRAGMA quick_check, has no iommud schema,
  //     or a schema version other than 1, 2 (migrated) and kSchemaVersion (metadata "schema_version");
  //   FAILED_PRECONDITION (STATE_LOCKED): another store (this process or another) has it open;
  //   UNAVAILABLE (STATE_OPEN_FAILED): the file cannot be opened or created (permissions, I/O).
  // A new file is initialized under a temporary name and linked into place once complete, so a
  // crash during creation never leaves a half-initialized file at `path`.
  static absl::StatusOr<std::unique_ptr<SqliteStateStore>> Open(
      const SqliteStateStoreOptions& options);

  ~SqliteStateStore() override;
  SqliteStateStore(const SqliteStateStore&) = delete;
  SqliteStateStore& operator=(const SqliteStateStore&) = delete;

  absl::string_view kind() const override { return "sqlite"; }
  StoreDurability durability() const override;
  absl::Status Commit(const StoreBatch& batch) override;
  // DATA_LOSS (STATE_CORRUPT) when a row cannot be read back or decoded.
  absl::StatusOr<StoreSnapshot> Load() override;
  absl::StatusOr<std::optional<RequestRecord>> FindRequest(absl::string_view request_id) override;
  absl::Status SetRequestResponse(absl::string_view request_id,
                                  const std::string& response) override;
  absl::StatusOr<uint64_t> ExpireRequests(int64_t cutoff_unix_nanos) override;

  const std::string& path() const { return options_.path; }

 private:
  struct Statements;  // the prepared statements, cached for the connection's lifetime

  SqliteStateStore(const SqliteStateStoreOptions& options, sqlite3* db,
                   std::unique_ptr<Statements> statements);

  absl::Status CommitLocked(const StoreBatch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status LoadLocked(StoreSnapshot* snapshot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SqliteStateStoreOptions options_;
  mutable absl::Mutex mu_;
  sqlite3* const db_ ABSL_PT_GUARDED_BY(mu_);
  std::unique_ptr<Statements> statements_ ABSL_PT_GUARDED_BY(mu_);
};

}  // namespace iommud

#endif  // IOMMUD_CORE_STORE_SQLITE_STATE_STORE_H_
