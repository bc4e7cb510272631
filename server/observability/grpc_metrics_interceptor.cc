#include "server/observability/grpc_metrics_interceptor.h"

#include <google/protobuf/descriptor.h>

#include <chrono>

#include "absl/strings/str_cat.h"

namespace iommud {

namespace {

// The gRPC status code names as go-grpc-prometheus spells them (codes.Code.String()).
const char* CodeName(int code) {
  static const char* const kNames[] = {
      "OK",       "Canceled",          "Unknown",       "InvalidArgument", "DeadlineExceeded",
      "NotFound", "AlreadyExists",     "PermissionDenied", "ResourceExhausted",
      "FailedPrecondition", "Aborted", "OutOfRange",    "Unimplemented",   "Internal",
      "Unavailable", "DataLoss",       "Unauthenticated"};
  return code >= 0 && code < 17 ? kNames[code] : "Unknown";
}

std::string GrpcType(const google::protobuf::MethodDescriptor& method) {
  if (method.client_streaming() && method.server_streaming()) return "bidi_stream";
  if (method.client_streaming()) return "client_stream";
  if (method.server_streaming()) return "server_stream";
  return "unary";
}

class GrpcMetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit GrpcMetricsInterceptor(const GrpcMethodMetrics* metrics)
      : metrics_(metrics), start_(std::chrono::steady_clock::now()) {
    metrics_->started->Increment();
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const int code = static_cast<int>(methods->GetSendStatus().error_code());
      const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start_;
      metrics_->handled[code >= 0 && code < 17 ? code : 2]->Increment();
      metrics_->handling_seconds->Observe(elapsed.count());
    }
    methods->Proceed();
  }

 private:
  const GrpcMethodMetrics* const metrics_;
  const std::chrono::steady_clock::time_point start_;
};

}  // namespace

GrpcMetricsInterceptorFactory::GrpcMetricsInterceptorFactory(
    prometheus::Registry& registry, const std::vector<std::string>& services) {
  started_ = &prometheus::BuildCounter()
                  .Name("grpc_server_started_total")
                  .Help("Total number of RPCs started on the server.")
                  .Register(registry);
  handled_ = &prometheus::BuildCounter()
                  .Name("grpc_server_handled_total")
                  .Help("Total number of RPCs completed on the server, regardless of success or "
                        "failure.")
                  .Register(registry);
  handling_seconds_ = &prometheus::BuildHistogram()
                           .Name("grpc_server_handling_seconds")
                           .Help("Histogram of response latency (seconds) of gRPC that had been "
                                 "application-level handled by the server.")
                           .Register(registry);
  const google::protobuf::DescriptorPool* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const std::string& service_name : services) {
    const google::protobuf::ServiceDescriptor* service = pool->FindServiceByName(service_name);
    if (service == nullptr) continue;
    for (int i = 0; i < service->method_count(); ++i) {
      const google::protobuf::MethodDescriptor& method = *service->method(i);
      by_method_[absl::StrCat("/", service_name, "/", method.name())] =
          Create(GrpcType(method), service_name, method.name());
    }
  }
  unknown_ = Create("unary", "unknown", "unknown");
}

GrpcMethodMetrics GrpcMetricsInterceptorFactory::Create(const std::string& type,
                                                        const std::string& service,
                                                        const std::string& method) {
  const prometheus::Labels labels = {
      {"grpc_type", type}, {"grpc_service", service}, {"grpc_method", method}};
  GrpcMethodMetrics metrics;
  metrics.started = &started_->Add(labels);
  for (int code = 0; code < 17; ++code) {
    prometheus::Labels with_code = labels;
    with_code["grpc_code"] = CodeName(code);
    metrics.handled[code] = &handled_->Add(with_code);
  }
  metrics.handling_seconds = &handling_seconds_->Add(
      labels, prometheus::Histogram::BucketBoundaries{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025,
                                                      0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
  return metrics;
}

const GrpcMethodMetrics& GrpcMetricsInterceptorFactory::ForMethod(const char* method) const {
  auto it = method != nullptr ? by_method_.find(method) : by_method_.end();
  return it != by_method_.end() ? it->second : unknown_;
}

grpc::experimental::Interceptor* GrpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new GrpcMetricsInterceptor(&ForMethod(info->method()));
}

}  // namespace iommud
