// SqliteStateStore: the StateStore in one SQLite file (the daemon's state under its state dir).
//
// The file: WAL journal, one table per record kind plus `meta` (the schema version and the id
// counters) and `requests` (indexed by time for ExpireRequests); see sqlite_state_store.cc for the
// schema and the encoding of list fields.
//
// Group commit: Commit and SetRequestResponse put their write on a queue and wait until a
// committer thread (one per store) has made it durable; a write that finds no commit running and
// nothing queued is committed at once on its caller's thread (a group of one, no hand-off). The
// committer takes every write queued while it was busy and applies them, in queue order, in one
// BEGIN IMMEDIATE ... COMMIT transaction: one WAL commit (and with kFull one fsync) for all of
// them. A call returns only after the transaction that holds its write has committed. A write
// that fails (a statement refused) fails alone: the transaction is rolled back and run again
// without it, so the others still land and the failed one leaves nothing. A failed COMMIT fails every write of the group
// (UNAVAILABLE STORE_WRITE_FAILED), and none of them is in the store. Writes from one thread land
// in the order it made them (each call waits for its own), which is what keeps a group's changes
// in order: the registry commits with the group's mutex held.
//
// Durability: synchronous=NORMAL (kNormal) makes a commit survive kill -9 of the daemon (the WAL
// frames are written before COMMIT returns; the OS keeps them), synchronous=FULL (kFull) also
// fsyncs the WAL at every commit, so it survives power loss and kernel crashes.
//
// Exclusivity: the connection runs in locking_mode=EXCLUSIVE and takes the write lock at Open, so
// no other connection, in this process or another, can open the file while this store lives (and
// external tools such as the sqlite3 shell cannot read it either until the daemon stops).
//
// Thread-safe: one connection behind one mutex (a leaf lock: nothing else is taken under it),
// used by the committer for each group and by the reads (Load, FindRequest) and ExpireRequests
// in between; the queue has a leaf mutex of its own, never held with the connection's.
#ifndef IOMMUD_CORE_STORE_SQLITE_STATE_STORE_H_
#define IOMMUD_CORE_STORE_SQLITE_STATE_STORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

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
  // Tests only: called by the committer, with no lock held, after it took a group of
  // `writes` queued writes and before it applies them (e.g. to hold it while more writes queue).
  std::function<void(size_t writes)> before_group_for_test;
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
  // Queues the write for the committer and returns at once: it joins the next group (it never
  // commits on the caller's thread), and `done` runs on the thread that committed it.
  void SetRequestResponseAsync(std::string request_id, std::string response,
                               std::function<void(absl::Status)> done) override;
  absl::StatusOr<uint64_t> ExpireRequests(int64_t cutoff_unix_nanos) override;

  const std::string& path() const { return options_.path; }

  // Group-commit figures: transactions the committer committed (or tried to), writes queued in
  // all, and writes waiting for the committer now.
  uint64_t transactions() const { return transactions_.load(std::memory_order_relaxed); }
  uint64_t writes() const { return writes_.load(std::memory_order_relaxed); }
  size_t queued_writes() const;

 private:
  struct Statements;  // the prepared statements, cached for the connection's lifetime
  struct Write;       // one queued Commit or SetRequestResponse (see the .cc)

  SqliteStateStore(const SqliteStateStoreOptions& options, sqlite3* db,
                   std::unique_ptr<Statements> statements);

  // Queues `write`, waits until the committer has run it, returns its status.
  absl::Status Submit(Write* write) ABSL_LOCKS_EXCLUDED(queue_mu_, mu_);
  void CommitterLoop() ABSL_LOCKS_EXCLUDED(queue_mu_, mu_);
  // Commits `group` (taken with committing_ set), marks its writes done, clears committing_.
  void RunGroup(const std::vector<Write*>& group) ABSL_LOCKS_EXCLUDED(queue_mu_, mu_);
  // Applies `group` in one transaction (see the class comment) and sets each write's status.
  void CommitGroupLocked(const std::vector<Write*>& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One write's statements inside the open transaction.
  absl::Status ApplyLocked(const Write& write) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ApplyBatchLocked(const StoreBatch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RaiseCountersLocked(uint64_t next_group_id, uint64_t next_domain_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status LoadLocked(StoreSnapshot* snapshot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SqliteStateStoreOptions options_;
  mutable absl::Mutex mu_;
  sqlite3* const db_ ABSL_PT_GUARDED_BY(mu_);
  std::unique_ptr<Statements> statements_ ABSL_PT_GUARDED_BY(mu_);

  mutable absl::Mutex queue_mu_;
  absl::CondVar queue_changed_;  // a write queued, or stop_
  std::vector<Write*> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool stop_ ABSL_GUARDED_BY(queue_mu_) = false;
  // A group is being committed (by the committer, or by a caller that found nothing running or
  // queued and commits its own write at once, without a thread hand-off).
  bool committing_ ABSL_GUARDED_BY(queue_mu_) = false;
  std::atomic<uint64_t> transactions_{0};
  std::atomic<uint64_t> writes_{0};
  std::thread committer_;  // last: started once everything above is constructed
};

}  // namespace iommud

#endif  // IOMMUD_CORE_STORE_SQLITE_STATE_STORE_H_
