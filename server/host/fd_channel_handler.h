// FdChannelHandler: one request of the fd side channel (proto/iommu/v1/fd_channel.proto), from the
// datagram and descriptors received to the reply and the descriptor to send back. The socket work
// is FdChannel's (server/host/fd_channel.h); this is the request path, in order:
//   1. parse: bytes that are not an FdRequest: INVALID_ARGUMENT MALFORMED_REQUEST (metadata type);
//      no op set: INVALID_ARGUMENT MISSING_FIELD (field "op");
//   2. authorize: the caller's identity (from SO_PEERCRED, as on the gRPC unix socket) must have
//      the operator role (Authorizer: PERMISSION_DENIED, method "RegisterMemory" / "OpenDevice");
//   3. descriptors: RegisterMemory carries exactly one, OpenDevice none: INVALID_ARGUMENT
//      WRONG_FD_COUNT (metadata expected, received);
//   4. owner: rewritten to the caller's effective owner (Authorizer::EffectiveOwner: "" = the
//      principal; another principal's owner needs admin); longer than kMaxFdChannelField bytes
//      (as is a device name): INVALID_ARGUMENT FIELD_TOO_LONG;
//   5. RegisterMemory maps the fd (core/host/mapped_file.h: INVALID_SIZE, MEMORY_FD_NOT_REGULAR,
//      MEMORY_FD_TOO_SMALL, MEMORY_MAP_FAILED) and hands the mapping to FdChannelOps; OpenDevice
//      asks FdChannelOps for the device fd.
// A refusal changes nothing; the received descriptors are closed when the request is dropped.
//
// Thread safety: Handle is const and may run concurrently if the ops and authorizer allow it.
#ifndef IOMMUD_SERVER_HOST_FD_CHANNEL_HANDLER_H_
#define IOMMUD_SERVER_HOST_FD_CHANNEL_HANDLER_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "core/host/fd_passing.h"
#include "core/host/unique_fd.h"
#include "iommu/v1/fd_channel.pb.h"
#include "server/host/fd_channel_ops.h"
#include "server/security/authorizer.h"
#include "server/security/caller_identity.h"

namespace iommud {

// The longest owner or device name a request may carry.
inline constexpr size_t kMaxFdChannelField = 1024;

// Method names of the channel's ops in authorization denials and audit lines.
inline constexpr absl::string_view kRegisterMemoryMethod = "RegisterMemory";
inline constexpr absl::string_view kOpenDeviceMethod = "OpenDevice";

struct FdReply {
  iommu::v1::FdResponse response;  // response.status is always set
  host::UniqueFd fd;               // the descriptor to attach (OpenDevice's), or none
  // For metrics: "register_memory", "open_device", or "malformed" when no op could be read.
  std::string op;
};

class FdChannelHandler {
 public:
  // Neither is owned; both must outlive the handler.
  FdChannelHandler(const Authorizer* authorizer, FdChannelOps* ops)
      : authorizer_(authorizer), ops_(ops) {}

  // Handles one request of `caller`; takes the received descriptors (closed unless handed on).
  FdReply Handle(const CallerIdentity& caller, host::ReceivedFds request) const;

 private:
  absl::Status RegisterMemory(const AuthorizedCaller& caller, const iommu::v1::RegisterMemoryOp& op,
                              host::ReceivedFds request, FdReply* reply) const;
  absl::Status OpenDevice(const AuthorizedCaller& caller, const iommu::v1::OpenDeviceOp& op,
                          host::ReceivedFds request, FdReply* reply) const;

  const Authorizer* const authorizer_;
  FdChannelOps* const ops_;
};

// The CallerIdentity of a unix peer with `uid`/`gid`/`pid`, exactly as the gRPC unix socket
// establishes it (its listener stamps the same properties: server/security/peer_cred_listener.h).
CallerIdentity UnixPeerIdentity(uint32_t uid, uint32_t gid, int64_t pid,
                                const IdentityOptions& options);

}  // namespace iommud

#endif  // IOMMUD_SERVER_HOST_FD_CHANNEL_HANDLER_H_
