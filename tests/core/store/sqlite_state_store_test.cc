// SqliteStateStore beyond the shared contract: what Open refuses (missing, corrupt, foreign or
// newer schema, locked by this process or another), durability levels, a transaction that fails
// midway in SQLite itself, a commit surviving a process that died without closing the store, and
// group commit (concurrent writes share one transaction; a refused one fails alone).
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/store/sqlite_state_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/test_state_store.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace test {
namespace {

using ::testing::HasSubstr;

class SqliteStateStoreTest : public ::testing::Test {
 protected:
  SqliteStateStoreOptions Options(bool create = false) {
    SqliteStateStoreOptions options;
    options.path = path_;
    options.create_if_missing = create;
    return options;
  }
  std::unique_ptr<SqliteStateStore> Create() {
    auto store = SqliteStateStore::Open(Options(/*create=*/true));
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  // A store file holding a few hundred records (several pages), closed.
  void CreateWithData() {
    std::unique_ptr<SqliteStateStore> store = Create();
    ASSERT_NE(store, nullptr);
    StoreBatch batch;
    for (int i = 1; i <= 400; ++i) {
      batch.put_domains.push_back(
          DomainRecord{static_cast<DomainId>(i), "u0", DomainType::kUnmanaged,
                       absl::StrCat("owner-with-a-long-name-", i), false});
      batch.put_mappings.push_back({static_cast<DomainId>(i), Mapping{0x1000, 0x2000, 0x1000, 1}});
    }
    ASSERT_OK(store->Commit(batch));
  }
  // Runs `sql` on the closed store file with a plain SQLite connection.
  void Sql(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    EXPECT_EQ(rc, SQLITE_OK) << (error != nullptr ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }
  void WriteFile(const std::string& bytes) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  // Open fails with `code` and `reason`, and the message names the path.
  void ExpectOpenFails(const SqliteStateStoreOptions& options, absl::StatusCode code,
                       const std::string& reason) {
    auto store = SqliteStateStore::Open(options);
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), code) << store.status();
    EXPECT_EQ(ErrorReason(store.status()), reason) << store.status();
    EXPECT_THAT(std::string(store.status().message()), HasSubstr(options.path));
    EXPECT_EQ(GetErrorMetadata(store.status())["path"], options.path);
  }

  TempDir dir_;
  const std::string path_ = dir_.File("state.db");
};

TEST_F(SqliteStateStoreTest, AMissingFileIsStateMissingAndNotCreated) {
  ExpectOpenFails(Options(), absl::StatusCode::kNotFound, "STATE_MISSING");
  struct stat st;
  EXPECT_NE(stat(path_.c_str(), &st), 0);
}

TEST_F(SqliteStateStoreTest, CreateIfMissingCreatesAnEmptyStoreOnlyOnce) {
  {
    std::unique_ptr<SqliteStateStore> store = Create();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->kind(), "sqlite");
    EXPECT_EQ(store->path(), path_);
    StoreBatch batch;
    batch.put_domains = {DomainRecord{7, "u0", DomainType::kDma, "x", false}};
    ASSERT_OK(store->Commit(batch));
  }
  // create_if_missing on an existing file opens it as it is.
  std::unique_ptr<SqliteStateStore> store = Create();
  ASSERT_NE(store, nullptr);
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snapshot, store->Load());
  ASSERT_EQ(snapshot.domains.size(), 1u);
  EXPECT_EQ(snapshot.domains[0].id, 7u);
  // No temporary file is left behind.
  EXPECT_EQ(access(absl::StrCat(path_, ".init-", getpid()).c_str(), F_OK), -1);
}

