#include "server/api/keep_lease_reactor.h"

#include <atomic>
#include <utility>

#include "core/sync.h"
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

// Liveness ids of KeepLease streams: unique for the process's life, never 0.
std::atomic<uint64_t> next_stream_id{1};

}  // namespace

KeepLeaseReactor::KeepLeaseReactor(const RequestHandlers* handlers, BlockingExecutor* executor,
                                   Admit admit, ReleaseBound release_bound,
                                   ClientLimiter::Permit permit)
    : handlers_(handlers),
      executor_(executor),
      admit_(std::move(admit)),
      release_bound_(std::move(release_bound)),
      stream_id_(next_stream_id.fetch_add(1)),
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
  executor_->Schedule(
      [this, renew = *std::move(renew), bind = message.bind()] { Renew(renew, bind); });
}

void KeepLeaseReactor::Renew(const iommu::v1::RenewLeaseRequest& renew, bool bind) {
  absl::Status renewed;
  {
    // Not held across Finish or StartWrite (gRPC may run reactions from them).
    MutexLock lock(&renew_mu_);
    response_.Clear();
    renewed = bind ? handlers_->BindLease(renew, stream_id_, &response_)
                   : handlers_->RenewLease(renew, &response_);
    if (renewed.ok() && bind) bound_.insert(renew.group_id());
  }
  if (!renewed.ok()) {
    Finish(ToGrpcStatus(renewed));
    return;
  }
  StartWrite(&response_);
}

void KeepLeaseReactor::OnDone() {
  std::set<uint64_t> bound;
  {
    MutexLock lock(&renew_mu_);
    bound.swap(bound_);
  }
  if (release_bound_ != nullptr) {
    for (uint64_t group : bound) release_bound_(group, stream_id_);
  }
  delete this;
}

void KeepLeaseReactor::OnWriteDone(bool ok) {
  if (!ok) {
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the KeepLease stream broke"));
    return;
  }
  StartRead(&read_);
}

}  // namespace iommud
