#include "core/backend/emulated/emulated_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {

absl::StatusOr<std::unique_ptr<EmulatedMemory>> EmulatedMemory::Open(const std::string& path,
                                                                    uint64_t bytes,
                                                                    bool* existed) {
  *existed = false;
  int fd = -1;
  auto failure = [&](const std::string& what) {
    const std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(errno));
    if (fd >= 0) close(fd);
    return Error(absl::StatusCode::kUnavailable, reason::kMemoryFile, message,
                 {{"memory_file", path}});
  };
  if (!path.empty()) {
    fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return failure("cannot open");
    struct stat st;
    if (fstat(fd, &st) != 0) return failure("cannot stat");
    *existed = st.st_size > 0;
    if (static_cast<uint64_t>(st.st_size) < bytes && ftruncate(fd, bytes) != 0) {
      return failure("cannot size");
    }
    if (*existed && static_cast<uint64_t>(st.st_size) > bytes) bytes = st.st_size;
  }
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                    fd >= 0 ? MAP_SHARED : (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE), fd, 0);
  if (base == MAP_FAILED) return failure("cannot map");
  return std::unique_ptr<EmulatedMemory>(
      new EmulatedMemory(static_cast<uint8_t*>(base), bytes, fd));
}

EmulatedMemory::~EmulatedMemory() {
  Sync();
  munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
}

void EmulatedMemory::Sync() {
  if (fd_ >= 0) msync(base_, size_, MS_SYNC);
}

}  // namespace iommud
