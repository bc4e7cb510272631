// KeepLeaseReactor: one KeepLease stream (a lease keepalive). Reads a KeepLeaseRequest, renews the
// lease as RenewLease does, writes the group back, reads the next one; one message in flight at a
// time. The first refusal finishes the stream with its error; the client half-closing finishes it
// with OK. Ending the stream releases nothing.
//
// Admission is the unary calls' (iommu_service.h): before the reactor exists the service has
// checked readiness, authorized the caller and taken a ClientLimiter call permit, which the
// reactor holds for the stream's life. Each message is then admitted by `admit` (readiness, one
// rate token, request bounds, the owner rewritten to the caller's effective owner) before
// anything is renewed. Messages arrive as bytes and are parsed here (raw_request.h): one that is
// not a valid KeepLeaseRequest finishes the stream with INVALID_ARGUMENT MALFORMED_REQUEST.
//
// Threads: reads and writes complete on gRPC's callback threads, where nothing blocks; each
// renewal (registry work and a state-store commit) runs on `executor`. With one message in flight,
// the members are used by one thread at a time, handed over by gRPC's callbacks and the executor's
// queue. Deletes itself in OnDone.
#ifndef IOMMUD_SERVER_API_KEEP_LEASE_REACTOR_H_
#define IOMMUD_SERVER_API_KEEP_LEASE_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iommu/v1/iommu.pb.h"
#include "server/api/blocking_executor.h"
#include "server/api/request_handlers.h"
#include "server/security/limits.h"

namespace iommud {

class KeepLeaseReactor
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, iommu::v1::Group> {
 public:
  // Admits one message of the stream: the renewal to make, or the refusal that ends the stream.
  // Runs on a gRPC callback thread: must not block.
  using Admit = std::function<absl::StatusOr<iommu::v1::RenewLeaseRequest>(
      const iommu::v1::KeepLeaseRequest& message)>;

  // Starts reading. `handlers` and `executor` must outlive the stream; `permit` (the stream's call
  // slot) is held until it is done.
  KeepLeaseReactor(const RequestHandlers* handlers, BlockingExecutor* executor, Admit admit,
                   ClientLimiter::Permit permit);
  // A stream that finishes at once with `status` (a refused stream).
  static grpc::ServerBidiReactor<grpc::ByteBuffer, iommu::v1::Group>* Failed(
      const absl::Status& status);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override { delete this; }

 private:
  // On the executor: renews, then writes the group or finishes with the refusal.
  void Renew(const iommu::v1::RenewLeaseRequest& renew);

  const RequestHandlers* const handlers_;
  BlockingExecutor* const executor_;
  const Admit admit_;
  ClientLimiter::Permit permit_;
  grpc::ByteBuffer read_;
  iommu::v1::Group response_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_KEEP_LEASE_REACTOR_H_
