#include "core/host/mapped_file.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/errno_error.h"

namespace iommud {
namespace host {

absl::StatusOr<std::unique_ptr<MappedFile>> MappedFile::Map(int fd, uint64_t size) {
  ErrorMetadata metadata = {{"size", absl::StrCat(size)}};
  if (size == 0 || size % kMappedFileGranule != 0) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidSize,
                 absl::StrCat("a memory region's size must be a positive multiple of ",
                              kMappedFileGranule, ", not ", size),
                 metadata);
  }
  struct stat st = {};
  if (fstat(fd, &st) != 0) {
    return ErrnoError(absl::StatusCode::kInvalidArgument, reason::kMemoryFdNotRegular,
                      "fstat of the memory fd", errno, metadata);
  }
  if (!S_ISREG(st.st_mode)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kMemoryFdNotRegular,
                 "the memory fd is not a regular file (a memfd, or a file on hugetlbfs or shm)",
                 metadata);
  }
  metadata["file_size"] = absl::StrCat(st.st_size);
  if (static_cast<uint64_t>(st.st_size) < size) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kMemoryFdTooSmall,
                 absl::StrCat("the memory fd has ", st.st_size, " bytes, fewer than ", size),
                 metadata);
  }
  void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kMemoryMapFailed, "mmap of the memory fd", err,
                      metadata);
  }
  return std::unique_ptr<MappedFile>(new MappedFile(data, size));
}

MappedFile::~MappedFile() { munmap(data_, size_); }

}  // namespace host
}  // namespace iommud
