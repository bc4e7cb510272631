// The wire error model: absl::Status (core/error.h reason + metadata payloads) <-> grpc::Status with
// a google.rpc.Status in the "grpc-status-details-bin" trailer holding a google.rpc.ErrorInfo.
//
// server/ uses ToGrpcStatus on every reply; the C++ client library uses FromGrpcStatus so callers can
// read ErrorReason(status) exactly as core code does.
#ifndef IOMMUD_PROTO_STATUS_CODEC_H_
#define IOMMUD_PROTO_STATUS_CODEC_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace iommud {

// OK -> OK. An error gets an ErrorInfo detail (domain kErrorDomain); an error without a reason gets
// the reason "INTERNAL" or the code's name, so every error on the wire has one.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The inverse: code, message, and the ErrorInfo's reason and metadata as core/error.h payloads.
absl::Status FromGrpcStatus(const grpc::Status& status);

// The same model without gRPC, for replies that carry a google.rpc.Status in a message (the fd
// channel, proto/iommu/v1/fd_channel.proto): OK -> code 0 and no details; an error -> its code,
// message and one ErrorInfo detail as ToGrpcStatus builds it.
google::rpc::Status ToRpcStatus(const absl::Status& status);
// The inverse; a code outside absl's range is UNKNOWN.
absl::Status FromRpcStatus(const google::rpc::Status& status);

// The ErrorInfo carried by `status`, if any.
bool ExtractErrorInfo(const grpc::Status& status, google::rpc::ErrorInfo* info);

}  // namespace iommud

#endif  // IOMMUD_PROTO_STATUS_CODEC_H_
