// Requests as bytes: gRPC method handlers that take each request message as a grpc::ByteBuffer and
// parse it themselves.
//
// Why: gRPC 1.51's callback handlers answer a request they cannot deserialize with a bare
// UNIMPLEMENTED and an empty message (grpcpp/impl/codegen/server_callback_handlers.h), and a bidi
// stream sees such a message as the client's half-close. IommuService registers every method
// through these handlers instead, so bytes that are not a valid serialization of the request type
// are INVALID_ARGUMENT with reason MALFORMED_REQUEST, like every other bad input. Responses stay
// typed (gRPC serializes them). A method the service does not register at all stays UNIMPLEMENTED
// (gRPC's own answer for an unknown method).
//
// The handlers are grpc::internal method handlers, as the generated WithRawCallbackMethod_* code
// uses; each New* function returns one owned by the caller (grpc::internal::RpcServiceMethod takes
// it).
#ifndef IOMMUD_SERVER_API_RAW_REQUEST_H_
#define IOMMUD_SERVER_API_RAW_REQUEST_H_

#include <google/protobuf/message_lite.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/server_callback_handlers.h>

#include <functional>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "proto/status_codec.h"

namespace iommud {

// Parses `bytes` into `request` (cleared first). INVALID_ARGUMENT MALFORMED_REQUEST with metadata
// {"type": <the request's message type>} when they are not a valid serialization of it.
absl::Status ParseRequest(const grpc::ByteBuffer& bytes, google::protobuf::MessageLite* request);

// A unary call whose handler runs to completion on the gRPC thread: parse, then `run`, then the
// call is finished with the status (ToGrpcStatus) and, when OK, `*response`.
template <typename Request, typename Response>
using UnaryFunction =
    std::function<absl::Status(grpc::CallbackServerContext*, const Request&, Response*)>;

template <typename Request, typename Response>
grpc::internal::MethodHandler* NewUnaryHandler(UnaryFunction<Request, Response> run) {
  return new grpc::internal::CallbackUnaryHandler<grpc::ByteBuffer, Response>(
      [run = std::move(run)](grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
                             Response* response) {
        Request request;
        absl::Status status = ParseRequest(*bytes, &request);
        if (status.ok()) status = run(context, request, response);
        grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
        reactor->Finish(ToGrpcStatus(status));
        return reactor;
      });
}

// Where a unary call runs: `dispatch` gets the parsed request and the work that runs the call and
// finishes it; it runs the work exactly once, on its own thread (at once) or on any other (later),
// e.g. on a group's strand (key_strands.h) or on an executor whose threads may block.
template <typename Request>
using UnaryDispatch = std::function<void(const Request&, std::function<void()> work)>;

// Like NewUnaryHandler, but a parsed request runs where `dispatch` puts it and the call is
// finished from that thread. `run` may then block (a commit waiting for the group commit that
// holds it, state_store.h; a release waiting for the device's owner) without holding one of gRPC's
// callback threads, which must never block. `dispatch` itself runs on the gRPC thread and must not
// block unless it runs the work there. Request, response and context live until the call is
// finished (gRPC frees them after OnDone). A malformed request is finished at once.
template <typename Request, typename Response>
grpc::internal::MethodHandler* NewUnaryHandler(UnaryFunction<Request, Response> run,
                                               UnaryDispatch<Request> dispatch) {
  return new grpc::internal::CallbackUnaryHandler<grpc::ByteBuffer, Response>(
      [run = std::move(run), dispatch = std::move(dispatch)](
          grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
          Response* response) {
        grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
        auto request = std::make_shared<Request>();
        if (absl::Status parsed = ParseRequest(*bytes, request.get()); !parsed.ok()) {
          reactor->Finish(ToGrpcStatus(parsed));
          return reactor;
        }
        const Request& parsed_request = *request;
        dispatch(parsed_request, [&run, context, request = std::move(request), response, reactor] {
          reactor->Finish(ToGrpcStatus(run(context, *request, response)));
        });
        return reactor;
      });
}

// A server-streaming reactor that finishes at once with `status`. Deletes itself in OnDone.
template <typename Item>
class FailedWriteReactor : public grpc::ServerWriteReactor<Item> {
 public:
  explicit FailedWriteReactor(const absl::Status& status) { this->Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

// A server-streaming method: `start` gets the parsed request (valid only during the call of
// `start`: the reactor keeps what it needs) and returns the stream's reactor. A malformed request
// finishes the stream at once.
template <typename Request, typename Item>
grpc::internal::MethodHandler* NewServerStreamHandler(
    std::function<grpc::ServerWriteReactor<Item>*(grpc::CallbackServerContext*, const Request&)>
        start) {
  return new grpc::internal::CallbackServerStreamingHandler<grpc::ByteBuffer, Item>(
      [start = std::move(start)](grpc::CallbackServerContext* context,
                                 const grpc::ByteBuffer* bytes) -> grpc::ServerWriteReactor<Item>* {
        Request request;
        if (absl::Status parsed = ParseRequest(*bytes, &request); !parsed.ok()) {
          return new FailedWriteReactor<Item>(parsed);
        }
        return start(context, request);
      });
}

// A bidi-streaming method whose reactor reads ByteBuffers and parses each with ParseRequest.
template <typename Item>
grpc::internal::MethodHandler* NewBidiStreamHandler(
    std::function<grpc::ServerBidiReactor<grpc::ByteBuffer, Item>*(grpc::CallbackServerContext*)>
        start) {
  return new grpc::internal::CallbackBidiHandler<grpc::ByteBuffer, Item>(std::move(start));
}

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_RAW_REQUEST_H_
