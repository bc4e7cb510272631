// KeptMemory: the process memory of a region whose file is kept in the fd store (core/host/
// fd_keeper.h, name memory-<id>-...): a restarted daemon maps the same file again and puts the
// region back (server/host/kept_regions.h). The copy in the store is dropped when the region's
// memory goes (the region is unregistered, or the daemon stops cleanly and gives everything back).
//
// The region's id is known only once the registry has it, so the name is given afterwards
// (KeepAs, through the KeptMemoryHandle the creator holds); a region unregistered before that is
// never kept. Thread safety: KeepAs and the destructor may race (a client unregistering at once):
// both run under the handle's mutex.
#ifndef IOMMUD_SERVER_HOST_KEPT_MEMORY_H_
#define IOMMUD_SERVER_HOST_KEPT_MEMORY_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/host/fd_keeper.h"
#include "core/host/unique_fd.h"
#include "core/memory_resolver.h"

namespace iommud {

class KeptMemoryHandle {
 public:
  KeptMemoryHandle(host::FdKeeper* keeper, host::UniqueFd file)
      : keeper_(keeper), file_(std::move(file)) {}
  // Keeps the file under `name` (the keeper's errors), unless the memory is gone already (OK).
  absl::Status KeepAs(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);
  // A name given by a previous process (a restored region): dropped when the memory goes.
  void AlreadyKeptAs(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);
  // The memory is gone: drops what was kept, and nothing is kept after.
  void Gone() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  host::FdKeeper* const keeper_;
  absl::Mutex mu_;
  host::UniqueFd file_ ABSL_GUARDED_BY(mu_);
  std::string name_ ABSL_GUARDED_BY(mu_);  // "" : not kept
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
};

class KeptMemory final : public ProcessMemory {
 public:
  KeptMemory(std::unique_ptr<ProcessMemory> memory, std::shared_ptr<KeptMemoryHandle> handle)
      : memory_(std::move(memory)), handle_(std::move(handle)) {}
  ~KeptMemory() override { handle_->Gone(); }
  void* data() const override { return memory_->data(); }
  uint64_t size() const override { return memory_->size(); }

 private:
  const std::unique_ptr<ProcessMemory> memory_;
  const std::shared_ptr<KeptMemoryHandle> handle_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_HOST_KEPT_MEMORY_H_
