// RETURN_IF_ERROR / ASSIGN_OR_RETURN: Abseil 20220623 has no status macros.
#ifndef IOMMUD_CORE_STATUS_MACROS_H_
#define IOMMUD_CORE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define IOMMUD_STATUS_CONCAT_INNER_(a, b) a##b
#define IOMMUD_STATUS_CONCAT_(a, b) IOMMUD_STATUS_CONCAT_INNER_(a, b)

// Returns the status of `expr` from the enclosing function if it is not OK.
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    const ::absl::Status _iommud_status = (expr);      \
    if (!_iommud_status.ok()) return _iommud_status;   \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (an absl::StatusOr<T>); on error returns its status,
// otherwise moves the value into `lhs` (which may be a declaration, e.g. `auto x`).
#define ASSIGN_OR_RETURN(lhs, expr) \
  IOMMUD_ASSIGN_OR_RETURN_IMPL_(IOMMUD_STATUS_CONCAT_(_iommud_statusor_, __LINE__), lhs, expr)

#define IOMMUD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return statusor.status();            \
  lhs = std::move(statusor).value()

#endif  // IOMMUD_CORE_STATUS_MACROS_H_
