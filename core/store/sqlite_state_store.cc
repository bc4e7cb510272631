#include "core/store/sqlite_state_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/status_macros.h"
#include "core/sync.h"

namespace iommud {
namespace {

// The schema, version 3 (version 1 lacked device_groups.attached_devices, version 2
// devices.reserved_regions; Open migrates both). Ids and 64-bit values are stored bit for bit as SQLite's signed 64-bit
// integers (Load sorts by the unsigned value). Enumerations are stored by name. List fields use
// these compact text encodings:
//   devices.alias_rids        decimal RIDs joined by ','                   "33,34"
//   units.domain_types        DomainTypeName()s joined by ','              "BLOCKED,IDENTITY"
//   units.reserved_regions    decimal start '+' size, joined by ','        "4276092928+1048576"
//   groups.claimed_devices    each name as <decimal length> ':' <bytes>    "12:0000:03:00.05:dev-b"
//   groups.attached_devices   as claimed_devices
//   devices.reserved_regions  decimal start '+' length '+' type name, joined by ','
//                                                        "4096+8192+direct,65536+4096+msi"
// `meta` holds the schema version and the two id counters (they only grow: max(old, new)).
// Version 1 -> 2: per-device attach (an attached group of a version-1 file has no attached devices
// recorded; Registry::Recover takes them all as attached, as AttachGroup attached them).
constexpr char kMigrateV1ToV2[] = R"sql(
ALTER TABLE device_groups ADD COLUMN attached_devices TEXT NOT NULL DEFAULT '';
UPDATE meta SET value = 2 WHERE key = 'schema_version';
)sql";
// Version 2 -> 3: per-device typed reserved regions (devices of a version-2 file have none: the
// unit's regions applied to them alone).
constexpr char kMigrateV2ToV3[] = R"sql(
ALTER TABLE devices ADD COLUMN reserved_regions TEXT NOT NULL DEFAULT '';
UPDATE meta SET value = 3 WHERE key = 'schema_version';
)sql";

constexpr char kSchema[] = R"sql(
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE units (
  name TEXT PRIMARY KEY, pgsize_bitmap INTEGER NOT NULL, iova_bits INTEGER NOT NULL,
  max_rids INTEGER NOT NULL, domain_types TEXT NOT NULL, reserved_regions TEXT NOT NULL,
  release_domain INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE domains (
  id INTEGER PRIMARY KEY, unit TEXT NOT NULL, type TEXT NOT NULL, owner TEXT NOT NULL,
  core_owned INTEGER NOT NULL);
CREATE TABLE devices (
  name TEXT PRIMARY KEY, unit TEXT NOT NULL, rid INTEGER NOT NULL, alias_rids TEXT NOT NULL,
  group_id INTEGER NOT NULL, probe_seq INTEGER NOT NULL, binding TEXT NOT NULL,
  reserved_regions TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
CREATE TABLE device_groups (
  id INTEGER PRIMARY KEY, unit TEXT NOT NULL, domain INTEGER NOT NULL,
  default_domain INTEGER NOT NULL, blocking_domain INTEGER NOT NULL, owner TEXT NOT NULL,
  owner_cnt INTEGER NOT NULL, group_claimed INTEGER NOT NULL, claimed_devices TEXT NOT NULL,
  lease_expiry_unix_nanos INTEGER NOT NULL, lease_ttl_nanos INTEGER NOT NULL,
  attached_devices TEXT NOT NULL DEFAULT '');
CREATE TABLE mappings (
  domain INTEGER NOT NULL, iova INTEGER NOT NULL, paddr INTEGER NOT NULL, size INTEGER NOT NULL,
  prot INTEGER NOT NULL, PRIMARY KEY (domain, iova)) WITHOUT ROWID;
CREATE TABLE requests (
  request_id TEXT PRIMARY KEY, method TEXT NOT NULL, fingerprint BLOB NOT NULL,
  result_ref INTEGER NOT NULL, response BLOB, time_unix_nanos INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX requests_by_time ON requests (time_unix_nanos);
INSERT INTO meta (key, value) VALUES ('schema_version', 3), ('next_group_id', 1),
  ('next_domain_id', 1);
)sql";

int64_t ToSql(uint64_t value) { return static_cast<int64_t>(value); }
uint64_t FromSql(int64_t value) { return static_cast<uint64_t>(value); }

ErrorMetadata PathMetadata(absl::string_view path) { return {{"path", std::string(path)}}; }

absl::Status Corrupt(absl::string_view path, absl::string_view what) {
  return Error(absl::StatusCode::kDataLoss, reason::kStateCorrupt,
               absl::StrCat("state file ", path, " is corrupt: ", what), PathMetadata(path));
}

absl::Status WriteFailed(absl::string_view path, absl::string_view what) {
  return Error(absl::StatusCode::kUnavailable, reason::kStoreWriteFailed,
               absl::StrCat("writing state file ", path, " failed: ", what), PathMetadata(path));
}

absl::Status OpenFailed(absl::string_view path, absl::string_view what) {
  return Error(absl::StatusCode::kUnavailable, reason::kStateOpenFailed,
               absl::StrCat("cannot open state file ", path, ": ", what), PathMetadata(path));
}

std::string SqliteMessage(sqlite3* db, int rc) {
  return absl::StrCat(db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc), " (sqlite code ",
                      rc, ")");
}

// The error of a failed SQLite call while opening: a lock, corruption, or anything else.
absl::Status OpenError(absl::string_view path, sqlite3* db, int rc, absl::string_view during) {
  const std::string message = absl::StrCat(during, ": ", SqliteMessage(db, rc));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Error(absl::StatusCode::kFailedPrecondition, reason::kStateLocked,
                   absl::StrCat("state file ", path,
                                " is in use by another iommud (or another store): ", message),
                   PathMetadata(path));
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_FORMAT:
    case SQLITE_ERROR:  // e.g. "no such table": not our schema
      return Corrupt(path, message);
    default:
      return OpenFailed(path, message);
  }
}

