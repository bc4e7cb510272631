// What every fuzz target checks after each step: the registry agrees with itself and with the
// hardware (CheckInvariants, Audit), every error carries a reason (so the wire gets an ErrorInfo),
// and a failed operation changed nothing. A failed check prints what broke and aborts, which
// libFuzzer reports as a crash with the input that caused it.
#ifndef IOMMUD_TESTS_FUZZ_FUZZ_CHECKS_H_
#define IOMMUD_TESTS_FUZZ_FUZZ_CHECKS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/registry.h"

namespace iommud {
namespace fuzz {

// Prints `what` and `detail` to stderr and aborts.
[[noreturn]] void Fail(absl::string_view what, absl::string_view detail);

// Aborts unless CheckInvariants() and Audit() are both empty. `step` names the last operation.
void CheckConsistent(const Registry& registry, absl::string_view step);

// Aborts if `status` is an error without an UPPER_SNAKE reason (core/error.h).
void CheckErrorHasReason(const absl::Status& status, absl::string_view step);

// Everything the registry shows (units, groups, devices, domains with their mappings), as text:
// equal snapshots mean equal visible state.
std::string Snapshot(const Registry& registry);

// With IOMMUD_FUZZ_TRACE=1 in the environment, prints each step and its outcome to stderr (to
// follow a reproducer: `IOMMUD_FUZZ_TRACE=1 build-fuzz/tests/fuzz/<target> crash-...`).
void Trace(absl::string_view step, const absl::Status& status);

// Aborts if a failed step changed the snapshot (`before` taken just before it).
void CheckUnchangedOnError(const absl::Status& status, const std::string& before,
                           const Registry& registry, absl::string_view step);

}  // namespace fuzz
}  // namespace iommud

#endif  // IOMMUD_TESTS_FUZZ_FUZZ_CHECKS_H_
