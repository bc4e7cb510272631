// FailingBackend: an IommuBackend decorator that fails chosen calls, for rollback tests.
//
// Every call is forwarded to the wrapped backend, except the Nth call (counted from the FailNth
// call) of the chosen operation, which returns the given error without reaching the hardware.
// Thread-safe.
#ifndef IOMMUD_TESTS_CORE_TESTING_FAILING_BACKEND_H_
#define IOMMUD_TESTS_CORE_TESTING_FAILING_BACKEND_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/backend/forwarding_backend.h"

namespace iommud {

class FailingBackend : public ForwardingBackend {
 public:
  enum class Op { kAddUnit, kAllocDomain, kFreeDomain, kAttachRid, kReleaseRid, kMap, kUnmap,
                  kInvalidateIotlb };

  explicit FailingBackend(IommuBackend* wrapped) : ForwardingBackend(wrapped) {}

  // The `nth` (1-based) next call of `op` fails with `error` (default: an INTERNAL error).
  void FailNth(Op op, int nth, absl::Status error = absl::InternalError("injected failure"));
  // The next `count` calls of `op` fail (e.g. an operation and its retry).
  void FailNext(Op op, int count, absl::Status error = absl::InternalError("injected failure"));
  // Every further call of `op` fails, until Clear.
  void FailAll(Op op, absl::Status error = absl::InternalError("injected failure"));
  void Clear();
  // Calls of `op` that reached this decorator (failed ones included).
  int calls(Op op) const;

  absl::Status AddUnit(absl::string_view unit, const UnitCaps& caps) override;
  absl::Status AllocDomain(absl::string_view unit, DomainId id, DomainType type) override;
  absl::Status FreeDomain(DomainId id) override;
  absl::Status AttachRid(absl::string_view unit, Rid rid, DomainId domain) override;
  absl::Status ReleaseRid(absl::string_view unit, Rid rid) override;
  absl::Status Map(DomainId domain, uint64_t iova, uint64_t paddr, uint64_t size,
                   uint32_t prot) override;
  absl::StatusOr<uint64_t> Unmap(DomainId domain, uint64_t iova, uint64_t size) override;
  absl::Status InvalidateIotlb(DomainId domain, uint64_t iova, uint64_t size) override;

 private:
  struct Plan {
    int countdown = 0;  // fail when it reaches 0 on a call; < 0: no failure planned
    bool always = false;
    absl::Status error;
    int next = 0;  // the next `next` calls fail
  };
  // Counts the call; returns the error to inject, or OK to forward it.
  absl::Status Check(Op op);

  mutable absl::Mutex mu_;
  std::map<Op, Plan> plans_ ABSL_GUARDED_BY(mu_);
  std::map<Op, int> calls_ ABSL_GUARDED_BY(mu_);
};

}  // namespace iommud

#endif  // IOMMUD_TESTS_CORE_TESTING_FAILING_BACKEND_H_