// Runs `sql` (no rows expected, or rows ignored).
int Exec(sqlite3* db, const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr); }

// The first column of the first row of `sql` as text, or the error code.
int QueryText(sqlite3* db, const char* sql, std::string* out) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return rc;
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    out->assign(text != nullptr ? reinterpret_cast<const char*>(text) : "",
                static_cast<size_t>(sqlite3_column_bytes(stmt, 0)));
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    out->clear();
    rc = SQLITE_OK;
  }
  sqlite3_finalize(stmt);
  return rc;
}

// A prepared statement in use: binds parameters in order, steps, and resets itself (keeping the
// cached statement) when it goes out of scope.
class Query {
 public:
  explicit Query(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~Query() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& Int(int64_t value) {
    Check(sqlite3_bind_int64(stmt_, ++param_, value));
    return *this;
  }
  Query& Text(absl::string_view value) {
    Check(sqlite3_bind_text(stmt_, ++param_, value.data() != nullptr ? value.data() : "",
                            static_cast<int>(value.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Query& Blob(absl::string_view value) {
    Check(sqlite3_bind_blob(stmt_, ++param_, value.data() != nullptr ? value.data() : "",
                            static_cast<int>(value.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Query& Null() {
    Check(sqlite3_bind_null(stmt_, ++param_));
    return *this;
  }

  // Steps once: SQLITE_ROW, SQLITE_DONE, or the error (a failed bind included).
  int Step() { return bind_rc_ != SQLITE_OK ? bind_rc_ : sqlite3_step(stmt_); }
  // Runs a statement that returns no rows: SQLITE_DONE or the error.
  int Run() {
    const int rc = Step();
    return rc == SQLITE_ROW ? SQLITE_DONE : rc;
  }

  int64_t ColumnInt(int i) const { return sqlite3_column_int64(stmt_, i); }
  std::string ColumnText(int i) const {
    const void* data = sqlite3_column_blob(stmt_, i);
    const int size = sqlite3_column_bytes(stmt_, i);
    return data != nullptr ? std::string(static_cast<const char*>(data), size) : std::string();
  }
  bool ColumnIsNull(int i) const { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }

 private:
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }
  sqlite3_stmt* const stmt_;
  int param_ = 0;
  int bind_rc_ = SQLITE_OK;
};

// --- List encodings (see kSchema) ---

std::string EncodeRids(const std::vector<Rid>& rids) { return absl::StrJoin(rids, ","); }

bool DecodeRids(absl::string_view text, std::vector<Rid>* rids) {
  rids->clear();
  if (text.empty()) return true;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    uint32_t rid = 0;
    if (!absl::SimpleAtoi(part, &rid)) return false;
    rids->push_back(rid);
  }
  return true;
}

std::string EncodeDomainTypes(const std::vector<DomainType>& types) {
  return absl::StrJoin(types, ",", [](std::string* out, DomainType type) {
    absl::StrAppend(out, DomainTypeName(type));
  });
}

bool ParseDomainType(absl::string_view name, DomainType* type) {
  for (DomainType candidate : {DomainType::kBlocked, DomainType::kIdentity, DomainType::kUnmanaged,
                               DomainType::kDma, DomainType::kDmaFq}) {
    if (DomainTypeName(candidate) == name) {
      *type = candidate;
      return true;
    }
  }
  return false;
}

bool DecodeDomainTypes(absl::string_view text, std::vector<DomainType>* types) {
  types->clear();
  if (text.empty()) return true;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    DomainType type;
    if (!ParseDomainType(part, &type)) return false;
    types->push_back(type);
  }
  return true;
}

bool ParseBinding(absl::string_view name, DriverBinding* binding) {
  for (DriverBinding candidate :
       {DriverBinding::kNone, DriverBinding::kKernelDriver, DriverBinding::kUserOwned}) {
    if (DriverBindingName(candidate) == name) {
      *binding = candidate;
      return true;
    }
  }
  return false;
}

std::string EncodeRegions(const std::vector<IovaRange>& regions) {
  return absl::StrJoin(regions, ",", [](std::string* out, const IovaRange& range) {
    absl::StrAppend(out, range.start, "+", range.size);
  });
}

bool DecodeRegions(absl::string_view text, std::vector<IovaRange>* regions) {
  regions->clear();
  if (text.empty()) return true;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::vector<absl::string_view> fields = absl::StrSplit(part, '+');
    IovaRange range;
    if (fields.size() != 2 || !absl::SimpleAtoi(fields[0], &range.start) ||
        !absl::SimpleAtoi(fields[1], &range.size)) {
      return false;
    }
    regions->push_back(range);
  }
  return true;
}

std::string EncodeTypedRegions(const std::vector<ReservedRegion>& regions) {
  return absl::StrJoin(regions, ",", [](std::string* out, const ReservedRegion& region) {
    absl::StrAppend(out, region.start, "+", region.length, "+",
                    ReservedRegionTypeName(region.type));
  });
}

bool DecodeTypedRegions(absl::string_view text, std::vector<ReservedRegion>* regions) {
  regions->clear();
  if (text.empty()) return true;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::vector<absl::string_view> fields = absl::StrSplit(part, '+');
    ReservedRegion region;
    if (fields.size() != 3 || !absl::SimpleAtoi(fields[0], &region.start) ||
        !absl::SimpleAtoi(fields[1], &region.length) ||
        !ParseReservedRegionType(fields[2], &region.type)) {
      return false;
    }
    regions->push_back(region);
  }
  return true;
}

std::string EncodeNames(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) absl::StrAppend(&out, name.size(), ":", name);
  return out;
}

bool DecodeNames(absl::string_view text, std::vector<std::string>* names) {
  names->clear();
  while (!text.empty()) {
    const size_t colon = text.find(':');
    size_t size = 0;
    if (colon == absl::string_view::npos || !absl::SimpleAtoi(text.substr(0, colon), &size) ||
        size > text.size() - colon - 1) {
      return false;
    }
    names->emplace_back(text.substr(colon + 1, size));
    text.remove_prefix(colon + 1 + size);
  }
  return true;
}

// Creates an initialized store file at `path`: built under a temporary name, then linked into
// place (an existing file at `path`, e.g. created meanwhile by another process, is kept).
absl::Status CreateStoreFile(const std::string& path) {
  const std::string temp = absl::StrCat(path, ".init-", getpid());
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    unlink(absl::StrCat(temp, suffix).c_str());
  }
  // Private from the start (the state directory may be group-readable, --socket_group): SQLite
  // opens the empty file as a new database and gives its -wal and -shm files the same mode.
  const int created = open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (created < 0) {
    return OpenFailed(path, absl::StrCat("creating ", temp, ": ", std::strerror(errno)));
  }
  close(created);
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(temp.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  std::string mode;
  if (rc == SQLITE_OK) rc = QueryText(db, "PRAGMA journal_mode=WAL", &mode);
  if (rc == SQLITE_OK) rc = Exec(db, "PRAGMA synchronous=FULL");
  if (rc == SQLITE_OK) rc = Exec(db, "BEGIN IMMEDIATE");
  if (rc == SQLITE_OK) rc = Exec(db, kSchema);
  if (rc == SQLITE_OK) rc = Exec(db, "COMMIT");
  absl::Status status;
  if (rc != SQLITE_OK) {
    status = OpenFailed(path, absl::StrCat("creating ", temp, ": ", SqliteMessage(db, rc)));
  }
  sqlite3_close_v2(db);  // checkpoints (with fsync) and removes the WAL
  if (status.ok() && link(temp.c_str(), path.c_str()) != 0 && errno != EEXIST) {
    status = OpenFailed(path, absl::StrCat("link from ", temp, ": ", std::strerror(errno)));
  }
  for (const char* suffix : {"", "-wal", "-shm"}) unlink(absl::StrCat(temp, suffix).c_str());
  if (status.ok()) {
    // Make the new directory entry durable too.
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
    const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
      fsync(fd);
      close(fd);
    }
  }
  return status;
}

}  // namespace

struct SqliteStateStore::Statements {
  sqlite3_stmt* begin = nullptr;
  sqlite3_stmt* commit = nullptr;
  sqlite3_stmt* rollback = nullptr;
  sqlite3_stmt* put_unit = nullptr;
  sqlite3_stmt* put_domain = nullptr;
  sqlite3_stmt* delete_domain = nullptr;
  sqlite3_stmt* delete_domain_mappings = nullptr;
  sqlite3_stmt* put_device = nullptr;
  sqlite3_stmt* delete_device = nullptr;
  sqlite3_stmt* put_group = nullptr;
  sqlite3_stmt* delete_group = nullptr;
  sqlite3_stmt* put_mapping = nullptr;
  sqlite3_stmt* delete_mapping = nullptr;
  sqlite3_stmt* put_request = nullptr;
  sqlite3_stmt* raise_counter = nullptr;
  sqlite3_stmt* select_units = nullptr;
  sqlite3_stmt* select_domains = nullptr;
  sqlite3_stmt* select_devices = nullptr;
  sqlite3_stmt* select_groups = nullptr;
  sqlite3_stmt* select_mappings = nullptr;
  sqlite3_stmt* select_meta = nullptr;
  sqlite3_stmt* find_request = nullptr;
  sqlite3_stmt* set_response = nullptr;
  sqlite3_stmt* expire_requests = nullptr;

