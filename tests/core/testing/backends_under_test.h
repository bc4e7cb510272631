// The backends every backend-independent suite runs against: every registered backend that can be
// created with default options (a placeholder that returns UNIMPLEMENTED is left out).
#ifndef IOMMUD_TESTS_CORE_TESTING_BACKENDS_UNDER_TEST_H_
#define IOMMUD_TESTS_CORE_TESTING_BACKENDS_UNDER_TEST_H_

#include <string>
#include <vector>

namespace iommud {
namespace test {

std::vector<std::string> BackendsUnderTest();

}  // namespace test
}  // namespace iommud

#endif  // IOMMUD_TESTS_CORE_TESTING_BACKENDS_UNDER_TEST_H_
