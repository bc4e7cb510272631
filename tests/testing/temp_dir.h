// TempDir: a fresh directory for a test under /tmp (short enough for unix socket paths, which
// Bazel's $TEST_TMPDIR is not), removed with everything in it when destroyed. The one
// temporary-directory helper of the test tree.
#ifndef IOMMUD_TESTS_TESTING_TEMP_DIR_H_
#define IOMMUD_TESTS_TESTING_TEMP_DIR_H_

#include <string>

#include "absl/strings/string_view.h"

namespace iommud {
namespace test {

class TempDir {
 public:
  TempDir();  // aborts the test binary if no directory can be made
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name (nothing is created).
  std::string File(absl::string_view name) const;
  // Writes `content` to path()/name; returns the full path.
  std::string WriteFile(absl::string_view name, absl::string_view content) const;

 private:
  std::string path_;
};

}  // namespace test
}  // namespace iommud

#endif  // IOMMUD_TESTS_TESTING_TEMP_DIR_H_