TEST_F(SqliteStateStoreTest, TheFileAndItsWalArePrivateWhateverTheUmask) {
  const mode_t old_umask = umask(0);
  std::unique_ptr<SqliteStateStore> store = Create();
  umask(old_umask);
  ASSERT_NE(store, nullptr);
  StoreBatch batch;  // the first commit creates the -wal and -shm files
  batch.put_domains = {DomainRecord{1, "u0", DomainType::kDma, "x", false}};
  ASSERT_OK(store->Commit(batch));
  // (No -shm file: the store holds SQLite's exclusive lock, so the WAL index is in memory.)
  for (const std::string& file : {path_, path_ + "-wal"}) {
    struct stat st;
    ASSERT_EQ(stat(file.c_str(), &st), 0) << file;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << file;
  }
}

TEST_F(SqliteStateStoreTest, DurabilityFollowsTheSyncMode) {
  SqliteStateStoreOptions options = Options(/*create=*/true);
  {
    auto store = SqliteStateStore::Open(options);
    ASSERT_OK(store.status());
    EXPECT_EQ((*store)->durability(), StoreDurability::kProcessCrash);
  }
  options.sync = SqliteSync::kFull;
  auto store = SqliteStateStore::Open(options);
  ASSERT_OK(store.status());
  EXPECT_EQ((*store)->durability(), StoreDurability::kPowerLoss);
}

TEST_F(SqliteStateStoreTest, GarbageIsStateCorrupt) {
  WriteFile(std::string(8192, 'x'));
  ExpectOpenFails(Options(), absl::StatusCode::kDataLoss, "STATE_CORRUPT");
  // Even with create_if_missing: an existing file is never replaced.
  ExpectOpenFails(Options(/*create=*/true), absl::StatusCode::kDataLoss, "STATE_CORRUPT");
}

TEST_F(SqliteStateStoreTest, AnEmptyFileIsStateCorruptNeverAFreshStore) {
  WriteFile("");
  ExpectOpenFails(Options(/*create=*/true), absl::StatusCode::kDataLoss, "STATE_CORRUPT");
}

TEST_F(SqliteStateStoreTest, ATruncatedFileIsStateCorrupt) {
  CreateWithData();
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  ASSERT_GT(st.st_size, 8 * 4096);
  ASSERT_EQ(truncate(path_.c_str(), st.st_size / 2), 0);
  ExpectOpenFails(Options(), absl::StatusCode::kDataLoss, "STATE_CORRUPT");
}

TEST_F(SqliteStateStoreTest, OverwrittenPagesAreStateCorrupt) {
  CreateWithData();
  const int fd = open(path_.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  const std::string junk(4096, '\x5a');
  ASSERT_EQ(pwrite(fd, junk.data(), junk.size(), 3 * 4096), static_cast<ssize_t>(junk.size()));
  close(fd);
  ExpectOpenFails(Options(), absl::StatusCode::kDataLoss, "STATE_CORRUPT");
}

TEST_F(SqliteStateStoreTest, ANewerSchemaVersionIsStateCorrupt) {
  Create();
  Sql("UPDATE meta SET value = 4 WHERE key = 'schema_version'");
  ExpectOpenFails(Options(), absl::StatusCode::kDataLoss, "STATE_CORRUPT");
  auto store = SqliteStateStore::Open(Options());
  EXPECT_EQ(GetErrorMetadata(store.status())["schema_version"], "4");
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("newer iommud"));
}

