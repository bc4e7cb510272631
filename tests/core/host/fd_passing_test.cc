#include "core/host/fd_passing.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace host {
namespace {

int CountOpenFds() {
  int count = 0;
  DIR* dir = opendir("/proc/self/fd");
  while (dirent* entry = readdir(dir)) count += entry->d_name[0] != '.';
  closedir(dir);
  return count;
}

class FdPassingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    a_.Reset(sv[0]);
    b_.Reset(sv[1]);
  }
  UniqueFd a_, b_;
};

TEST_F(FdPassingTest, PassesADescriptorThatWorksOnTheOtherSide) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd read_end(p[0]), write_end(p[1]);
  ASSERT_OK(SendFds(a_.get(), "memory", {read_end.get()}));
  read_end.Reset();  // the receiver's copy is independent of ours

  ASSERT_OK_AND_ASSIGN(ReceivedFds received, ReceiveFds(b_.get()));
  EXPECT_EQ(received.payload, "memory");
  ASSERT_EQ(received.fds.size(), 1u);
  EXPECT_EQ(fcntl(received.fds[0].get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  ASSERT_EQ(write(write_end.get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(read(received.fds[0].get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
}

TEST_F(FdPassingTest, MessageWithoutDescriptors) {
  ASSERT_OK(SendFds(a_.get(), "hello", {}));
  ASSERT_OK_AND_ASSIGN(ReceivedFds received, ReceiveFds(b_.get()));
  EXPECT_EQ(received.payload, "hello");
  EXPECT_TRUE(received.fds.empty());
}

TEST_F(FdPassingTest, RefusesBadArguments) {
  EXPECT_ERROR(SendFds(a_.get(), "", {}), kInvalidArgument, "INVALID_ARGUMENT");
  std::vector<int> too_many(kMaxPassedFds + 1, a_.get());
  EXPECT_ERROR(SendFds(a_.get(), "x", too_many), kInvalidArgument, "INVALID_ARGUMENT");
}

TEST_F(FdPassingTest, TooManyDescriptorsAreAllClosed) {
  const int before = CountOpenFds();
  // A raw sender attaching more descriptors than ReceiveFds takes.
  constexpr int kCount = kMaxPassedFds + 4;
  int fds[kCount];
  for (int& fd : fds) fd = a_.get();
  char control[CMSG_SPACE(sizeof(fds))] = {};
  char byte = 'x';
  iovec iov = {&byte, 1};
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(fds));
  std::memcpy(CMSG_DATA(cmsg), fds, sizeof(fds));
  ASSERT_EQ(sendmsg(a_.get(), &msg, 0), 1);

  EXPECT_ERROR(ReceiveFds(b_.get()), kResourceExhausted, "FD_RECEIVE_FAILED");
  EXPECT_EQ(CountOpenFds(), before);
}

TEST_F(FdPassingTest, ClosedPeer) {
  a_.Reset();
  EXPECT_ERROR(ReceiveFds(b_.get()), kUnavailable, "FD_RECEIVE_FAILED");
}

}  // namespace
}  // namespace host
}  // namespace iommud
