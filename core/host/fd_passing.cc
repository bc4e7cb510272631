#include "core/host/fd_passing.h"

#include <errno.h>
#include <sys/socket.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/errno_error.h"

namespace iommud {
namespace host {

absl::Status SendFds(int socket, absl::string_view payload, const std::vector<int>& fds) {
  if (payload.empty() || fds.size() > kMaxPassedFds) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                 absl::StrCat("a message needs a payload and at most ", kMaxPassedFds, " fds"));
  }
  iovec iov = {const_cast<char*>(payload.data()), payload.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)] = {};
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    const int err = errno;
    return ErrnoError(err == EPIPE ? absl::StatusCode::kUnavailable : CodeForErrno(err),
                      reason::kFdSendFailed, "sendmsg with SCM_RIGHTS", err);
  }
  if (static_cast<size_t>(n) != payload.size()) {
    return Error(absl::StatusCode::kInternal, reason::kFdSendFailed, "short sendmsg");
  }
  return absl::OkStatus();
}

absl::StatusOr<ReceivedFds> ReceiveFds(int socket, size_t max_payload) {
  ReceivedFds received;
  received.payload.resize(max_payload);
  iovec iov = {received.payload.data(), received.payload.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)] = {};
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kFdReceiveFailed, "recvmsg", err);
  }
  // Take ownership of whatever arrived first, so an error below closes it.
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
      received.fds.emplace_back(fd);
    }
  }
  if (n == 0) {
    return Error(absl::StatusCode::kUnavailable, reason::kFdReceiveFailed,
                 "the peer closed the socket");
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    return Error(absl::StatusCode::kResourceExhausted, reason::kFdReceiveFailed,
                 (msg.msg_flags & MSG_CTRUNC)
                     ? absl::StrCat("more than ", kMaxPassedFds, " descriptors in one message")
                     : absl::StrCat("a message longer than ", max_payload, " bytes"));
  }
  received.payload.resize(static_cast<size_t>(n));
  return received;
}

}  // namespace host
}  // namespace iommud