// A version-1 file (before per-device attach: no device_groups.attached_devices) is migrated on
// open: its groups load with no attached devices, and the new column is written from then on.
TEST_F(SqliteStateStoreTest, ASchemaVersionOneFileIsMigratedToTwo) {
  {
    std::unique_ptr<SqliteStateStore> store = Create();
    ASSERT_NE(store, nullptr);
    StoreBatch batch;
    GroupRecord group;
    group.id = 4;
    group.unit = "u0";
    group.domain = 9;
    group.default_domain = 7;
    group.blocking_domain = 8;
    group.owner = "vmm";
    group.owner_cnt = 1;
    group.group_claimed = true;
    batch.put_groups = {group};
    ASSERT_OK(store->Commit(batch));
  }
  Sql("ALTER TABLE device_groups DROP COLUMN attached_devices;"
      "ALTER TABLE devices DROP COLUMN reserved_regions;"
      "UPDATE meta SET value = 1 WHERE key = 'schema_version'");
  {
    std::unique_ptr<SqliteStateStore> store = Create();
    ASSERT_NE(store, nullptr);
    ASSERT_OK_AND_ASSIGN(StoreSnapshot snapshot, store->Load());
    ASSERT_EQ(snapshot.groups.size(), 1u);
    EXPECT_EQ(snapshot.groups[0].owner, "vmm");
    EXPECT_TRUE(snapshot.groups[0].attached_devices.empty());
    StoreBatch batch;
    GroupRecord group = snapshot.groups[0];
    group.attached_devices = {"dev-a", "dev-b"};
    batch.put_groups = {group};
    ASSERT_OK(store->Commit(batch));
  }
  std::unique_ptr<SqliteStateStore> store = Create();
  ASSERT_NE(store, nullptr);
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snapshot, store->Load());
  ASSERT_EQ(snapshot.groups.size(), 1u);
  EXPECT_EQ(snapshot.groups[0].attached_devices, (std::vector<std::string>{"dev-a", "dev-b"}));
}

// A version-2 file (before per-device reserved regions: no devices.reserved_regions) is migrated
// on open: its devices load with none, and the new column is written from then on.
TEST_F(SqliteStateStoreTest, ASchemaVersionTwoFileIsMigratedToThree) {
  DeviceRecord device;
  device.name = "0000:03:00.0";
  device.unit = "u0";
  device.rid = 0x300;
  device.group = 4;
  device.probe_seq = 1;
  {
    std::unique_ptr<SqliteStateStore> store = Create();
    ASSERT_NE(store, nullptr);
    StoreBatch batch;
    batch.put_devices = {device};
    ASSERT_OK(store->Commit(batch));
  }
  Sql("ALTER TABLE devices DROP COLUMN reserved_regions;"
      "UPDATE meta SET value = 2 WHERE key = 'schema_version'");
  {
    std::unique_ptr<SqliteStateStore> store = Create();
    ASSERT_NE(store, nullptr);
    ASSERT_OK_AND_ASSIGN(StoreSnapshot snapshot, store->Load());
    ASSERT_EQ(snapshot.devices.size(), 1u);
    EXPECT_TRUE(snapshot.devices[0].reserved_regions.empty());
    StoreBatch batch;
    device.reserved_regions = {{0x1000, 0x2000, ReservedRegionType::kDirect},
                               {0xfee00000, 0x100000, ReservedRegionType::kSwMsi}};
    batch.put_devices = {device};
    ASSERT_OK(store->Commit(batch));
  }
  std::unique_ptr<SqliteStateStore> store = Create();
  ASSERT_NE(store, nullptr);
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snapshot, store->Load());
  ASSERT_EQ(snapshot.devices.size(), 1u);
  EXPECT_EQ(snapshot.devices[0].reserved_regions, device.reserved_regions);
}

TEST_F(SqliteStateStoreTest, AForeignDatabaseIsStateCorrupt) {
  Sql("CREATE TABLE other (x INTEGER)");
  ExpectOpenFails(Options(), absl::StatusCode::kDataLoss, "STATE_CORRUPT");
  // Our meta table but the other tables missing or changed.
  Sql("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER);"
      "INSERT INTO meta VALUES ('schema_version', 1)");
  ExpectOpenFails(Options(), absl::StatusCode::kDataLoss, "STATE_CORRUPT");
}

