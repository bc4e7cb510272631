// EmulatedMemory: the emulated machine's physical memory that holds every IOMMU structure (stream
// tables, domain table, page tables, command and event queues). A MAP_SHARED mapping of a file,
// so that the hardware state outlives a daemon crash as real hardware does, or anonymous memory
// for tests. Addresses are byte offsets ("physical addresses") into it. Not thread-safe: the
// backend's lock guards every access.
#ifndef IOMMUD_CORE_BACKEND_EMULATED_EMULATED_MEMORY_H_
#define IOMMUD_CORE_BACKEND_EMULATED_EMULATED_MEMORY_H_

#include <cassert>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "core/crash_points.h"

namespace iommud {

class EmulatedMemory {
 public:
  // `path` empty: anonymous memory. Otherwise the file is created (or opened) and sized to
  // `bytes`; `*existed` tells whether it already held data. UNAVAILABLE (MEMORY_FILE) on I/O errors.
  static absl::StatusOr<std::unique_ptr<EmulatedMemory>> Open(const std::string& path,
                                                              uint64_t bytes, bool* existed);
  ~EmulatedMemory();
  EmulatedMemory(const EmulatedMemory&) = delete;
  EmulatedMemory& operator=(const EmulatedMemory&) = delete;

  // Accesses must lie inside the memory (checked by assert in debug builds: an access outside is
  // a bug of the backend, e.g. a pointer from an image it failed to validate).
  uint64_t size() const { return size_; }
  uint64_t Read64(uint64_t pa) const {
    uint64_t value;
    std::memcpy(&value, At(pa, sizeof(value)), sizeof(value));
    return value;
  }
  void Write64(uint64_t pa, uint64_t value) {
    BeforeWrite();
    std::memcpy(At(pa, sizeof(value)), &value, sizeof(value));
  }
  void Zero(uint64_t pa, uint64_t bytes) {
    BeforeWrite();
    std::memset(At(pa, bytes), 0, bytes);
  }
  void ReadBytes(uint64_t pa, void* out, uint64_t bytes) const {
    std::memcpy(out, At(pa, bytes), bytes);
  }
  void WriteBytes(uint64_t pa, const void* in, uint64_t bytes) {
    BeforeWrite();
    std::memcpy(At(pa, bytes), in, bytes);
  }
  // Called before every write (Write64, Zero, WriteBytes): each is one durable step of a file-backed
  // memory (core/crash_points.h). Set it before the memory is shared with other threads.
  void set_before_write(DurableStepHook hook) { before_write_ = std::move(hook); }
  // Flushes a file-backed memory to its file (msync); no-op for anonymous memory.
  void Sync();

 private:
  EmulatedMemory(uint8_t* base, uint64_t size, int fd) : base_(base), size_(size), fd_(fd) {}
  void BeforeWrite() {
    if (before_write_) before_write_("emulated memory write");
  }
  uint8_t* At(uint64_t pa, uint64_t bytes) const {
    assert(pa <= size_ && bytes <= size_ - pa);
    return base_ + pa;
  }
  uint8_t* const base_;
  const uint64_t size_;
  const int fd_;  // -1 for anonymous memory
  DurableStepHook before_write_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_EMULATED_EMULATED_MEMORY_H_
