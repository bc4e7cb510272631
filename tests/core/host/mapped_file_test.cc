// MappedFile over real memfds: the mapping is shared with the fd, and every refusal maps nothing.
#include "core/host/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/host/unique_fd.h"
#include "gtest/gtest.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace host {
namespace {

UniqueFd Memfd(off_t size) {
  UniqueFd fd(memfd_create("mapped_file_test", MFD_CLOEXEC));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(ftruncate(fd.get(), size), 0);
  return fd;
}

TEST(MappedFileTest, MapsTheFileSharedBothWays) {
  UniqueFd fd = Memfd(2 * 4096);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MappedFile> mapped, MappedFile::Map(fd.get(), 2 * 4096));
  EXPECT_EQ(mapped->size(), 2u * 4096);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(mapped->data()) % 4096, 0u);
  // Written through the fd, read through the mapping.
  ASSERT_EQ(pwrite(fd.get(), "hello", 5, 4096 + 7), 5);
  EXPECT_EQ(std::memcmp(static_cast<char*>(mapped->data()) + 4096 + 7, "hello", 5), 0);
  // Written through the mapping, read through the fd.
  std::memcpy(mapped->data(), "world", 5);
  char back[5] = {};
  ASSERT_EQ(pread(fd.get(), back, 5, 0), 5);
  EXPECT_EQ(std::memcmp(back, "world", 5), 0);
}

TEST(MappedFileTest, MapsAPrefixOfALargerFileAndOutlivesTheFd) {
  UniqueFd fd = Memfd(4 * 4096);
  ASSERT_EQ(pwrite(fd.get(), "x", 1, 4095), 1);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MappedFile> mapped, MappedFile::Map(fd.get(), 4096));
  fd.Reset();  // the mapping keeps the memory alive
  EXPECT_EQ(static_cast<char*>(mapped->data())[4095], 'x');
}

TEST(MappedFileTest, RefusesBadSizes) {
  UniqueFd fd = Memfd(4096);
  EXPECT_ERROR(MappedFile::Map(fd.get(), 0).status(), kInvalidArgument,
               "INVALID_SIZE");
  EXPECT_ERROR(MappedFile::Map(fd.get(), 4095).status(), kInvalidArgument,
               "INVALID_SIZE");
  EXPECT_ERROR(MappedFile::Map(fd.get(), 4096 + 512).status(), kInvalidArgument,
               "INVALID_SIZE");
}

TEST(MappedFileTest, RefusesAFileSmallerThanTheRegion) {
  UniqueFd fd = Memfd(4096);
  absl::StatusOr<std::unique_ptr<MappedFile>> mapped = MappedFile::Map(fd.get(), 2 * 4096);
  EXPECT_ERROR(mapped.status(), kInvalidArgument, "MEMORY_FD_TOO_SMALL");
  EXPECT_EQ(GetErrorMetadata(mapped.status())["file_size"], "4096");
}

TEST(MappedFileTest, RefusesWhatIsNotARegularFile) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd read_end(p[0]), write_end(p[1]);
  EXPECT_ERROR(MappedFile::Map(read_end.get(), 4096).status(), kInvalidArgument,
               "MEMORY_FD_NOT_REGULAR");
  UniqueFd dir(open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir.valid());
  EXPECT_ERROR(MappedFile::Map(dir.get(), 4096).status(), kInvalidArgument,
               "MEMORY_FD_NOT_REGULAR");
  EXPECT_ERROR(MappedFile::Map(-1, 4096).status(), kInvalidArgument,
               "MEMORY_FD_NOT_REGULAR");
}

TEST(MappedFileTest, RefusesAReadOnlyFdWithTheErrno) {
  UniqueFd fd = Memfd(4096);
  UniqueFd read_only(open(absl::StrCat("/proc/self/fd/", fd.get()).c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(read_only.valid());
  absl::StatusOr<std::unique_ptr<MappedFile>> mapped = MappedFile::Map(read_only.get(), 4096);
  EXPECT_ERROR(mapped.status(), kPermissionDenied, "MEMORY_MAP_FAILED");
  EXPECT_EQ(GetErrorMetadata(mapped.status())["errno"], "EACCES");
}

}  // namespace
}  // namespace host
}  // namespace iommud
