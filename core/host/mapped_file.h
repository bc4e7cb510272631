// MappedFile: a client's shared memory file (a memfd, a file on hugetlbfs or /dev/shm) mapped into
// this process, as the ProcessMemory (core/memory_resolver.h) behind a registered memory region.
//
// The fd channel (server/host/fd_channel.h) maps the memfd a VMM sends with RegisterMemory; the
// linux backend then maps those pages into VFIO containers. The mapping is MAP_SHARED and
// read-write, so the daemon, the VMM and the device see the same bytes.
//
// Ownership: the mapping lives exactly as long as the object (munmap in the destructor); the fd
// passed to Map stays the caller's (an mmap keeps the file alive by itself). Thread safety: the
// object is immutable after Map; data()'s bytes are shared memory, synchronized by their users.
#ifndef IOMMUD_CORE_HOST_MAPPED_FILE_H_
#define IOMMUD_CORE_HOST_MAPPED_FILE_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "core/memory_resolver.h"

namespace iommud {
namespace host {

// The granule of a region's size (the smallest IOMMU page).
inline constexpr uint64_t kMappedFileGranule = 4096;

class MappedFile : public ProcessMemory {
 public:
  // Maps the first `size` bytes of `fd`. Errors (nothing is mapped then):
  //   INVALID_ARGUMENT (INVALID_SIZE)     size is 0 or not a multiple of 4096;
  //   INVALID_ARGUMENT (MEMORY_FD_NOT_REGULAR) fd is not a regular file (a pipe, socket, device,
  //                                       directory...) or fstat fails (EBADF: not an fd);
  //   INVALID_ARGUMENT (MEMORY_FD_TOO_SMALL) the file has fewer than `size` bytes;
  //   errno's code (MEMORY_MAP_FAILED)    mmap refused (e.g. EACCES: the fd is not open read-write).
  // Metadata: size (and file_size, errno where they apply).
  static absl::StatusOr<std::unique_ptr<MappedFile>> Map(int fd, uint64_t size);

  ~MappedFile() override;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  void* data() const override { return data_; }
  uint64_t size() const override { return size_; }

 private:
  MappedFile(void* data, uint64_t size) : data_(data), size_(size) {}

  void* const data_;
  const uint64_t size_;
};

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_MAPPED_FILE_H_
