// FaultInjectingStateStore: a StateStore decorator that asks a FaultInjector at the `store.write`
// injection point before forwarding each non-empty Commit, with the batch's fault scope
// (StoreBatch::fault_scope: the registry call's). When the point fires, Commit returns
// UNAVAILABLE (STORE_WRITE_FAILED), as a store whose disk write failed would, without reaching
// the wrapped store (so the batch left nothing, as the contract requires); metadata "point" and
// "fault_id" name the fault. Reads, SetRequestResponse and ExpireRequests are never injected.
// Thread-safe as the wrapped store is.
#ifndef IOMMUD_CORE_STORE_FAULT_INJECTING_STATE_STORE_H_
#define IOMMUD_CORE_STORE_FAULT_INJECTING_STATE_STORE_H_

#include "core/fault_injector.h"
#include "core/store/forwarding_state_store.h"

namespace iommud {

class FaultInjectingStateStore : public ForwardingStateStore {
 public:
  // The injection point Commit hits.
  static constexpr char kPoint[] = "store.write";

  // Neither is owned; both must outlive this.
  FaultInjectingStateStore(StateStore* wrapped, FaultInjector* injector)
      : ForwardingStateStore(wrapped), injector_(injector) {}

  absl::Status Commit(const StoreBatch& batch) override;

 private:
  FaultInjector* const injector_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_STORE_FAULT_INJECTING_STATE_STORE_H_