TEST_F(SqliteStateStoreTest, ASecondOpenInThisProcessIsStateLocked) {
  std::unique_ptr<SqliteStateStore> first = Create();
  ASSERT_NE(first, nullptr);
  ExpectOpenFails(Options(), absl::StatusCode::kFailedPrecondition, "STATE_LOCKED");
  ExpectOpenFails(Options(/*create=*/true), absl::StatusCode::kFailedPrecondition, "STATE_LOCKED");
  // The failed opens did not disturb the first store.
  StoreBatch batch;
  batch.put_domains = {DomainRecord{3, "u0", DomainType::kDma, "x", false}};
  ASSERT_OK(first->Commit(batch));
  first.reset();
  auto again = SqliteStateStore::Open(Options());
  ASSERT_OK(again.status());
  EXPECT_EQ((*again)->Load()->domains.size(), 1u);
}

// Runs `child` in a forked process and returns its exit code.
int InChild(const std::function<int()>& child) {
  const pid_t pid = fork();
  if (pid == 0) _exit(child());
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST_F(SqliteStateStoreTest, AnotherProcessGetsStateLocked) {
  std::unique_ptr<SqliteStateStore> first = Create();
  ASSERT_NE(first, nullptr);
  const SqliteStateStoreOptions options = Options();
  const int code = InChild([&options] {
    auto store = SqliteStateStore::Open(options);
    if (store.ok()) return 10;
    if (store.status().code() != absl::StatusCode::kFailedPrecondition) return 11;
    return ErrorReason(store.status()) == "STATE_LOCKED" ? 0 : 12;
  });
  EXPECT_EQ(code, 0) << "10: opened a locked store, 11: wrong code, 12: wrong reason";
  // Once the first store is closed, another process opens it.
  first.reset();
  EXPECT_EQ(InChild([&options] { return SqliteStateStore::Open(options).ok() ? 0 : 1; }), 0);
}

TEST_F(SqliteStateStoreTest, ACommitSurvivesAProcessKilledWithoutClosing) {
  Create();
  const SqliteStateStoreOptions options = Options();
  const int code = InChild([&options] {
    auto store = SqliteStateStore::Open(options);
    if (!store.ok()) return 1;
    StoreBatch batch;
    batch.put_domains = {DomainRecord{11, "u0", DomainType::kDma, "x", false}};
    batch.next_domain_id = 12;
    if (!(*store)->Commit(batch).ok()) return 2;
    kill(getpid(), SIGKILL);  // no checkpoint, no close: the commit lives only in the WAL
    return 3;
  });
  EXPECT_EQ(code, 128 + SIGKILL);
  auto store = SqliteStateStore::Open(options);
  ASSERT_OK(store.status());
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snapshot, (*store)->Load());
  ASSERT_EQ(snapshot.domains.size(), 1u);
  EXPECT_EQ(snapshot.domains[0].id, 11u);
  EXPECT_EQ(snapshot.next_domain_id, 12u);
}

TEST_F(SqliteStateStoreTest, AStatementFailingMidTransactionRollsBackTheWholeBatch) {
  Create();
  // A trigger makes SQLite itself refuse one device, after the batch's earlier statements ran.
  Sql("CREATE TRIGGER poison BEFORE INSERT ON devices WHEN NEW.name = 'poison' "
      "BEGIN SELECT RAISE(ABORT, 'poisoned device'); END");
  auto store = SqliteStateStore::Open(Options());
  ASSERT_OK(store.status());
  StoreBatch batch;
  batch.put_domains = {DomainRecord{1, "u0", DomainType::kDma, "x", false}};
  batch.put_mappings = {{1, Mapping{0x1000, 0x1000, 0x1000, 1}}};
  DeviceRecord good;
  good.name = "good";
  DeviceRecord poison;
  poison.name = "poison";
  batch.put_devices = {good, poison};
  batch.request = RequestRecord{"req-1", "Probe", "f", 0, std::nullopt, 1};
  batch.next_domain_id = 2;
  const absl::Status status = (*store)->Commit(batch);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(ErrorReason(status), "STORE_WRITE_FAILED");
  EXPECT_THAT(std::string(status.message()), HasSubstr("poisoned device"));
  EXPECT_THAT(std::string(status.message()), HasSubstr(path_));
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snapshot, (*store)->Load());
  EXPECT_TRUE(snapshot.empty());
  EXPECT_TRUE(snapshot.mappings.empty());
  EXPECT_EQ(snapshot.next_domain_id, 1u);
  EXPECT_FALSE((*store)->FindRequest("req-1")->has_value());
  // The store goes on working.
  batch.put_devices = {good};
  ASSERT_OK((*store)->Commit(batch));
  EXPECT_EQ((*store)->Load()->devices.size(), 1u);
  EXPECT_TRUE((*store)->FindRequest("req-1")->has_value());
}