  std::vector<std::pair<sqlite3_stmt**, const char*>> All() {
    return {
        {&begin, "BEGIN IMMEDIATE"},
        {&commit, "COMMIT"},
        {&rollback, "ROLLBACK"},
        {&put_unit,
         "INSERT OR REPLACE INTO units (name, pgsize_bitmap, iova_bits, max_rids, domain_types, "
         "reserved_regions, release_domain) VALUES (?, ?, ?, ?, ?, ?, ?)"},
        {&put_domain,
         "INSERT OR REPLACE INTO domains (id, unit, type, owner, core_owned) "
         "VALUES (?, ?, ?, ?, ?)"},
        {&delete_domain, "DELETE FROM domains WHERE id = ?"},
        {&delete_domain_mappings, "DELETE FROM mappings WHERE domain = ?"},
        {&put_device,
         "INSERT OR REPLACE INTO devices (name, unit, rid, alias_rids, group_id, probe_seq, "
         "binding, reserved_regions) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"},
        {&delete_device, "DELETE FROM devices WHERE name = ?"},
        {&put_group,
         "INSERT OR REPLACE INTO device_groups (id, unit, domain, default_domain, "
         "blocking_domain, owner, owner_cnt, group_claimed, claimed_devices, "
         "lease_expiry_unix_nanos, lease_ttl_nanos, attached_devices) "
         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
        {&delete_group, "DELETE FROM device_groups WHERE id = ?"},
        {&put_mapping,
         "INSERT OR REPLACE INTO mappings (domain, iova, paddr, size, prot) "
         "VALUES (?, ?, ?, ?, ?)"},
        {&delete_mapping, "DELETE FROM mappings WHERE domain = ? AND iova = ?"},
        {&put_request,
         "INSERT OR REPLACE INTO requests (request_id, method, fingerprint, result_ref, "
         "response, time_unix_nanos) VALUES (?, ?, ?, ?, ?, ?)"},
        {&raise_counter, "UPDATE meta SET value = max(value, ?) WHERE key = ?"},
        {&select_units,
         "SELECT name, pgsize_bitmap, iova_bits, max_rids, domain_types, reserved_regions, "
         "release_domain FROM units"},
        {&select_domains, "SELECT id, unit, type, owner, core_owned FROM domains"},
        {&select_devices,
         "SELECT name, unit, rid, alias_rids, group_id, probe_seq, binding, reserved_regions "
         "FROM devices"},
        {&select_groups,
         "SELECT id, unit, domain, default_domain, blocking_domain, owner, owner_cnt, "
         "group_claimed, claimed_devices, lease_expiry_unix_nanos, lease_ttl_nanos, "
         "attached_devices FROM device_groups"},
        {&select_mappings, "SELECT domain, iova, paddr, size, prot FROM mappings"},
        {&select_meta, "SELECT key, value FROM meta"},
        {&find_request,
         "SELECT request_id, method, fingerprint, result_ref, response, time_unix_nanos "
         "FROM requests WHERE request_id = ?"},
        {&set_response, "UPDATE requests SET response = ? WHERE request_id = ?"},
        {&expire_requests, "DELETE FROM requests WHERE time_unix_nanos < ?"},
    };
  }

  ~Statements() {
    for (auto& [stmt, sql] : All()) sqlite3_finalize(*stmt);
  }
};

absl::StatusOr<std::unique_ptr<SqliteStateStore>> SqliteStateStore::Open(
    const SqliteStateStoreOptions& options) {
  const std::string& path = options.path;
  if (path.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kStateOpenFailed,
                 "the state file path is empty");
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return OpenFailed(path, std::strerror(errno));
    if (!options.create_if_missing) {
      return Error(absl::StatusCode::kNotFound, reason::kStateMissing,
                   absl::StrCat("state file ", path,
                                " does not exist"),
                   PathMetadata(path));
    }
    RETURN_IF_ERROR(CreateStoreFile(path));
  } else if (!S_ISREG(st.st_mode)) {
    return OpenFailed(path, "not a regular file");
  }

  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, &sqlite3_close_v2);
  if (rc != SQLITE_OK) return OpenError(path, raw, rc, "open");
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, 0);  // a held lock is an immediate STATE_LOCKED, never a wait

  // Exclusive locking before the first read: opening the WAL then takes the database file's
  // EXCLUSIVE lock and keeps it for the connection's lifetime (no shared-memory index either).
  rc = Exec(raw, "PRAGMA locking_mode=EXCLUSIVE");
  if (rc != SQLITE_OK) return OpenError(path, raw, rc, "locking_mode");
  std::string mode;
  rc = QueryText(raw, "PRAGMA journal_mode=WAL", &mode);
  if (rc != SQLITE_OK) return OpenError(path, raw, rc, "journal_mode");
  if (mode != "wal") return OpenFailed(path, absl::StrCat("cannot use WAL (journal mode ", mode, ")"));
  rc = Exec(raw, options.sync == SqliteSync::kFull ? "PRAGMA synchronous=FULL"
                                                   : "PRAGMA synchronous=NORMAL");
  if (rc != SQLITE_OK) return OpenError(path, raw, rc, "synchronous");
  // Take the write lock now, so a second store fails here rather than at its first commit.
  rc = Exec(raw, "BEGIN IMMEDIATE");
  if (rc != SQLITE_OK) return OpenError(path, raw, rc, "lock");
  std::string check;
  rc = QueryText(raw, "PRAGMA quick_check", &check);
  if (rc != SQLITE_OK) return OpenError(path, raw, rc, "quick_check");
  if (check != "ok") return Corrupt(path, absl::StrCat("quick_check: ", check));
  std::string version_text;
  rc = QueryText(raw, "SELECT value FROM meta WHERE key = 'schema_version'", &version_text);
  if (rc != SQLITE_OK) return Corrupt(path, "not an iommud state file (no meta table)");
  int64_t version = 0;
  if (!absl::SimpleAtoi(version_text, &version)) {
    return Corrupt(path, "not an iommud state file (no schema version)");
  }
  if (version == 1) {
    rc = Exec(raw, kMigrateV1ToV2);
    if (rc != SQLITE_OK) return OpenError(path, raw, rc, "migrating schema 1 to 2");
    version = 2;
  }
  if (version == 2) {
    rc = Exec(raw, kMigrateV2ToV3);
    if (rc != SQLITE_OK) return OpenError(path, raw, rc, "migrating schema 2 to 3");
    version = 3;
  }
  if (version != kSchemaVersion) {
    ErrorMetadata metadata = PathMetadata(path);
    metadata["schema_version"] = absl::StrCat(version);
    return Error(absl::StatusCode::kDataLoss, reason::kStateCorrupt,
                 absl::StrCat("state file ", path, " has schema version ", version,
                              (version > kSchemaVersion ? " (written by a newer iommud)" : ""),
                              "; this iommud reads version ", kSchemaVersion),
                 metadata);
  }
  rc = Exec(raw, "COMMIT");
  if (rc != SQLITE_OK) return OpenError(path, raw, rc, "lock");

  auto statements = std::make_unique<Statements>();
  for (auto& [stmt, sql] : statements->All()) {
    rc = sqlite3_prepare_v3(raw, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, nullptr);
    if (rc != SQLITE_OK) {
      return Corrupt(path, absl::StrCat("the schema does not match this iommud (", sql,
                                        "): ", SqliteMessage(raw, rc)));
    }
  }
  return std::unique_ptr<SqliteStateStore>(
      new SqliteStateStore(options, db.release(), std::move(statements)));
}

