#include "server/keep_lease_reactor.h"

#include <utility>

#include "proto/status_codec.h"
#include "server/raw_request.h"

namespace iommud {
namespace {

class FailedKeepLease
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, iommu::v1::Group> {
 public:
  explicit FailedKeepLease(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

KeepLeaseReactor::KeepLeaseReactor(const RequestHandlers* handlers, OwnerOf owner_of)
    : handlers_(handlers), owner_of_(std::move(owner_of)) {
  StartRead(&read_);
}

grpc::ServerBidiReactor<grpc::ByteBuffer, iommu::v1::Group>* KeepLeaseReactor::Failed(
    const absl::Status& status) {
  return new FailedKeepLease(status);
}

void KeepLeaseReactor::OnReadDone(bool ok) {
  if (!ok) {  // the client half-closed (or the call ended): nothing more to renew
    Finish(grpc::Status::OK);
    return;
  }
  if (absl::Status parsed = ParseRequest(read_, &request_); !parsed.ok()) {
    Finish(ToGrpcStatus(parsed));
    return;
  }
  absl::StatusOr<std::string> owner = owner_of_(request_.owner());
  if (!owner.ok()) {
    Finish(ToGrpcStatus(owner.status()));
    return;
  }
  iommu::v1::RenewLeaseRequest renew;
  renew.set_group_id(request_.group_id());
  renew.set_owner(*std::move(owner));
  renew.set_lease_ttl_millis(request_.lease_ttl_millis());
  if (absl::Status renewed = handlers_->RenewLease(renew, &response_); !renewed.ok()) {
    Finish(ToGrpcStatus(renewed));
    return;
  }
  StartWrite(&response_);
}

void KeepLeaseReactor::OnWriteDone(bool ok) {
  if (!ok) {
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the KeepLease stream broke"));
    return;
  }
  StartRead(&read_);
}

}  // namespace iommud
