// A gRPC server interceptor exporting the go-grpc-prometheus metrics, so that existing gRPC
// dashboards work unchanged:
//   grpc_server_started_total{grpc_type,grpc_service,grpc_method}
//   grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
//   grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method} (histogram)
// The metrics of every method of the given services (and every status code) are created up front,
// so an RPC only increments cached counters. Methods of other services count as
// grpc_service="unknown".
#ifndef IOMMUD_SERVER_OBSERVABILITY_GRPC_METRICS_INTERCEPTOR_H_
#define IOMMUD_SERVER_OBSERVABILITY_GRPC_METRICS_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace iommud {

// Cached metrics of one method.
struct GrpcMethodMetrics {
  prometheus::Counter* started = nullptr;
  std::array<prometheus::Counter*, 17> handled{};  // by grpc::StatusCode (0..16)
  prometheus::Histogram* handling_seconds = nullptr;
};

class GrpcMetricsInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `services`: full names ("iommu.v1.Iommu", "grpc.health.v1.Health") looked up in the generated
  // descriptor pool. The factory must outlive the server.
  GrpcMetricsInterceptorFactory(prometheus::Registry& registry,
                                const std::vector<std::string>& services);

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

  // The metrics of `method` ("/pkg.Service/Method"); the "unknown" ones for other methods.
  const GrpcMethodMetrics& ForMethod(const char* method) const;

 private:
  GrpcMethodMetrics Create(const std::string& type, const std::string& service,
                           const std::string& method);

  prometheus::Family<prometheus::Counter>* started_;
  prometheus::Family<prometheus::Counter>* handled_;
  prometheus::Family<prometheus::Histogram>* handling_seconds_;
  std::map<std::string, GrpcMethodMetrics, std::less<>> by_method_;  // read-only after construction
  GrpcMethodMetrics unknown_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_OBSERVABILITY_GRPC_METRICS_INTERCEPTOR_H_
