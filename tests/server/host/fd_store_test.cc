// FdStore against systemd's side of the protocol played by the test: a datagram socket as
// NOTIFY_SOCKET receiving FDSTORE=1 messages with their SCM_RIGHTS fds, and a child process that
// gets fds 3, 4 with LISTEN_FDS / LISTEN_FDNAMES / LISTEN_PID as a restarted unit would.
#include "server/host/fd_store.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "gtest/gtest.h"
#include "tests/testing/status_test_macros.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace {

// What the fake service manager received: the message and the fd that came with it (-1: none).
struct Received {
  std::string message;
  int fd = -1;
};

Received ReceiveOne(int socket) {
  Received received;
  char buffer[512] = {};
  iovec iov{buffer, sizeof(buffer) - 1};
  // Room for the sender's credentials (sd_notify sends them, SO_PASSCRED) and the fds.
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(4 * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  const ssize_t n = ::recvmsg(socket, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0 || (msg.msg_flags & MSG_CTRUNC) != 0) return received;
  received.message.assign(buffer, static_cast<size_t>(n));
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      std::memcpy(&received.fd, CMSG_DATA(c), sizeof(int));
    }
  }
  return received;
}

class FdStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.File("notify");
    socket_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(socket_, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path_.c_str(), sizeof(address.sun_path) - 1);
    ASSERT_EQ(::bind(socket_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    int on = 1;  // sd_notify sends the sender's credentials; accept them like systemd does
    ::setsockopt(socket_, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on));
  }
  void TearDown() override {
    ::unsetenv("NOTIFY_SOCKET");
    if (socket_ >= 0) ::close(socket_);
  }

  test::TempDir dir_;
  std::string path_;
  int socket_ = -1;
};

TEST_F(FdStoreTest, StoreSendsACopyOfTheFdUnderItsNameAndRemoveDropsIt) {
  ::setenv("NOTIFY_SOCKET", path_.c_str(), 1);
  std::unique_ptr<FdStore> store = FdStore::FromEnvironment();
  ASSERT_TRUE(store->enabled());
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  ASSERT_OK(store->Store("group-7", pipe_fds[1]));
  Received stored = ReceiveOne(socket_);
  EXPECT_EQ(stored.message, "FDSTORE=1\nFDNAME=group-7");
  ASSERT_GE(stored.fd, 0) << "no fd came with FDSTORE=1";
  // The received fd is the same pipe: what is written through it arrives at the read end.
  ASSERT_EQ(::write(stored.fd, "x", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(pipe_fds[0], &c, 1), 1);
  EXPECT_EQ(c, 'x');
  ::close(stored.fd);

  ASSERT_OK(store->Remove("group-7"));
  Received removed = ReceiveOne(socket_);
  EXPECT_EQ(removed.message, "FDSTOREREMOVE=1\nFDNAME=group-7");
  EXPECT_EQ(removed.fd, -1);

  EXPECT_ERROR(store->Store("a:b", pipe_fds[1]), kInvalidArgument, "INVALID_ARGUMENT");
  EXPECT_ERROR(store->Store("", pipe_fds[1]), kInvalidArgument, "INVALID_ARGUMENT");
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST_F(FdStoreTest, WithoutAServiceManagerStoringIsUnavailable) {
  ::unsetenv("NOTIFY_SOCKET");
  std::unique_ptr<FdStore> store = FdStore::FromEnvironment();
  EXPECT_FALSE(store->enabled());
  EXPECT_ERROR(store->Store("group-7", 0), kFailedPrecondition, "FD_STORE_UNAVAILABLE");
  EXPECT_FALSE(store->Take("group-7").valid());
  EXPECT_TRUE(store->Untaken().empty());
}

// The restarted process: fds 3 and 4 with their names; Take hands each over once, Untaken lists
// the rest, and the variables are gone from the environment. Runs in a child (fds 3 and 4 are
// the child's to overwrite); the exit status is the number of the first failed check.
TEST_F(FdStoreTest, AdoptsTheFdsHandedBackThroughListenFds) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::dup2(pipe_fds[1], 3) != 3 || ::dup2(pipe_fds[0], 4) != 4) ::_exit(1);
    ::setenv("LISTEN_FDS", "2", 1);
    ::setenv("LISTEN_FDNAMES", "domain-3:group-7", 1);
    ::setenv("LISTEN_PID", absl::StrCat(::getpid()).c_str(), 1);
    std::unique_ptr<FdStore> store = FdStore::FromEnvironment();
    if (std::getenv("LISTEN_FDS") != nullptr) ::_exit(2);
    host::UniqueFd group = store->Take("group-7");
    if (!group.valid() || group.get() != 4) ::_exit(3);
    if (store->Take("group-7").valid()) ::_exit(4);
    if (store->Untaken() != std::vector<std::string>{"domain-3"}) ::_exit(5);
    if ((::fcntl(3, F_GETFD) & FD_CLOEXEC) == 0) ::_exit(6);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's check " << WEXITSTATUS(status) << " failed";
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

}  // namespace
}  // namespace iommud
