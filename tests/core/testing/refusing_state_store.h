// RefusingStateStore: a store decorator that refuses commits on demand (UNAVAILABLE "disk full";
// nothing of a refused batch is kept), for rollback tests. set_refuse only while no operation runs.
#ifndef IOMMUD_TESTS_CORE_TESTING_REFUSING_STATE_STORE_H_
#define IOMMUD_TESTS_CORE_TESTING_REFUSING_STATE_STORE_H_

#include "core/store/forwarding_state_store.h"

namespace iommud {

class RefusingStateStore : public ForwardingStateStore {
 public:
  // `wrapped` is not owned and must outlive this.
  explicit RefusingStateStore(StateStore* wrapped) : ForwardingStateStore(wrapped) {}

  absl::Status Commit(const StoreBatch& batch) override {
    if (refuse_) return absl::UnavailableError("disk full");
    return ForwardingStateStore::Commit(batch);
  }
  void set_refuse(bool refuse) { refuse_ = refuse; }

 private:
  bool refuse_ = false;
};

}  // namespace iommud

#endif  // IOMMUD_TESTS_CORE_TESTING_REFUSING_STATE_STORE_H_
