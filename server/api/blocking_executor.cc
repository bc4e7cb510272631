#include "server/api/blocking_executor.h"

#include <algorithm>
#include <utility>

#include "absl/time/time.h"
#include "core/sync.h"

namespace iommud {

BlockingExecutor::BlockingExecutor(int threads) {
  for (int i = 0; i < std::max(threads, 1); ++i) threads_.emplace_back([this] { Loop(); });
}

BlockingExecutor::~BlockingExecutor() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    changed_.SignalAll();
  }
  for (std::thread& thread : threads_) thread.join();
}

void BlockingExecutor::Schedule(std::function<void()> work) {
  MutexLock lock(&mu_);
  queue_.push_back(std::move(work));
  changed_.Signal();
}

void BlockingExecutor::Loop() {
  for (;;) {
    std::function<void()> work;
    {
      MutexLock lock(&mu_);
      while (queue_.empty() && !stopping_) {
        WaitWithDeadline(&changed_, &mu_, absl::InfiniteFuture());
      }
      if (queue_.empty()) return;  // stopping, and everything queued has run
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    work();
  }
}

}  // namespace iommud
