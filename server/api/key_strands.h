// KeyStrands: runs work keyed by a number one item at a time per key, in the order scheduled for
// that key, on a pool of threads of its own (a BlockingExecutor); items of different keys run in
// parallel. Unkeyed work (ScheduleUnkeyed, the shared lane) goes straight to the pool and runs
// concurrently with everything else.
//
// Why: a mutating call of a group takes the group's mutex and holds it across its commit. Run on a
// plain pool, the calls of one hot group each take a thread and wait there for that mutex, so a
// burst on one group occupies every thread and other groups' calls wait for a thread (issue #18).
// Here a key's waiting items wait in the key's queue, not on a thread: a key occupies at most one
// thread at a time, and the pool serves the other keys meanwhile.
//
// Contract:
//  - Per key: items run one at a time (each finishes before the next starts, which happens-after
//    it), in Schedule order.
//  - No thread is ever held by an item that waits for its key: an item is handed to the pool only
//    when its key has nothing running. After each item the key's next item goes to the back of the
//    pool's queue, so a busy key takes turns with the other keys and the unkeyed work.
//  - Schedule and ScheduleUnkeyed never block (the queues are unbounded: callers bound what they
//    schedule, e.g. the per-client call limit) and may be called from the items themselves.
//  - Run (with inline_when_idle) runs an item on the caller's thread when its key has nothing
//    running or queued, and unkeyed work always: no hand-off to the pool for work that never
//    blocks for long (the memory store: a call costs a few microseconds, a hop more than that).
//    The key is busy meanwhile, so later items of it queue behind the inline one as usual.
//  - The destructor waits until every key's queue has run, then runs the unkeyed work still queued
//    and joins the threads. Nothing may be scheduled after it started, except by running items.
// Thread-safe.
#ifndef IOMMUD_SERVER_API_KEY_STRANDS_H_
#define IOMMUD_SERVER_API_KEY_STRANDS_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/api/blocking_executor.h"

namespace iommud {

class KeyStrands {
 public:
  // Starts `threads` (at least 1) threads. With `inline_when_idle`, Run may run work on its
  // caller's thread (see above); without, Run schedules it always.
  explicit KeyStrands(int threads, bool inline_when_idle = false);
  ~KeyStrands();
  KeyStrands(const KeyStrands&) = delete;
  KeyStrands& operator=(const KeyStrands&) = delete;

  // Queues `work` on `key`'s strand.
  void Schedule(uint64_t key, std::function<void()> work) ABSL_LOCKS_EXCLUDED(mu_);
  // Queues `work` on the pool, outside every strand.
  void ScheduleUnkeyed(std::function<void()> work);
  // `work` on `key`'s strand, or outside every strand when `key` is nullopt: with
  // inline_when_idle run at once on this thread if `key` is idle (or absent), else as Schedule or
  // ScheduleUnkeyed. May block the caller for as long as `work` runs.
  void Run(std::optional<uint64_t> key, std::function<void()> work) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Makes `key` busy (present, nothing queued) and returns true when it was idle; false, and
  // nothing changed, when it has an item running or queued.
  bool ClaimIfIdle(uint64_t key) ABSL_LOCKS_EXCLUDED(mu_);
  // On a pool thread: runs `key`'s first queued item, then hands the key's next one (if any) to
  // the pool or forgets the key.
  void RunNext(uint64_t key) ABSL_LOCKS_EXCLUDED(mu_);
  // After an item of `key` ran: hands the key's next item to the pool, or forgets the key.
  void FinishItem(uint64_t key) ABSL_LOCKS_EXCLUDED(mu_);

  const bool inline_when_idle_;

  absl::Mutex mu_;
  absl::CondVar drained_;  // signalled when `strands_` becomes empty
  // A key is present while it has an item running or handed to the pool; its deque holds the
  // items not started yet (the front one is next).
  std::unordered_map<uint64_t, std::deque<std::function<void()>>> strands_ ABSL_GUARDED_BY(mu_);
  // Last member: destroyed (threads joined) before the members above.
  BlockingExecutor pool_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_KEY_STRANDS_H_
