#include "tests/testing/temp_dir.h"

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace iommud {
namespace test {

TempDir::TempDir() {
  const char* base = getenv("TEST_TMPDIR");
  std::string templ = absl::StrCat(base != nullptr ? base : "/tmp", "/iommud-test-XXXXXX");
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
