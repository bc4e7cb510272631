#include "server/host/fd_channel_handler.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/mapped_file.h"
#include "core/status_macros.h"
#include "proto/status_codec.h"

namespace iommud {
namespace {

absl::Status WrongFdCount(absl::string_view method, size_t expected, size_t received) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kWrongFdCount,
               absl::StrCat(method, " takes ", expected, " file descriptor",
                            expected == 1 ? "" : "s", ", not ", received),
               {{"method", std::string(method)},
                {"expected", absl::StrCat(expected)},
                {"received", absl::StrCat(received)}});
}

absl::Status CheckLength(absl::string_view field, absl::string_view value) {
  if (value.size() <= kMaxFdChannelField) return absl::OkStatus();
  return Error(absl::StatusCode::kInvalidArgument, reason::kFieldTooLong,
               absl::StrCat(field, " has ", value.size(), " bytes, more than ",
                            kMaxFdChannelField),
               {{"field", std::string(field)},
                {"length", absl::StrCat(value.size())},
                {"limit", absl::StrCat(kMaxFdChannelField)}});
}

}  // namespace

CallerIdentity UnixPeerIdentity(uint32_t uid, uint32_t gid, int64_t pid,
                                const IdentityOptions& options) {
  PeerFacts facts;
  facts.peer = "unix:";
  facts.properties[kPeerUidProperty] = absl::StrCat(uid);
  facts.properties[kPeerGidProperty] = absl::StrCat(gid);
  CallerIdentity identity = IdentifyPeer(facts, options);
  identity.pid = pid;  // for audit lines only
  return identity;
}

FdReply FdChannelHandler::Handle(const CallerIdentity& caller, host::ReceivedFds request) const {
  FdReply reply;
  reply.op = "malformed";
  iommu::v1::FdRequest parsed;
  absl::Status status;
  if (!parsed.ParseFromString(request.payload)) {
    status = Error(absl::StatusCode::kInvalidArgument, reason::kMalformedRequest,
                   "the message is not an iommu.v1.FdRequest",
                   {{"type", std::string(iommu::v1::FdRequest::descriptor()->full_name())}});
  } else if (parsed.op_case() == iommu::v1::FdRequest::OP_NOT_SET) {
    status = Error(absl::StatusCode::kInvalidArgument, reason::kMissingField,
                   "an FdRequest needs an op (register_memory or open_device)", {{"field", "op"}});
  } else if (parsed.has_register_memory()) {
    reply.op = "register_memory";
    absl::StatusOr<AuthorizedCaller> authorized =
        authorizer_->AuthorizeIdentity(caller, kRegisterMemoryMethod, Role::kOperator);
    status = authorized.ok() ? RegisterMemory(*authorized, parsed.register_memory(),
                                              std::move(request), &reply)
                             : authorized.status();
  } else {
    reply.op = "open_device";
    absl::StatusOr<AuthorizedCaller> authorized =
        authorizer_->AuthorizeIdentity(caller, kOpenDeviceMethod, Role::kOperator);
    status = authorized.ok()
                 ? OpenDevice(*authorized, parsed.open_device(), std::move(request), &reply)
                 : authorized.status();
  }
  if (!status.ok()) {
    reply.response.clear_result();
    reply.fd.Reset();
  }
  *reply.response.mutable_status() = ToRpcStatus(status);
  return reply;
}

absl::Status FdChannelHandler::RegisterMemory(const AuthorizedCaller& caller,
                                              const iommu::v1::RegisterMemoryOp& op,
                                              host::ReceivedFds request, FdReply* reply) const {
  if (request.fds.size() != 1) {
    return WrongFdCount(kRegisterMemoryMethod, 1, request.fds.size());
  }
  RETURN_IF_ERROR(CheckLength("owner", op.owner()));
  ASSIGN_OR_RETURN(std::string owner,
                   authorizer_->EffectiveOwner(caller, kRegisterMemoryMethod, op.owner()));
  ASSIGN_OR_RETURN(std::unique_ptr<host::MappedFile> memory,
                   host::MappedFile::Map(request.fds[0].get(), op.size()));
  host::UniqueFd file = std::move(request.fds[0]);  // the mapping keeps the memory; the ops
  request.fds.clear();                               // may keep the file (the fd store)
  ASSIGN_OR_RETURN(RegisteredRegion region,
                   ops_->RegisterMemory(owner, op.size(), std::move(memory), std::move(file)));
  iommu::v1::MemoryRegionRef* ref = reply->response.mutable_region();
  ref->set_id(region.id);
  ref->set_base(region.base);
  ref->set_size(region.size);
  return absl::OkStatus();
}

absl::Status FdChannelHandler::OpenDevice(const AuthorizedCaller& caller,
                                          const iommu::v1::OpenDeviceOp& op,
                                          host::ReceivedFds request, FdReply* reply) const {
  if (!request.fds.empty()) return WrongFdCount(kOpenDeviceMethod, 0, request.fds.size());
  RETURN_IF_ERROR(CheckLength("owner", op.owner()));
  RETURN_IF_ERROR(CheckLength("device", op.device()));
  if (op.device().empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kMissingField,
                 "OpenDevice needs a device", {{"field", "device"}});
  }
  ASSIGN_OR_RETURN(std::string owner,
                   authorizer_->EffectiveOwner(caller, kOpenDeviceMethod, op.owner()));
  ASSIGN_OR_RETURN(reply->fd, ops_->OpenDevice(op.device(), owner));
  reply->response.mutable_device()->set_name(op.device());
  return absl::OkStatus();
}

}  // namespace iommud
