#include "server/host/kept_memory.h"

#include "core/sync.h"

namespace iommud {

absl::Status KeptMemoryHandle::KeepAs(const std::string& name) {
  MutexLock lock(&mu_);
  if (gone_ || !file_.valid()) return absl::OkStatus();
  absl::Status kept = keeper_->Keep(name, file_.get());
  if (kept.ok()) name_ = name;
  file_.Reset();  // the store has its copy; the mapping keeps the memory here
  return kept;
}

void KeptMemoryHandle::AlreadyKeptAs(const std::string& name) {
  MutexLock lock(&mu_);
  if (!gone_) name_ = name;
  file_.Reset();
}

void KeptMemoryHandle::Gone() {
  MutexLock lock(&mu_);
  gone_ = true;
  file_.Reset();
  if (!name_.empty()) (void)keeper_->Drop(name_);
  name_.clear();
}

}  // namespace iommud
