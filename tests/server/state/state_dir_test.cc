#include "server/state/state_dir.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace {

class StateDirTest : public ::testing::Test {
 protected:
  test::TempDir temp_;
  void SetUp() override { root_ = temp_.path(); }

  // A unix socket bound at `path`, listening if `listen_too`. Returns the fd.
  int BindSocket(const std::string& path, bool listen_too) {
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    if (listen_too) {
      EXPECT_EQ(listen(fd, 4), 0);
    }
    return fd;
  }

  static bool Exists(const std::string& path) {
    struct stat st;
    return lstat(path.c_str(), &st) == 0;
  }

  std::string root_;
};

TEST_F(StateDirTest, CreatesMissingDirectoriesWithMode0750) {
  const std::string dir = root_ + "/a/b/state";
  ASSERT_TRUE(EnsureStateDir(dir).ok());
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777 & ~0750, 0u);  // never more than 0750 (umask may remove bits)
  EXPECT_TRUE(EnsureStateDir(dir).ok());     // idempotent
}

TEST_F(StateDirTest, ExistingDirectoryKeepsItsMode) {
  ASSERT_EQ(chmod(root_.c_str(), 0700), 0);
  ASSERT_TRUE(EnsureStateDir(root_).ok());
  struct stat st;
  ASSERT_EQ(stat(root_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(StateDirTest, FileInTheWayIsUnusable) {
  const std::string file = root_ + "/file";
  std::ofstream(file) << "x";
  for (const std::string& dir : {file, file + "/sub"}) {
    absl::Status status = EnsureStateDir(dir);
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << dir;
    EXPECT_EQ(ErrorReason(status), "STATE_DIR_UNUSABLE") << dir;
  }
  EXPECT_EQ(ErrorReason(EnsureStateDir("")), "STATE_DIR_UNUSABLE");
}

TEST_F(StateDirTest, OneLockHolderAtATime) {
  absl::StatusOr<std::unique_ptr<StateDirLock>> first = StateDirLock::Acquire(root_);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->path(), root_ + "/iommud.lock");

  absl::StatusOr<std::unique_ptr<StateDirLock>> second = StateDirLock::Acquire(root_);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(second.status()), "STATE_DIR_LOCKED");
  EXPECT_EQ(GetErrorMetadata(second.status()).at("pid"), absl::StrCat(getpid()));

  first->reset();
  absl::StatusOr<std::unique_ptr<StateDirLock>> third = StateDirLock::Acquire(root_);
  EXPECT_TRUE(third.ok()) << third.status();
}

TEST_F(StateDirTest, LockInMissingDirectoryIsUnusable) {
  absl::StatusOr<std::unique_ptr<StateDirLock>> lock = StateDirLock::Acquire(root_ + "/missing");
  EXPECT_EQ(ErrorReason(lock.status()), "STATE_DIR_UNUSABLE");
}

TEST_F(StateDirTest, NothingToRemove) {
  EXPECT_TRUE(RemoveStaleSocket(root_ + "/iommud.sock").ok());
}

TEST_F(StateDirTest, StaleSocketIsRemoved) {
  const std::string path = root_ + "/iommud.sock";
  close(BindSocket(path, /*listen_too=*/true));  // like a daemon that died: the inode stays
  ASSERT_TRUE(Exists(path));
  EXPECT_TRUE(RemoveStaleSocket(path).ok());
  EXPECT_FALSE(Exists(path));
}

TEST_F(StateDirTest, LiveSocketIsKept) {
  const std::string path = root_ + "/iommud.sock";
  const int fd = BindSocket(path, /*listen_too=*/true);
  absl::Status status = RemoveStaleSocket(path);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(status), "SOCKET_IN_USE");
  EXPECT_TRUE(Exists(path));
  close(fd);
}

TEST_F(StateDirTest, OtherFilesAreNeverRemoved) {
  const std::string path = root_ + "/iommud.sock";
  std::ofstream(path) << "precious";
  absl::Status status = RemoveStaleSocket(path);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(status), "SOCKET_PATH_NOT_SOCKET");
  EXPECT_TRUE(Exists(path));
}

TEST_F(StateDirTest, OverlongSocketPath) {
  absl::Status status = RemoveStaleSocket(root_ + "/" + std::string(200, 's'));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(status), "SOCKET_PATH_TOO_LONG");
}

}  // namespace
}  // namespace iommud
