// KeepLeaseReactor: one KeepLease stream (a lease keepalive). Reads a KeepLeaseRequest, renews the
// lease as RenewLease does, writes the group back, reads the next one; one message in flight at a
// time. The first refusal finishes the stream with its error; the client half-closing finishes it
// with OK.
//
// Liveness binding (docs/semantics.md "Ownership bound to a stream"): a message with `bind` renews
// and binds the group's ownership to this stream (RequestHandlers::BindLease with the stream's
// id, unique in the process). When the stream is done, for whatever reason (half-close, a
// refusal, the client's death or its connection dropping, which gRPC reports as a failed read or
// write), `release_bound` is called once for each group the stream bound; it must not block (the
// service schedules the release). A stream that bound nothing releases nothing.
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

#include <cstdint>
#include <functional>
#include <set>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
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
  // The stream `stream` that bound `group` is done. Runs on a gRPC callback thread: must not block.
  using ReleaseBound = std::function<void(uint64_t group, uint64_t stream)>;

  // Starts reading. `handlers` and `executor` must outlive the stream; `permit` (the stream's call
  // slot) is held until it is done.
  KeepLeaseReactor(const RequestHandlers* handlers, BlockingExecutor* executor, Admit admit,
                   ReleaseBound release_bound, ClientLimiter::Permit permit);
  // A stream that finishes at once with `status` (a refused stream).
  static grpc::ServerBidiReactor<grpc::ByteBuffer, iommu::v1::Group>* Failed(
      const absl::Status& status);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  // Hands each bound group to `release_bound`, then deletes this.
  void OnDone() override;

  // This stream's liveness id (nonzero, unique in the process).
  uint64_t stream_id() const { return stream_id_; }

 private:
  // On the executor: renews (and binds, for a message with `bind`), then writes the group or
  // finishes with the refusal.
  void Renew(const iommu::v1::RenewLeaseRequest& renew, bool bind);

  const RequestHandlers* const handlers_;
  BlockingExecutor* const executor_;
  const Admit admit_;
  const ReleaseBound release_bound_;
  const uint64_t stream_id_;
  // Renewals of one stream never overlap (the next read starts only when the previous write is
  // done), but consecutive ones may run on different executor threads, ordered only inside gRPC,
  // which ThreadSanitizer cannot see (Debian's gRPC is not instrumented). Renew fills response_
  // and bound_ under this mutex, and OnDone reads bound_ under it, so the order is visible.
  absl::Mutex renew_mu_;
  // Groups this stream bound; written by Renew before its write starts, read by OnDone after the
  // last callback.
  std::set<uint64_t> bound_ ABSL_GUARDED_BY(renew_mu_);
  ClientLimiter::Permit permit_;
  grpc::ByteBuffer read_;
  // Written by Renew under renew_mu_; read by gRPC during the write Renew then starts (after the
  // mutex is released: gRPC may run reactions from StartWrite), always before the next Renew.
  iommu::v1::Group response_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_KEEP_LEASE_REACTOR_H_