TEST_F(SqliteStateStoreTest, ConcurrentWritesShareOneTransactionAndARefusedOneFailsAlone) {
  Create();
  Sql("CREATE TRIGGER poison BEFORE INSERT ON devices WHEN NEW.name = 'poison' "
      "BEGIN SELECT RAISE(ABORT, 'poisoned device'); END");
  // The committer's first group (one write) is held until eight more writes are queued, so those
  // eight are taken as one group.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::mutex groups_mu;
  std::vector<size_t> groups;
  SqliteStateStoreOptions options = Options();
  options.before_group_for_test = [&](size_t writes) {
    bool first;
    {
      std::lock_guard<std::mutex> lock(groups_mu);
      groups.push_back(writes);
      first = groups.size() == 1;
    }
    if (first) released.wait();
  };
  auto opened = SqliteStateStore::Open(options);
  ASSERT_OK(opened.status());
  SqliteStateStore& store = **opened;
  auto domain_batch = [](DomainId id) {
    StoreBatch batch;
    batch.put_domains = {DomainRecord{id, "u0", DomainType::kDma, "x", false}};
    batch.put_mappings = {{id, Mapping{0x1000, 0x1000, 0x1000, 1}}};
    batch.next_domain_id = id + 1;
    return batch;
  };
  StoreBatch first = domain_batch(1);
  first.request = RequestRecord{"req-1", "AllocDomain", "f", 1, std::nullopt, 1};
  absl::Status first_status;
  std::thread first_writer([&] { first_status = store.Commit(first); });
  auto groups_seen = [&] {
    std::lock_guard<std::mutex> lock(groups_mu);
    return groups.size();
  };
  for (int i = 0; i < 2000 && groups_seen() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(groups_seen(), 1u);  // the committer holds the first write alone

  constexpr int kGood = 6;
  std::vector<absl::Status> good(kGood);
  absl::Status poisoned, reply, no_record;
  std::vector<std::thread> writers;
  for (int i = 0; i < kGood; ++i) {
    writers.emplace_back([&, i] { good[i] = store.Commit(domain_batch(2 + i)); });
  }
  writers.emplace_back([&] {
    StoreBatch batch = domain_batch(100);
    DeviceRecord device;
    device.name = "poison";
    batch.put_devices = {device};
    poisoned = store.Commit(batch);
  });
  writers.emplace_back([&] { reply = store.SetRequestResponse("req-1", "the reply"); });
  // Eight writes queued behind the held group: wait until they all are, then let it go.
  for (int i = 0; i < 2000 && store.queued_writes() < kGood + 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(store.queued_writes(), static_cast<size_t>(kGood + 2));
  release.set_value();
  first_writer.join();
  for (std::thread& writer : writers) writer.join();
  // A reply for no record is NOT_FOUND and changes nothing (after the group above: alone).
  no_record = store.SetRequestResponse("req-none", "lost");

  ASSERT_OK(first_status);
  for (const absl::Status& status : good) EXPECT_OK(status);
  EXPECT_EQ(poisoned.code(), absl::StatusCode::kUnavailable) << poisoned;
  EXPECT_EQ(ErrorReason(poisoned), "STORE_WRITE_FAILED");
  EXPECT_THAT(std::string(poisoned.message()), HasSubstr("poisoned device"));
  // The reply waited in the same group as the refused batch: the group was run again without it.
  EXPECT_OK(reply);
  EXPECT_EQ(no_record.code(), absl::StatusCode::kNotFound) << no_record;
  EXPECT_EQ(ErrorReason(no_record), "REQUEST_NOT_FOUND");
  {
    std::lock_guard<std::mutex> lock(groups_mu);
    EXPECT_THAT(groups, ::testing::ElementsAre(1u, static_cast<size_t>(kGood + 2), 1u));
  }
  // One transaction for the first group; two for the second (refused, then run without the
  // poisoned batch); one begun and rolled back for the reply without a record.
  EXPECT_EQ(store.transactions(), 4u);
  EXPECT_EQ(store.writes(), static_cast<uint64_t>(kGood + 4));

  ASSERT_OK_AND_ASSIGN(StoreSnapshot snapshot, store.Load());
  std::vector<DomainId> ids;
  for (const DomainRecord& domain : snapshot.domains) ids.push_back(domain.id);
  EXPECT_THAT(ids, ::testing::ElementsAre(1, 2, 3, 4, 5, 6, 7));  // not the poisoned batch's 100
  EXPECT_EQ(snapshot.mappings.size(), 7u);
  EXPECT_TRUE(snapshot.devices.empty());
  EXPECT_EQ(snapshot.next_domain_id, 8u);
  ASSERT_OK_AND_ASSIGN(std::optional<RequestRecord> record, store.FindRequest("req-1"));
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->response, std::optional<std::string>("the reply"));
  EXPECT_FALSE(store.FindRequest("req-none")->has_value());
}

// A reply stored without waiting: `done` gets the committer's answer (OK once it is in the file,
// NOT_FOUND for a request without a record), and a Commit made after it by the same thread lands
// after it (it queues behind it, never commits ahead on the caller's thread).
TEST_F(SqliteStateStoreTest, AnAsyncReplyLandsAndReportsToItsCallback) {
  Create();
  auto opened = SqliteStateStore::Open(Options());
  ASSERT_OK(opened.status());
  SqliteStateStore& store = **opened;
  StoreBatch with_record;
  with_record.request = RequestRecord{"req-1", "AllocDomain", "f", 1, std::nullopt, 1};
  ASSERT_OK(store.Commit(with_record));
  std::promise<absl::Status> stored, lost;
  store.SetRequestResponseAsync("req-1", "the reply",
                                [&](absl::Status status) { stored.set_value(status); });
  store.SetRequestResponseAsync("req-none", "lost",
                                [&](absl::Status status) { lost.set_value(status); });
  StoreBatch after;
  after.put_domains = {DomainRecord{7, "u0", DomainType::kDma, "x", false}};
  ASSERT_OK(store.Commit(after));
  // Both replies were queued before that commit: they were answered before it returned.
  std::future<absl::Status> stored_status = stored.get_future();
  std::future<absl::Status> lost_status = lost.get_future();
  ASSERT_EQ(stored_status.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  ASSERT_EQ(lost_status.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_OK(stored_status.get());
  absl::Status none = lost_status.get();
  EXPECT_EQ(none.code(), absl::StatusCode::kNotFound) << none;
  ASSERT_OK_AND_ASSIGN(std::optional<RequestRecord> record, store.FindRequest("req-1"));
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->response, std::optional<std::string>("the reply"));
}

TEST_F(SqliteStateStoreTest, AnUnopenablePathIsStateOpenFailed) {
  SqliteStateStoreOptions options = Options(/*create=*/true);
  options.path = dir_.File("no/such/dir/state.db");
  ExpectOpenFails(options, absl::StatusCode::kUnavailable, "STATE_OPEN_FAILED");
  options.path = dir_.path();  // a directory
  ExpectOpenFails(options, absl::StatusCode::kUnavailable, "STATE_OPEN_FAILED");
}

}  // namespace
}  // namespace test
}  // namespace iommud
