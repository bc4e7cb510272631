// BlockingExecutor: a few threads of its own that run work which may block — a registry operation
// that commits to the state store — so that gRPC's callback threads, on which reactors must not
// block, never do.
//
// Work is picked up in the order scheduled; with more than one thread, items run concurrently.
// Schedule never blocks and the queue is unbounded: callers bound what they schedule (a KeepLease
// stream has at most one renewal queued, and streams are bounded by the per-client call limit,
// limits.h). The destructor runs everything already queued, then joins the threads; nothing may be
// scheduled after it started. Thread-safe.
#ifndef IOMMUD_SERVER_API_BLOCKING_EXECUTOR_H_
#define IOMMUD_SERVER_API_BLOCKING_EXECUTOR_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace iommud {

class BlockingExecutor {
 public:
  // Starts `threads` (at least 1) threads.
  explicit BlockingExecutor(int threads);
  ~BlockingExecutor();
  BlockingExecutor(const BlockingExecutor&) = delete;
  BlockingExecutor& operator=(const BlockingExecutor&) = delete;

  // Queues `work` to run on one of the threads.
  void Schedule(std::function<void()> work) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex mu_;
  absl::CondVar changed_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_BLOCKING_EXECUTOR_H_
