// Passing file descriptors over a connected unix socket (SCM_RIGHTS): how the control plane hands
// a VMM its VFIO device fds and how a VMM hands the control plane its guest memory (a memfd).
//
// Stateless; each call is one sendmsg/recvmsg, so use SOCK_SEQPACKET (or SOCK_STREAM with one
// sender and one receiver at a time). Errors: FD_SEND_FAILED, FD_RECEIVE_FAILED (with the errno),
// INVALID_ARGUMENT.
#ifndef IOMMUD_CORE_HOST_FD_PASSING_H_
#define IOMMUD_CORE_HOST_FD_PASSING_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/host/unique_fd.h"

namespace iommud {
namespace host {

// The most descriptors one message carries.
inline constexpr size_t kMaxPassedFds = 16;

// Sends `payload` (not empty: a message must carry data) with `fds` attached. The caller keeps
// ownership of its `fds` (the receiver gets duplicates).
absl::Status SendFds(int socket, absl::string_view payload, const std::vector<int>& fds);

struct ReceivedFds {
  std::string payload;
  std::vector<UniqueFd> fds;  // owned by the receiver; close-on-exec
};

// Receives one message of at most `max_payload` bytes and at most kMaxPassedFds descriptors.
// A message whose payload or descriptors were truncated fails (FD_RECEIVE_FAILED) with every
// descriptor that did arrive closed; a closed peer fails with kUnavailable.
absl::StatusOr<ReceivedFds> ReceiveFds(int socket, size_t max_payload = 4096);

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_FD_PASSING_H_
