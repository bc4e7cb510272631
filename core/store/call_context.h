// CallContext: what one registry call carries besides its arguments, passed explicitly (never
// through thread-locals, so a call may hand its work to another thread and still carry it):
//   - the idempotency record of the request it answers, if any. The server creates the context
//     around the registry call of a mutating request that carried a request_id
//     (server/api/idempotency.h); the registry puts the record into the first StoreBatch it commits
//     for the call, so the change and its record become durable in one transaction, and marks it
//     committed;
//   - the fault-injection scope (core/types.h FaultScope): the group and device of the operation
//     the registry is performing, set by the registry under the group's mutex and carried to the
//     injection points it drives (backend.*, and store.write through StoreBatch::fault_scope).
// A context serves one call at a time (a caller may reuse it for sequential calls). Not
// thread-safe for concurrent calls; the registry may commit from another thread than the caller's
// as long as the call has not returned (the commit happens-before the return).
#ifndef IOMMUD_CORE_STORE_CALL_CONTEXT_H_
#define IOMMUD_CORE_STORE_CALL_CONTEXT_H_

#include <atomic>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "core/store/state_records.h"
#include "core/types.h"

namespace iommud {

class CallContext {
 public:
  // A call that answers no recorded request.
  CallContext() = default;
  // A call answering the request `record` describes (not owned; must outlive the context).
  explicit CallContext(RequestRecord* record) : record_(record) {}
  CallContext(const CallContext&) = delete;
  CallContext& operator=(const CallContext&) = delete;

  // The record to put into the next batch the registry commits for this call: the request's
  // record until a batch carrying it was committed (MarkRecordCommitted), then null; null when
  // there is none.
  RequestRecord* pending_record() const {
    return record_committed_.load(std::memory_order_acquire) ? nullptr : record_;
  }
  // Called by the registry once a batch carrying pending_record() is durable.
  void MarkRecordCommitted() {
    if (record_ != nullptr) record_committed_.store(true, std::memory_order_release);
  }
  // Whether the request's record was committed (the call changed something durable).
  bool record_committed() const {
    return record_ != nullptr && record_committed_.load(std::memory_order_acquire);
  }

  const FaultScope& fault_scope() const { return fault_scope_; }
  void set_fault_scope(FaultScope scope) { fault_scope_ = std::move(scope); }

 private:
  RequestRecord* const record_ = nullptr;
  std::atomic<bool> record_committed_{false};
  FaultScope fault_scope_;
};

// Sets the fault scope of `context` for the life of the guard (the registry's group operations,
// under the group's mutex), then puts the previous one back.
class FaultScopeGuard {
 public:
  FaultScopeGuard(CallContext& context, GroupId group, absl::string_view device)
      : context_(context), previous_(context.fault_scope()) {
    context_.set_fault_scope(FaultScope{group, std::string(device)});
  }
  ~FaultScopeGuard() { context_.set_fault_scope(std::move(previous_)); }
  FaultScopeGuard(const FaultScopeGuard&) = delete;
  FaultScopeGuard& operator=(const FaultScopeGuard&) = delete;

 private:
  CallContext& context_;
  FaultScope previous_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_STORE_CALL_CONTEXT_H_
