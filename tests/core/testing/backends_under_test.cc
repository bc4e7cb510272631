#include "tests/core/testing/backends_under_test.h"

#include "core/backend/backend_factory.h"

namespace iommud {
namespace test {

std::vector<std::string> BackendsUnderTest() {
  std::vector<std::string> usable;
  for (const std::string& name : BackendNames()) {
    if (CreateBackend(name).ok()) usable.push_back(name);
  }
  return usable;
}

}  // namespace test
}  // namespace iommud
