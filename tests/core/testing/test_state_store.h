// TestStateStore: a StateStore of a given kind for the store suites, in a fresh temporary
// directory ("sqlite": a file in it; "memory": an InMemoryStateStore), that a test can close and
// reopen (sqlite: the same file, as a restarted daemon would; memory: the same object, nothing to
// reopen).
#ifndef IOMMUD_TESTS_CORE_TESTING_TEST_STATE_STORE_H_
#define IOMMUD_TESTS_CORE_TESTING_TEST_STATE_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "core/store/state_store.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace test {

// "memory" and "sqlite".
std::vector<std::string> StoreKindsUnderTest();

class TestStateStore {
 public:
  explicit TestStateStore(const std::string& kind);
  ~TestStateStore();

  StateStore* get() const { return store_.get(); }
  StateStore* operator->() const { return store_.get(); }
  const std::string& kind() const { return kind_; }
  bool persistent() const { return kind_ != "memory"; }
  // The sqlite file ("" for memory).
  std::string path() const;

  // Closes the store (sqlite only; get() is null until Reopen).
  void Close();
  // Closes (if open) and opens the same store again; fails the test on an error.
  void Reopen();

 private:
  std::string kind_;
  TempDir dir_;
  std::unique_ptr<StateStore> store_;
};

}  // namespace test
}  // namespace iommud

#endif  // IOMMUD_TESTS_CORE_TESTING_TEST_STATE_STORE_H_
