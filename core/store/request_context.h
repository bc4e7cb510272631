// RequestContext: the idempotency record of the request the current thread is serving, if any.
// The server sets it (ScopedRequestContext) around the registry call of a mutating request that
// carried a request_id; the registry puts it into the StoreBatch of the change it commits, so the
// change and its request record become durable in one transaction. Core code never sets it.
#ifndef IOMMUD_CORE_STORE_REQUEST_CONTEXT_H_
#define IOMMUD_CORE_STORE_REQUEST_CONTEXT_H_

#include "core/store/state_records.h"

namespace iommud {

class ScopedRequestContext {
 public:
  // `record` must outlive the scope. Scopes nest (the inner one wins until it ends).
  explicit ScopedRequestContext(RequestRecord* record);
  ~ScopedRequestContext();
  ScopedRequestContext(const ScopedRequestContext&) = delete;
  ScopedRequestContext& operator=(const ScopedRequestContext&) = delete;

  // The current thread's record, or null. The registry takes it (TakeCurrentRequest) for the first
  // batch it commits; later batches of the same request carry no record.
  static RequestRecord* Current();
  // Returns the record to put into a batch and marks it taken, or null if none / already taken.
  static RequestRecord* TakeCurrent();
  // Whether the current record was taken (i.e. the request changed something durable).
  static bool CurrentTaken();

 private:
  RequestRecord* previous_;
  bool previous_taken_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_STORE_REQUEST_CONTEXT_H_