// One queued write: a Commit's batch, or a SetRequestResponse. Lives on the stack of the caller,
// which waits in Submit until the committer sets `done` -- except a SetRequestResponseAsync, which
// is owned by the queue (it holds its id and reply) and is deleted after `on_done` ran.
struct SqliteStateStore::Write {
  const StoreBatch* batch = nullptr;  // a Commit; null for a SetRequestResponse
  absl::string_view request_id;       // a SetRequestResponse: the record and its reply
  const std::string* response = nullptr;
  std::string owned_request_id, owned_response;  // SetRequestResponseAsync: what the views show
  std::function<void(absl::Status)> on_done;     // SetRequestResponseAsync only
  // Written by the committer (with mu_ held) before it sets `done`; read by the caller after.
  absl::Status status;
  bool done = false;  // guarded by queue_mu_
  absl::CondVar done_changed;
};

SqliteStateStore::SqliteStateStore(const SqliteStateStoreOptions& options, sqlite3* db,
                                   std::unique_ptr<Statements> statements)
    : options_(options), db_(db), statements_(std::move(statements)) {
  committer_ = std::thread([this] { CommitterLoop(); });
}

SqliteStateStore::~SqliteStateStore() {
  {
    MutexLock lock(&queue_mu_);
    stop_ = true;
    queue_changed_.SignalAll();
  }
  committer_.join();  // it commits what is queued first: every caller gets its answer
  statements_.reset();  // finalize before closing
  sqlite3_close_v2(db_);
}

