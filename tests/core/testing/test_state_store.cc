#include "tests/core/testing/test_state_store.h"

#include <stdlib.h>

#include <filesystem>

#include "core/store/in_memory_state_store.h"
#include "core/store/sqlite_state_store.h"
#include "gtest/gtest.h"

namespace iommud {
namespace test {

std::vector<std::string> StoreKindsUnderTest() { return {"memory", "sqlite"}; }

TestStateStore::TestStateStore(const std::string& kind) : kind_(kind) {
  if (kind_ == "memory") {
    store_ = std::make_unique<InMemoryStateStore>();
    return;
  }
  EXPECT_EQ(kind_, "sqlite");
  SqliteStateStoreOptions options;
  options.path = path();
  options.create_if_missing = true;
  auto store = SqliteStateStore::Open(options);
  EXPECT_TRUE(store.ok()) << store.status();
  if (store.ok()) store_ = *std::move(store);
}

TestStateStore::~TestStateStore() { store_.reset(); }

std::string TestStateStore::path() const { return persistent() ? dir_.File("state.db") : ""; }

void TestStateStore::Close() {
  if (persistent()) store_.reset();
}

void TestStateStore::Reopen() {
  if (!persistent()) return;
  store_.reset();
  SqliteStateStoreOptions options;
  options.path = path();
  auto store = SqliteStateStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = *std::move(store);
}

}  // namespace test
}  // namespace iommud
