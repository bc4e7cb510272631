#include "tests/testing/temp_dir.h"

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace iommud {
namespace test {

TempDir::TempDir() {
  // Always under /tmp, not Bazel's $TEST_TMPDIR: daemons of the tests put their unix socket in
  // here, and a socket path must fit sun_path (108 bytes), which Bazel's sandbox paths overflow.
  std::string templ = "/tmp/iommud-test-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    std::perror(templ.c_str());
    std::abort();
  }
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ignored;  // a directory left behind is not worth failing a test for
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::File(absl::string_view name) const { return absl::StrCat(path_, "/", name); }

std::string TempDir::WriteFile(absl::string_view name, absl::string_view content) const {
  const std::string path = File(name);
  std::ofstream(path) << content;
  return path;
}

}  // namespace test
}  // namespace iommud