StoreDurability SqliteStateStore::durability() const {
  return options_.sync == SqliteSync::kFull ? StoreDurability::kPowerLoss
                                            : StoreDurability::kProcessCrash;
}

size_t SqliteStateStore::queued_writes() const {
  MutexLock lock(&queue_mu_);
  return queue_.size();
}

absl::Status SqliteStateStore::Commit(const StoreBatch& batch) {
  if (batch.empty()) return absl::OkStatus();
  Write write;
  write.batch = &batch;
  return Submit(&write);
}

absl::Status SqliteStateStore::Submit(Write* write) {
  writes_.fetch_add(1, std::memory_order_relaxed);
  {
    MutexLock lock(&queue_mu_);
    if (committing_ || !queue_.empty()) {  // a commit is running: join the next group
      queue_.push_back(write);
      queue_changed_.Signal();
      while (!write->done) {
        WaitWithDeadline(&write->done_changed, &queue_mu_, absl::InfiniteFuture());
      }
      return write->status;
    }
    committing_ = true;  // nothing runs or waits: commit on this thread, a group of one
  }
  RunGroup({write});
  return write->status;
}

void SqliteStateStore::RunGroup(const std::vector<Write*>& group) {
  if (options_.before_group_for_test) options_.before_group_for_test(group.size());
  {
    MutexLock lock(&mu_);
    CommitGroupLocked(group);
  }
  // SetRequestResponseAsync writes are answered (and deleted) before the group is over, so that
  // a write queued after one of them returns only after its `done` ran.
  std::vector<Write*> waiting;  // the callers' own writes, woken below
  for (Write* write : group) {
    if (!write->on_done) {
      waiting.push_back(write);
      continue;
    }
    std::unique_ptr<Write> owned(write);
    owned->on_done(owned->status);
  }
  MutexLock lock(&queue_mu_);
  committing_ = false;
  for (Write* write : waiting) {
    write->done = true;
    write->done_changed.Signal();
  }
  if (!queue_.empty()) queue_changed_.Signal();  // what queued meanwhile: the committer's
}

void SqliteStateStore::CommitterLoop() {
  std::vector<Write*> group;
  for (;;) {
    group.clear();
    {
      MutexLock lock(&queue_mu_);
      while ((queue_.empty() || committing_) && !stop_) {
        WaitWithDeadline(&queue_changed_, &queue_mu_, absl::InfiniteFuture());
      }
      while (committing_) {  // stopping: let a caller's own commit finish first
        WaitWithDeadline(&queue_changed_, &queue_mu_, absl::InfiniteFuture());
      }
      if (queue_.empty()) return;  // stopping, and nothing is left to commit
      group.swap(queue_);
      committing_ = true;
    }
    RunGroup(group);
  }
}

