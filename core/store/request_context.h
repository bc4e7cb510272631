// RequestContext: the idempotency record of the request the current thread is serving, if any.
// The server sets it (ScopedRequestContext) around the registry call of a mutating request that
// carried a request_id; the registry puts it into the first StoreBatch it commits for the request, so the
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

  // The current thread's record, or null.
  static RequestRecord* Current();
  // The record the registry puts into the next batch it commits: the current one until a batch
  // carrying it was committed (MarkCommitted), then null; null when there is none.
  static RequestRecord* Pending();
  // Called by the registry once a batch carrying Pending() is durable.
  static void MarkCommitted();
  // Whether the current request's record was committed (the request changed something durable).
  static bool Committed();

 private:
  RequestRecord* previous_;
  bool previous_taken_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_STORE_REQUEST_CONTEXT_H_
