// FailingBackend: an IommuBackend decorator that fails chosen calls, for rollback tests.
//
// It is the production FaultInjectingBackend with a FaultInjector of its own: FailNth and friends
// add faults at the backend.* injection points (core/fault_injector.h), so the tests exercise the
// same injection path as the fail-nth sweeps and the InjectFault RPC. An injected call returns
// INJECTED_FAULT with the requested code without reaching the hardware. Thread-safe.
#ifndef IOMMUD_TESTS_CORE_TESTING_FAILING_BACKEND_H_
#define IOMMUD_TESTS_CORE_TESTING_FAILING_BACKEND_H_

#include "absl/status/status.h"
#include "core/backend/fault_injecting_backend.h"
#include "core/fault_injector.h"

namespace iommud {

namespace failing_backend_internal {
// Constructed before the FaultInjectingBackend base, which keeps a pointer to the injector.
struct InjectorHolder {
  FaultInjector injector;
};
}  // namespace failing_backend_internal

class FailingBackend : private failing_backend_internal::InjectorHolder,
                       public FaultInjectingBackend {
 public:
  enum class Op { kAddUnit, kAllocDomain, kFreeDomain, kAttachRid, kReleaseRid, kMap, kUnmap,
                  kInvalidateIotlb };

  explicit FailingBackend(IommuBackend* wrapped);

  // The `nth` (1-based) next call of `op` fails with `error`'s code (default INTERNAL).
  void FailNth(Op op, int nth, absl::Status error = absl::InternalError("injected failure"));
  // The next `count` calls of `op` fail (e.g. an operation and its retry).
  void FailNext(Op op, int count, absl::Status error = absl::InternalError("injected failure"));
  // Every further call of `op` fails, until Clear.
  void FailAll(Op op, absl::Status error = absl::InternalError("injected failure"));
  // Removes every planned failure.
  void Clear() { injector.Clear(); }

 private:
  void AddFault(Op op, FaultSpec::Mode mode, int n, absl::StatusCode code);
};

}  // namespace iommud

#endif  // IOMMUD_TESTS_CORE_TESTING_FAILING_BACKEND_H_