void SqliteStateStore::CommitGroupLocked(const std::vector<Write*>& group) {
  const std::string& path = options_.path;
  Statements& s = *statements_;
  auto rollback = [&] {
    if (!sqlite3_get_autocommit(db_)) {
      Query query(s.rollback);
      query.Run();
    }
  };
  std::vector<Write*> pending = group;  // the writes that may still land
  std::vector<Write*> applied;
  while (!pending.empty()) {
    transactions_.fetch_add(1, std::memory_order_relaxed);
    applied.clear();
    absl::Status begun;
    {
      Query begin(s.begin);
      const int rc = begin.Run();
      if (rc != SQLITE_DONE) begun = WriteFailed(path, absl::StrCat("begin: ", SqliteMessage(db_, rc)));
    }
    if (!begun.ok()) {
      rollback();
      for (Write* write : pending) write->status = begun;
      return;
    }
    Write* refused = nullptr;
    for (Write* write : pending) {
      write->status = ApplyLocked(*write);
      if (write->status.ok()) {
        applied.push_back(write);
      } else if (write->status.code() != absl::StatusCode::kNotFound) {
        refused = write;  // a statement failed: run the group again without this write
        break;
      }  // else a reply for no record: it changed nothing, the transaction goes on
    }
    if (refused != nullptr) {
      rollback();
      pending.erase(std::find(pending.begin(), pending.end(), refused));
      continue;
    }
    if (applied.empty()) {  // nothing to write (only replies without records)
      rollback();
      return;
    }
    // The counters only grow (max of old and new): raising them once to the largest value of
    // the batches that landed is what raising them batch by batch would leave.
    uint64_t next_group_id = 0, next_domain_id = 0;
    for (const Write* write : applied) {
      if (write->batch == nullptr) continue;
      next_group_id = std::max(next_group_id, write->batch->next_group_id);
      next_domain_id = std::max(next_domain_id, write->batch->next_domain_id);
    }
    absl::Status committed = RaiseCountersLocked(next_group_id, next_domain_id);
    if (committed.ok()) {
      Query commit(s.commit);
      const int rc = commit.Run();
      if (rc != SQLITE_DONE) {
        committed = WriteFailed(path, absl::StrCat("commit: ", SqliteMessage(db_, rc)));
      }
    }
    if (!committed.ok()) {  // nothing of the group is in: every write of it fails
      rollback();
      for (Write* write : applied) write->status = committed;
    }
    return;
  }
}

absl::Status SqliteStateStore::ApplyLocked(const Write& write) {
  if (write.batch != nullptr) return ApplyBatchLocked(*write.batch);
  Query query(statements_->set_response);
  const int rc = query.Blob(*write.response).Text(write.request_id).Run();
  if (rc != SQLITE_DONE) {
    return WriteFailed(options_.path, absl::StrCat("set response: ", SqliteMessage(db_, rc)));
  }
  if (sqlite3_changes(db_) == 0) {
    return Error(absl::StatusCode::kNotFound, reason::kRequestNotFound,
                 "no record of this request id", {{"request_id", std::string(write.request_id)}});
  }
  return absl::OkStatus();
}

absl::Status SqliteStateStore::ApplyBatchLocked(const StoreBatch& batch) {
  const std::string& path = options_.path;
  Statements& s = *statements_;
  // Runs one statement of the transaction; any failure fails the whole batch.
  auto run = [&](Query& query, absl::string_view what) -> absl::Status {
    const int rc = query.Run();
    if (rc == SQLITE_DONE) return absl::OkStatus();
    return WriteFailed(path, absl::StrCat(what, ": ", SqliteMessage(db_, rc)));
  };
  for (DomainId id : batch.delete_domains) {
    Query mappings(s.delete_domain_mappings);
    RETURN_IF_ERROR(run(mappings.Int(ToSql(id)), "delete domain mappings"));
    Query domain(s.delete_domain);
    RETURN_IF_ERROR(run(domain.Int(ToSql(id)), "delete domain"));
  }
  for (const std::string& name : batch.delete_devices) {
    Query query(s.delete_device);
    RETURN_IF_ERROR(run(query.Text(name), "delete device"));
  }
  for (GroupId id : batch.delete_groups) {
    Query query(s.delete_group);
    RETURN_IF_ERROR(run(query.Int(ToSql(id)), "delete group"));
  }
  for (const auto& [domain, iova] : batch.delete_mappings) {
    Query query(s.delete_mapping);
    RETURN_IF_ERROR(run(query.Int(ToSql(domain)).Int(ToSql(iova)), "delete mapping"));
  }
  for (const UnitRecord& unit : batch.put_units) {
    Query query(s.put_unit);
    query.Text(unit.name)
        .Int(ToSql(unit.caps.pgsize_bitmap))
        .Int(unit.caps.iova_bits)
        .Int(unit.caps.max_rids)
        .Text(EncodeDomainTypes(unit.caps.domain_types))
        .Text(EncodeRegions(unit.caps.reserved_regions))
        .Int(ToSql(unit.release_domain));
    RETURN_IF_ERROR(run(query, "put unit"));
  }
  for (const DomainRecord& domain : batch.put_domains) {
    Query query(s.put_domain);
    query.Int(ToSql(domain.id))
        .Text(domain.unit)
        .Text(DomainTypeName(domain.type))
        .Text(domain.owner)
        .Int(domain.core_owned ? 1 : 0);
    RETURN_IF_ERROR(run(query, "put domain"));
  }
  for (const DeviceRecord& device : batch.put_devices) {
    Query query(s.put_device);
    query.Text(device.name)
        .Text(device.unit)
        .Int(device.rid)
        .Text(EncodeRids(device.alias_rids))
        .Int(ToSql(device.group))
        .Int(ToSql(device.probe_seq))
        .Text(DriverBindingName(device.binding))
        .Text(EncodeTypedRegions(device.reserved_regions));
    RETURN_IF_ERROR(run(query, "put device"));
  }
  for (const GroupRecord& group : batch.put_groups) {
    Query query(s.put_group);
    query.Int(ToSql(group.id))
        .Text(group.unit)
        .Int(ToSql(group.domain))
        .Int(ToSql(group.default_domain))
        .Int(ToSql(group.blocking_domain))
        .Text(group.owner)
        .Int(group.owner_cnt)
        .Int(group.group_claimed ? 1 : 0)
        .Text(EncodeNames(group.claimed_devices))
        .Int(group.lease_expiry_unix_nanos)
        .Int(group.lease_ttl_nanos)
        .Text(EncodeNames(group.attached_devices));
    RETURN_IF_ERROR(run(query, "put group"));
  }
  for (const MappingRecord& record : batch.put_mappings) {
    Query query(s.put_mapping);
    query.Int(ToSql(record.domain))
        .Int(ToSql(record.mapping.iova))
        .Int(ToSql(record.mapping.paddr))
        .Int(ToSql(record.mapping.size))
        .Int(record.mapping.prot);
    RETURN_IF_ERROR(run(query, "put mapping"));
  }
  if (batch.request.has_value()) {
    const RequestRecord& request = *batch.request;
    Query query(s.put_request);
    query.Text(request.request_id).Text(request.method).Blob(request.fingerprint);
    query.Int(ToSql(request.result_ref));
    if (request.response.has_value()) {
      query.Blob(*request.response);
    } else {
      query.Null();
    }
    query.Int(request.time_unix_nanos);
    RETURN_IF_ERROR(run(query, "put request"));
  }
  // The id counters are raised once per transaction, for all its batches (CommitGroupLocked).
  return absl::OkStatus();
}

