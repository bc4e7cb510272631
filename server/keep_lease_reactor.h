// KeepLeaseReactor: one KeepLease stream (a lease keepalive). Reads a KeepLeaseRequest, renews the
// lease as RenewLease does (the owner rewritten by the caller's identity), writes the group back,
// reads the next one; one message in flight at a time. The first refusal finishes the stream with
// its error; the client half-closing finishes it with OK. Ending the stream releases nothing.
// Messages arrive as bytes and are parsed here (raw_request.h): one that is not a valid
// KeepLeaseRequest finishes the stream with INVALID_ARGUMENT MALFORMED_REQUEST. Deletes itself in
// OnDone.
#ifndef IOMMUD_SERVER_KEEP_LEASE_REACTOR_H_
#define IOMMUD_SERVER_KEEP_LEASE_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iommu/v1/iommu.pb.h"
#include "server/request_handlers.h"

namespace iommud {

class KeepLeaseReactor
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, iommu::v1::Group> {
 public:
  // The effective owner of a message naming `owner` (Authorizer::EffectiveOwner), or a denial.
  using OwnerOf = std::function<absl::StatusOr<std::string>(const std::string& owner)>;

  // Starts reading; `handlers` must outlive the stream.
  KeepLeaseReactor(const RequestHandlers* handlers, OwnerOf owner_of);
  // A stream that finishes at once with `status` (e.g. the caller may not call KeepLease).
  static grpc::ServerBidiReactor<grpc::ByteBuffer, iommu::v1::Group>* Failed(
      const absl::Status& status);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override { delete this; }

 private:
  const RequestHandlers* const handlers_;
  const OwnerOf owner_of_;
  grpc::ByteBuffer read_;
  iommu::v1::KeepLeaseRequest request_;
  iommu::v1::Group response_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_KEEP_LEASE_REACTOR_H_
