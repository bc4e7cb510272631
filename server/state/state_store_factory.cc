#include "server/state/state_store_factory.h"

#include <sys/stat.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/status_macros.h"
#include "core/store/in_memory_state_store.h"
#include "core/store/sqlite_state_store.h"

namespace iommud {
namespace {

absl::Status InvalidFlag(absl::string_view flag, absl::string_view value, absl::string_view why) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFlag,
               absl::StrCat("--", flag, "=", value, ": ", why),
               {{"flag", std::string(flag)}, {"value", std::string(value)}});
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// The reason a missing state file may not be created, or "" if it may.
std::string PreviousStateEvidence(const StateStoreOptions& options, const std::string& path) {
  std::vector<std::string> found;
  for (const std::string& evidence : options.previous_state_evidence) {
    if (Exists(evidence)) found.push_back(evidence);
  }
  for (const char* suffix : {"-wal", "-journal"}) {
    if (Exists(path + suffix)) found.push_back(path + suffix);
  }
  return absl::StrJoin(found, ", ");
}

// Adds the file to an error of the store that does not name it.
absl::Status NamingFile(const absl::Status& status, const std::string& path) {
  if (absl::StrContains(status.message(), path)) return status;
  ErrorMetadata metadata = GetErrorMetadata(status);
  metadata.emplace("path", path);
  const std::string reason = ErrorReason(status);
  return Error(status.code(), reason.empty() ? reason::kStateOpenFailed : reason,
               absl::StrCat("state file '", path, "': ", status.message()), metadata);
}

}  // namespace

absl::StatusOr<StateKind> ParseStateKind(absl::string_view value) {
  const std::string lower = absl::AsciiStrToLower(value);
  if (lower == "sqlite") return StateKind::kSqlite;
  if (lower == "memory") return StateKind::kMemory;
  return InvalidFlag("state", value, "expected sqlite or memory");
}

absl::StatusOr<StateSync> ParseStateSync(absl::string_view value) {
  const std::string lower = absl::AsciiStrToLower(value);
  if (lower == "normal") return StateSync::kNormal;
  if (lower == "full") return StateSync::kFull;
  return InvalidFlag("state_sync", value, "expected normal or full");
}

std::string StateFilePath(const StateStoreOptions& options, const std::string& state_dir) {
  return options.path.empty() ? absl::StrCat(state_dir, "/state.db") : options.path;
}

absl::StatusOr<OpenedStateStore> OpenStateStore(const StateStoreOptions& options,
                                                const std::string& state_dir) {
  OpenedStateStore opened;
  if (options.kind == StateKind::kMemory) {
    opened.store = std::make_unique<InMemoryStateStore>();
    opened.created = true;
    return opened;
  }
  opened.path = StateFilePath(options, state_dir);
  const bool exists = Exists(opened.path);
  if (exists && options.init) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kStateExists,
                 absl::StrCat("--init_state: the state file '", opened.path,
                              "' exists; move it away to start with a new empty store"),
                 {{"path", opened.path}});
  }
  if (!exists && !options.init) {
    const std::string evidence = PreviousStateEvidence(options, opened.path);
    if (!evidence.empty()) {
      return Error(absl::StatusCode::kNotFound, reason::kStateMissing,
                   absl::StrCat("the state file '", opened.path, "' is missing but ", evidence,
                                " survived: restore the file, or start with --init_state to begin "
                                "with an empty registry"),
                   {{"path", opened.path}, {"evidence", evidence}});
    }
  }
  SqliteStateStoreOptions sqlite;
  sqlite.path = opened.path;
  sqlite.create_if_missing = !exists;
  sqlite.sync = options.sync == StateSync::kFull ? SqliteSync::kFull : SqliteSync::kNormal;
  absl::StatusOr<std::unique_ptr<SqliteStateStore>> store = SqliteStateStore::Open(sqlite);
  if (!store.ok()) return NamingFile(store.status(), opened.path);
  opened.store = std::move(*store);
  opened.created = !exists;
  return opened;
}

}  // namespace iommud