absl::Status SqliteStateStore::RaiseCountersLocked(uint64_t next_group_id,
                                                   uint64_t next_domain_id) {
  for (const auto& [key, value] : {std::make_pair("next_group_id", next_group_id),
                                   std::make_pair("next_domain_id", next_domain_id)}) {
    if (value == 0) continue;
    Query query(statements_->raise_counter);
    const int rc = query.Int(ToSql(value)).Text(key).Run();
    if (rc != SQLITE_DONE) {
      return WriteFailed(options_.path,
                         absl::StrCat("raise id counter: ", SqliteMessage(db_, rc)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<StoreSnapshot> SqliteStateStore::Load() {
  MutexLock lock(&mu_);
  StoreSnapshot snapshot;
  RETURN_IF_ERROR(LoadLocked(&snapshot));
  return snapshot;
}

absl::Status SqliteStateStore::LoadLocked(StoreSnapshot* snapshot) {
  const std::string& path = options_.path;
  Statements& s = *statements_;
  // Steps `query` through its rows, calling `row` for each; a row `row` rejects is corruption.
  auto scan = [&](sqlite3_stmt* stmt, absl::string_view table,
                  const std::function<bool(const Query&)>& row) -> absl::Status {
    Query query(stmt);
    int rc;
    while ((rc = query.Step()) == SQLITE_ROW) {
      if (!row(query)) return Corrupt(path, absl::StrCat("a row of ", table, " cannot be decoded"));
    }
    if (rc != SQLITE_DONE) {
      return Corrupt(path, absl::StrCat("reading ", table, ": ", SqliteMessage(db_, rc)));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(scan(s.select_units, "units", [&](const Query& q) {
    UnitRecord unit;
    unit.name = q.ColumnText(0);
    unit.caps.pgsize_bitmap = FromSql(q.ColumnInt(1));
    unit.caps.iova_bits = static_cast<uint32_t>(q.ColumnInt(2));
    unit.caps.max_rids = static_cast<uint32_t>(q.ColumnInt(3));
    unit.release_domain = FromSql(q.ColumnInt(6));
    snapshot->units.push_back(std::move(unit));
    return DecodeDomainTypes(q.ColumnText(4), &snapshot->units.back().caps.domain_types) &&
           DecodeRegions(q.ColumnText(5), &snapshot->units.back().caps.reserved_regions);
  }));
  RETURN_IF_ERROR(scan(s.select_domains, "domains", [&](const Query& q) {
    DomainRecord domain;
    domain.id = FromSql(q.ColumnInt(0));
    domain.unit = q.ColumnText(1);
    domain.owner = q.ColumnText(3);
    domain.core_owned = q.ColumnInt(4) != 0;
    if (!ParseDomainType(q.ColumnText(2), &domain.type)) return false;
    snapshot->domains.push_back(std::move(domain));
    return true;
  }));
  RETURN_IF_ERROR(scan(s.select_devices, "devices", [&](const Query& q) {
    DeviceRecord device;
    device.name = q.ColumnText(0);
    device.unit = q.ColumnText(1);
    device.rid = static_cast<Rid>(q.ColumnInt(2));
    device.group = FromSql(q.ColumnInt(4));
    device.probe_seq = FromSql(q.ColumnInt(5));
    if (!DecodeRids(q.ColumnText(3), &device.alias_rids) ||
        !ParseBinding(q.ColumnText(6), &device.binding) ||
        !DecodeTypedRegions(q.ColumnText(7), &device.reserved_regions)) {
      return false;
    }
    snapshot->devices.push_back(std::move(device));
    return true;
  }));
  RETURN_IF_ERROR(scan(s.select_groups, "device_groups", [&](const Query& q) {
    GroupRecord group;
    group.id = FromSql(q.ColumnInt(0));
    group.unit = q.ColumnText(1);
    group.domain = FromSql(q.ColumnInt(2));
    group.default_domain = FromSql(q.ColumnInt(3));
    group.blocking_domain = FromSql(q.ColumnInt(4));
    group.owner = q.ColumnText(5);
    group.owner_cnt = static_cast<uint32_t>(q.ColumnInt(6));
    group.group_claimed = q.ColumnInt(7) != 0;
    group.lease_expiry_unix_nanos = q.ColumnInt(9);
    group.lease_ttl_nanos = q.ColumnInt(10);
    if (!DecodeNames(q.ColumnText(8), &group.claimed_devices)) return false;
    if (!DecodeNames(q.ColumnText(11), &group.attached_devices)) return false;
    snapshot->groups.push_back(std::move(group));
    return true;
  }));
  RETURN_IF_ERROR(scan(s.select_mappings, "mappings", [&](const Query& q) {
    MappingRecord record;
    record.domain = FromSql(q.ColumnInt(0));
    record.mapping.iova = FromSql(q.ColumnInt(1));
    record.mapping.paddr = FromSql(q.ColumnInt(2));
    record.mapping.size = FromSql(q.ColumnInt(3));
    record.mapping.prot = static_cast<uint32_t>(q.ColumnInt(4));
    snapshot->mappings.push_back(record);
    return true;
  }));
  bool have_group_counter = false, have_domain_counter = false;
  RETURN_IF_ERROR(scan(s.select_meta, "meta", [&](const Query& q) {
    const std::string key = q.ColumnText(0);
    if (key == "next_group_id") {
      snapshot->next_group_id = FromSql(q.ColumnInt(1));
      have_group_counter = true;
    } else if (key == "next_domain_id") {
      snapshot->next_domain_id = FromSql(q.ColumnInt(1));
      have_domain_counter = true;
    }
    return true;
  }));
  if (!have_group_counter || !have_domain_counter) return Corrupt(path, "the id counters are missing");
  // SQLite orders integer keys as signed values; the snapshot orders them as the ids they are.
  std::sort(snapshot->units.begin(), snapshot->units.end(),
            [](const UnitRecord& a, const UnitRecord& b) { return a.name < b.name; });
  std::sort(snapshot->domains.begin(), snapshot->domains.end(),
            [](const DomainRecord& a, const DomainRecord& b) { return a.id < b.id; });
  std::sort(snapshot->devices.begin(), snapshot->devices.end(),
            [](const DeviceRecord& a, const DeviceRecord& b) { return a.name < b.name; });
  std::sort(snapshot->groups.begin(), snapshot->groups.end(),
            [](const GroupRecord& a, const GroupRecord& b) { return a.id < b.id; });
  std::sort(snapshot->mappings.begin(), snapshot->mappings.end(),
            [](const MappingRecord& a, const MappingRecord& b) {
              return std::make_pair(a.domain, a.mapping.iova) <
                     std::make_pair(b.domain, b.mapping.iova);
            });
  return absl::OkStatus();
}

absl::StatusOr<std::optional<RequestRecord>> SqliteStateStore::FindRequest(
    absl::string_view request_id) {
  MutexLock lock(&mu_);
  Query query(statements_->find_request);
  query.Text(request_id);
  const int rc = query.Step();
  if (rc == SQLITE_DONE) return std::optional<RequestRecord>();
  if (rc != SQLITE_ROW) {
    return Corrupt(options_.path, absl::StrCat("reading requests: ", SqliteMessage(db_, rc)));
  }
  RequestRecord record;
  record.request_id = query.ColumnText(0);
  record.method = query.ColumnText(1);
  record.fingerprint = query.ColumnText(2);
  record.result_ref = FromSql(query.ColumnInt(3));
  if (!query.ColumnIsNull(4)) record.response = query.ColumnText(4);
  record.time_unix_nanos = query.ColumnInt(5);
  return std::optional<RequestRecord>(std::move(record));
}

absl::Status SqliteStateStore::SetRequestResponse(absl::string_view request_id,
                                                  const std::string& response) {
  Write write;
  write.request_id = request_id;
  write.response = &response;
  return Submit(&write);
}

void SqliteStateStore::SetRequestResponseAsync(std::string request_id, std::string response,
                                               std::function<void(absl::Status)> done) {
  auto write = std::make_unique<Write>();
  write->owned_request_id = std::move(request_id);
  write->owned_response = std::move(response);
  write->request_id = write->owned_request_id;
  write->response = &write->owned_response;
  write->on_done = std::move(done);
  writes_.fetch_add(1, std::memory_order_relaxed);
  MutexLock lock(&queue_mu_);
  queue_.push_back(write.release());  // the committer's from now on (RunGroup deletes it)
  queue_changed_.Signal();
}

absl::StatusOr<uint64_t> SqliteStateStore::ExpireRequests(int64_t cutoff_unix_nanos) {
  MutexLock lock(&mu_);
  Query query(statements_->expire_requests);
  const int rc = query.Int(cutoff_unix_nanos).Run();
  if (rc != SQLITE_DONE) {
    return WriteFailed(options_.path, absl::StrCat("expire requests: ", SqliteMessage(db_, rc)));
  }
  return static_cast<uint64_t>(sqlite3_changes(db_));
}

}  // namespace iommud
