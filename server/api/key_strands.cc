#include "server/api/key_strands.h"

#include <utility>

#include "absl/time/time.h"
#include "core/sync.h"

namespace iommud {

KeyStrands::KeyStrands(int threads, bool inline_when_idle)
    : inline_when_idle_(inline_when_idle), pool_(threads) {}

KeyStrands::~KeyStrands() {
  MutexLock lock(&mu_);
  while (!strands_.empty()) WaitWithDeadline(&drained_, &mu_, absl::InfiniteFuture());
  // pool_'s destructor (after this body) runs the unkeyed work still queued and joins.
}

void KeyStrands::Schedule(uint64_t key, std::function<void()> work) {
  MutexLock lock(&mu_);
  auto [it, idle] = strands_.try_emplace(key);
  it->second.push_back(std::move(work));
  if (idle) pool_.Schedule([this, key] { RunNext(key); });
}

void KeyStrands::ScheduleUnkeyed(std::function<void()> work) { pool_.Schedule(std::move(work)); }

void KeyStrands::Run(std::optional<uint64_t> key, std::function<void()> work) {
  if (!key.has_value()) {
    if (inline_when_idle_) {
      work();
    } else {
      ScheduleUnkeyed(std::move(work));
    }
    return;
  }
  if (!inline_when_idle_ || !ClaimIfIdle(*key)) {
    Schedule(*key, std::move(work));
    return;
  }
  work();
  FinishItem(*key);
}

bool KeyStrands::ClaimIfIdle(uint64_t key) {
  MutexLock lock(&mu_);
  return strands_.try_emplace(key).second;
}

void KeyStrands::RunNext(uint64_t key) {
  std::function<void()> work;
  {
    MutexLock lock(&mu_);
    std::deque<std::function<void()>>& queue = strands_[key];
    work = std::move(queue.front());
    queue.pop_front();
  }
  work();
  FinishItem(key);
}

void KeyStrands::FinishItem(uint64_t key) {
  MutexLock lock(&mu_);
  auto it = strands_.find(key);
  if (it->second.empty()) {
    strands_.erase(it);
    if (strands_.empty()) drained_.SignalAll();
  } else {
    pool_.Schedule([this, key] { RunNext(key); });
  }
}

}  // namespace iommud
