#include "server/api/keep_lease_reactor.h"

#include <utility>

#include "proto/status_codec.h"
#include "server/api/raw_request.h"

namespace iommud {
namespace {

class FailedKeepLease
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, iommu::v1::Group> {
 public:
  explicit FailedKeepLease(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

KeepLeaseReactor::KeepLeaseReactor(const RequestHandlers* handlers, BlockingExecutor* executor,
                                   Admit admit, ClientLimiter::Permit permit)
    : handlers_(handlers),
      executor_(executor),
      admit_(std::move(admit)),
      permit_(std::move(permit)) {
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
  iommu::v1::KeepLeaseRequest message;
  if (absl::Status parsed = ParseRequest(read_, &message); !parsed.ok()) {
    Finish(ToGrpcStatus(parsed));
    return;
  }
  absl::StatusOr<iommu::v1::RenewLeaseRequest> renew = admit_(message);
  if (!renew.ok()) {
    Finish(ToGrpcStatus(renew.status()));
    return;
  }
  executor_->Schedule([this, renew = *std::move(renew)] { Renew(renew); });
}

void KeepLeaseReactor::Renew(const iommu::v1::RenewLeaseRequest& renew) {
  response_.Clear();
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
