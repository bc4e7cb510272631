// Assertion helpers for absl::Status / absl::StatusOr, shared by every test directory.
#ifndef IOMMUD_TESTS_TESTING_STATUS_TEST_MACROS_H_
#define IOMMUD_TESTS_TESTING_STATUS_TEST_MACROS_H_

#include <utility>

#include "core/error.h"
#include "core/status_macros.h"
#include "gtest/gtest.h"

// ASSERT_OK_AND_ASSIGN(lhs, expr): asserts the absl::StatusOr `expr` is OK and moves its value
// into `lhs` (which may be a declaration).
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  IOMMUD_ASSERT_OK_AND_ASSIGN_IMPL_(IOMMUD_STATUS_CONCAT_(_iommud_result_, __LINE__), lhs, expr)
#define IOMMUD_ASSERT_OK_AND_ASSIGN_IMPL_(result, lhs, expr) \
  auto result = (expr);                                      \
  ASSERT_TRUE(result.ok()) << result.status();               \
  lhs = std::move(result).value()

// EXPECT_ERROR(expr, kCode, "REASON"): `expr` (an absl::Status or absl::StatusOr) failed with
// absl::StatusCode::kCode and ErrorInfo reason "REASON".
#define EXPECT_ERROR(expr, expected_code, expected_reason)                                 \
  do {                                                                                     \
    const ::absl::Status _iommud_status = ::iommud::test::StatusOf(expr);                  \
    EXPECT_EQ(_iommud_status.code(), ::absl::StatusCode::expected_code) << _iommud_status; \
    EXPECT_EQ(::iommud::ErrorReason(_iommud_status), expected_reason) << _iommud_status;   \
  } while (0)

// ASSERT_OK(expr) / EXPECT_OK(expr): `expr` (an absl::Status or absl::StatusOr) is OK.
#define ASSERT_OK(expr)                                                   \
  do {                                                                    \
    const ::absl::Status _iommud_status = ::iommud::test::StatusOf(expr); \
    ASSERT_TRUE(_iommud_status.ok()) << _iommud_status;                   \
  } while (0)
#define EXPECT_OK(expr)                                                   \
  do {                                                                    \
    const ::absl::Status _iommud_status = ::iommud::test::StatusOf(expr); \
    EXPECT_TRUE(_iommud_status.ok()) << _iommud_status;                   \
  } while (0)

namespace iommud {
namespace test {

inline absl::Status StatusOf(const absl::Status& status) { return status; }
template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

}  // namespace test
}  // namespace iommud

#endif  // IOMMUD_TESTS_TESTING_STATUS_TEST_MACROS_H_
