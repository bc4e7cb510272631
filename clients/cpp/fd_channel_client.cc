#include "clients/cpp/fd_channel_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/fd_passing.h"
#include "core/sync.h"
#include "proto/status_codec.h"

namespace iommud {
namespace {

// The largest reply the daemon sends is far below this.
constexpr size_t kMaxReplyBytes = 64 * 1024;

}  // namespace

absl::StatusOr<std::unique_ptr<FdChannelClient>> FdChannelClient::Connect(const std::string& path,
                                                                           absl::Duration timeout) {
  sockaddr_un address = {};
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidTarget,
                 absl::StrCat("fd channel path '", path, "' must have 1 to ",
                              sizeof(address.sun_path) - 1, " bytes"),
                 {{"path", path}});
  }
  host::UniqueFd socket(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!socket.valid()) {
    return Error(absl::StatusCode::kUnavailable, reason::kConnectFailed,
                 absl::StrCat("socket: ", std::strerror(errno)), {{"path", path}});
  }
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  int connected;
  do {
    connected = connect(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address));
  } while (connected != 0 && errno == EINTR);
  if (connected != 0) {
    return Error(absl::StatusCode::kUnavailable, reason::kConnectFailed,
                 absl::StrCat("cannot connect to the fd channel at ", path, ": ",
                              std::strerror(errno)),
                 {{"path", path}});
  }
  return std::unique_ptr<FdChannelClient>(new FdChannelClient(std::move(socket), timeout));
}

absl::StatusOr<FdChannelClient::Reply> FdChannelClient::Call(const iommu::v1::FdRequest& request,
                                                             const std::vector<int>& fds) {
  MutexLock lock(&mu_);
  absl::Status sent = host::SendFds(socket_.get(), request.SerializeAsString(), fds);
  if (!sent.ok()) return sent;
  pollfd readable = {socket_.get(), POLLIN, 0};
  const absl::Time deadline = absl::Now() + timeout_;
  for (;;) {
    const int64_t wait_ms = std::max<int64_t>(
        0, absl::ToInt64Milliseconds(absl::Ceil(deadline - absl::Now(), absl::Milliseconds(1))));
    const int ready = poll(&readable, 1, static_cast<int>(wait_ms));
    if (ready > 0) break;
    if (ready < 0 && errno == EINTR) continue;
    // No reply in time: the connection is out of step with its replies from here on.
    socket_.Reset();
    return absl::DeadlineExceededError(
        absl::StrCat("no reply from the fd channel within ", absl::FormatDuration(timeout_)));
  }
  absl::StatusOr<host::ReceivedFds> received = host::ReceiveFds(socket_.get(), kMaxReplyBytes);
  if (!received.ok()) return received.status();
  Reply reply;
  reply.fds = std::move(received->fds);
  if (!reply.response.ParseFromString(received->payload) || !reply.response.has_status()) {
    return absl::InternalError("the fd channel's reply is not an iommu.v1.FdResponse");
  }
  absl::Status status = FromRpcStatus(reply.response.status());
  if (!status.ok()) return status;  // any fds of the reply are closed
  return reply;
}

absl::StatusOr<iommu::v1::MemoryRegionRef> FdChannelClient::RegisterMemory(
    int memory_fd, uint64_t size, absl::string_view owner) {
  iommu::v1::FdRequest request;
  request.mutable_register_memory()->set_owner(std::string(owner));
  request.mutable_register_memory()->set_size(size);
  absl::StatusOr<Reply> reply = Call(request, {memory_fd});
  if (!reply.ok()) return reply.status();
  if (!reply->response.has_region()) {
    return absl::InternalError("the fd channel's RegisterMemory reply has no region");
  }
  return reply->response.region();
}

absl::StatusOr<host::UniqueFd> FdChannelClient::OpenDevice(absl::string_view device,
                                                           absl::string_view owner) {
  iommu::v1::FdRequest request;
  request.mutable_open_device()->set_owner(std::string(owner));
  request.mutable_open_device()->set_device(std::string(device));
  absl::StatusOr<Reply> reply = Call(request, {});
  if (!reply.ok()) return reply.status();
  if (reply->fds.size() != 1) {
    return absl::InternalError(absl::StrCat("the fd channel's OpenDevice reply carries ",
                                            reply->fds.size(), " descriptors, not 1"));
  }
  return std::move(reply->fds[0]);
}

}  // namespace iommud
