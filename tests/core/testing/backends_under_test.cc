#include "tests/core/testing/backends_under_test.h"

#include "core/backend/backend_factory.h"

namespace iommud {
namespace test {

std::vector<std::string> BackendsUnderTest() {
  std::vector<std::string> usable;
  // Every backend that can run without a host to drive: the linux backend needs a kernel with VFIO
  // (and the registry's memory regions), and is tested in the VM (tests/host/) instead.
  for (const std::string& name : BackendNames()) {
    if (CreateBackend(name).ok()) usable.push_back(name);
  }
  return usable;
}

}  // namespace test
}  // namespace iommud
