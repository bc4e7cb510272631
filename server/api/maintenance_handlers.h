// MaintenanceHandlers: the RPCs of iommu.v1.Iommu that are not registry requests of one object —
// audit and reconcile (with the daemon's leak gauges), lock contention, and fault injection — as
// plain functions without gRPC, like RequestHandlers (request_handlers.h).
//
// Errors: the fault-injection RPCs are FAILED_PRECONDITION FAULT_INJECTION_DISABLED without an
// injector; InjectFault returns the spec's conversion or the injector's error. On error `response`
// is unspecified. Thread-safe: the registry, metrics and injector are.
#ifndef IOMMUD_SERVER_API_MAINTENANCE_HANDLERS_H_
#define IOMMUD_SERVER_API_MAINTENANCE_HANDLERS_H_

#include "absl/status/status.h"
#include "core/fault_injector.h"
#include "core/registry.h"
#include "iommu/v1/iommu.pb.h"
#include "server/observability/daemon_metrics.h"

namespace iommud {

class MaintenanceHandlers {
 public:
  // None is owned; each must outlive this. `metrics` null: the audit gauges are not set.
  // `injector` null: fault injection is off.
  MaintenanceHandlers(Registry* registry, DaemonMetrics* metrics, FaultInjector* injector)
      : registry_(registry), metrics_(metrics), injector_(injector) {}

  absl::Status Audit(const iommu::v1::AuditRequest& request,
                     iommu::v1::AuditResponse* response) const;
  absl::Status Reconcile(const iommu::v1::ReconcileRequest& request,
                         iommu::v1::ReconcileResponse* response) const;
  absl::Status ListContendedGroups(const iommu::v1::ListContendedGroupsRequest& request,
                                   iommu::v1::ListContendedGroupsResponse* response) const;
  absl::Status InjectFault(const iommu::v1::InjectFaultRequest& request,
                           iommu::v1::InjectFaultResponse* response) const;
  absl::Status ListFaults(const iommu::v1::ListFaultsRequest& request,
                          iommu::v1::ListFaultsResponse* response) const;
  absl::Status ClearFaults(const iommu::v1::ClearFaultsRequest& request,
                           iommu::v1::ClearFaultsResponse* response) const;

 private:
  Registry* const registry_;
  DaemonMetrics* const metrics_;
  FaultInjector* const injector_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_MAINTENANCE_HANDLERS_H_
