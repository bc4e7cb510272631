// FdChannelClient: the C++ client of iommud's fd side channel (proto/iommu/v1/fd_channel.proto),
// the unix SOCK_SEQPACKET socket next to the gRPC one (default <gRPC socket path>.fds) over which a
// VMM passes file descriptors: its guest memory (a memfd) to the daemon, and the VFIO device fds of
// the devices it owns from it.
//
// Errors are absl::Status with the daemon's google.rpc.ErrorInfo reason and metadata, read with
// iommud::ErrorReason / GetErrorMetadata (core/error.h) as with IommuClient; e.g. PERMISSION_DENIED
// PERMISSION_DENIED, INVALID_ARGUMENT WRONG_FD_COUNT, FAILED_PRECONDITION GROUP_NOT_ATTACHED.
// Local failures: UNAVAILABLE (CONNECT_FAILED) when the socket cannot be reached, FD_SEND_FAILED /
// FD_RECEIVE_FAILED when the connection breaks (the daemon closes idle connections: reconnect),
// DEADLINE_EXCEEDED when no reply comes within the timeout, INTERNAL for a reply that is not an
// FdResponse.
//
// Thread-safe: calls are serialized on the one connection (one request in flight at a time).
#ifndef IOMMUD_CLIENTS_CPP_FD_CHANNEL_CLIENT_H_
#define IOMMUD_CLIENTS_CPP_FD_CHANNEL_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/host/unique_fd.h"
#include "iommu/v1/fd_channel.pb.h"

namespace iommud {

class FdChannelClient {
 public:
  // Connects to the fd channel at `path` ("/run/iommud/iommud.sock.fds"). Each later call waits at
  // most `timeout` for its reply. INVALID_ARGUMENT (INVALID_TARGET) for a path that does not fit
  // a unix socket address; UNAVAILABLE (CONNECT_FAILED) when nothing accepts there.
  static absl::StatusOr<std::unique_ptr<FdChannelClient>> Connect(
      const std::string& path, absl::Duration timeout = absl::Seconds(10));

  FdChannelClient(const FdChannelClient&) = delete;
  FdChannelClient& operator=(const FdChannelClient&) = delete;

  // Registers the first `size` bytes (a positive multiple of 4096) of `memory_fd` (a memfd, or a
  // file on hugetlbfs or shm, open read-write; the caller keeps its fd) as a memory region of
  // `owner` ("" = the caller's principal; a name = <principal>/<name>).
  absl::StatusOr<iommu::v1::MemoryRegionRef> RegisterMemory(int memory_fd, uint64_t size,
                                                            absl::string_view owner = "");

  // The VFIO device fd of `device` ("0000:03:00.0"), whose group `owner` owns and has attached to
  // one of its domains. The caller owns the returned fd.
  absl::StatusOr<host::UniqueFd> OpenDevice(absl::string_view device,
                                            absl::string_view owner = "");

 private:
  FdChannelClient(host::UniqueFd socket, absl::Duration timeout)
      : socket_(std::move(socket)), timeout_(timeout) {}

  struct Reply {
    iommu::v1::FdResponse response;
    std::vector<host::UniqueFd> fds;
  };
  // Sends `request` with `fds`, waits for the reply, and returns it when its status is OK (else
  // the status, the reply's fds closed).
  absl::StatusOr<Reply> Call(const iommu::v1::FdRequest& request, const std::vector<int>& fds);

  absl::Mutex mu_;
  host::UniqueFd socket_ ABSL_GUARDED_BY(mu_);
  const absl::Duration timeout_;
};

}  // namespace iommud

#endif  // IOMMUD_CLIENTS_CPP_FD_CHANNEL_CLIENT_H_
