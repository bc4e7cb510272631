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

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "proto/status_codec.h"
#include "server/api/key_strands.h"

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

// A unary call whose handler finishes later, possibly on another thread (one that may block): the
// request is parsed, then `start` gets it (its own copy), the response (valid until `finish` is
// called) and `finish`, which it must call exactly once with the call's status (the response is
// sent when OK). A malformed request is finished at once.
template <typename Request, typename Response>
using DeferredUnaryFunction = std::function<void(grpc::CallbackServerContext*, Request, Response*,
                                                 std::function<void(const absl::Status&)>)>;

template <typename Request, typename Response>
grpc::internal::MethodHandler* NewDeferredUnaryHandler(
    DeferredUnaryFunction<Request, Response> start) {
  return new grpc::internal::CallbackUnaryHandler<grpc::ByteBuffer, Response>(
      [start = std::move(start)](grpc::CallbackServerContext* context,
                                 const grpc::ByteBuffer* bytes, Response* response) {
        grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
        Request request;
        if (absl::Status parsed = ParseRequest(*bytes, &request); !parsed.ok()) {
          reactor->Finish(ToGrpcStatus(parsed));
          return reactor;
        }
        start(context, std::move(request), response, [reactor](const absl::Status& status) {
          reactor->Finish(ToGrpcStatus(status));
        });
        return reactor;
      });
}

// Like NewUnaryHandler, but when `strands()` returns some, a parsed request is run there and the
// call finished from that thread: on the strand of `key_of(request)` (key_strands.h: the calls of
// one key run one at a time, in arrival order, and a call waiting for its key holds no thread), or
// outside every strand (the shared lane) when key_of gives nullopt. `run` may then block (a commit
// waiting for the group commit that holds it, state_store.h) without holding one of gRPC's callback
// threads, which must never block. `strands()` is asked per call; null runs the call on the gRPC
// thread as NewUnaryHandler does. `key_of` runs on the gRPC thread and must not block. Request,
// response and context live until the call is finished (gRPC frees them after OnDone).
template <typename Request, typename Response>
grpc::internal::MethodHandler* NewUnaryHandler(
    UnaryFunction<Request, Response> run, std::function<KeyStrands*()> strands,
    std::function<std::optional<uint64_t>(const Request&)> key_of) {
  return new grpc::internal::CallbackUnaryHandler<grpc::ByteBuffer, Response>(
      [run = std::move(run), strands = std::move(strands), key_of = std::move(key_of)](
          grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
          Response* response) {
        grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
        auto request = std::make_shared<Request>();
        absl::Status status = ParseRequest(*bytes, request.get());
        KeyStrands* on = status.ok() ? strands() : nullptr;
        if (on == nullptr) {
          if (status.ok()) status = run(context, *request, response);
          reactor->Finish(ToGrpcStatus(status));
          return reactor;
        }
        auto work = [&run, context, request, response, reactor] {
          reactor->Finish(ToGrpcStatus(run(context, *request, response)));
        };
        on->Run(key_of(*request), std::move(work));
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
