#include "server/api/maintenance_handlers.h"

#include <string>
#include <vector>

#include "core/error.h"
#include "core/error_reasons.h"
#include "server/api/fault_injection_convert.h"
#include "server/api/observability_convert.h"

namespace iommud {
namespace {

absl::Status InjectionDisabled() {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kFaultInjectionDisabled,
               "fault injection is off: start iommud with --allow_fault_injection");
}

}  // namespace

absl::Status MaintenanceHandlers::Audit(const iommu::v1::AuditRequest& /*request*/,
                                        iommu::v1::AuditResponse* response) const {
  const std::vector<LeakRecord> leaks = registry_->Audit();
  if (metrics_ != nullptr) {
    metrics_->CountAudit();
    metrics_->SetCurrentLeaks(leaks);
  }
  for (const LeakRecord& leak : leaks) LeakToProto(leak, response->add_leaks());
  return absl::OkStatus();
}

absl::Status MaintenanceHandlers::Reconcile(const iommu::v1::ReconcileRequest& /*request*/,
                                            iommu::v1::ReconcileResponse* response) const {
  const Registry::ReconcileResult result = registry_->Reconcile();
  if (metrics_ != nullptr) metrics_->SetCurrentLeaks(result.remaining);
  for (const LeakRecord& leak : result.repaired) LeakToProto(leak, response->add_repaired());
  for (const LeakRecord& leak : result.remaining) LeakToProto(leak, response->add_remaining());
  return absl::OkStatus();
}

absl::Status MaintenanceHandlers::ListContendedGroups(
    const iommu::v1::ListContendedGroupsRequest& request,
    iommu::v1::ListContendedGroupsResponse* response) const {
  const size_t max_groups = request.max_groups() == 0 ? 10 : request.max_groups();
  for (const Registry::GroupContention& group : registry_->MostContendedGroups(max_groups)) {
    ContentionToProto(group, response->add_groups());
  }
  return absl::OkStatus();
}

absl::Status MaintenanceHandlers::InjectFault(const iommu::v1::InjectFaultRequest& request,
                                              iommu::v1::InjectFaultResponse* response) const {
  if (injector_ == nullptr) return InjectionDisabled();
  absl::StatusOr<FaultSpec> spec = FaultSpecFromProto(request.spec());
  if (!spec.ok()) return spec.status();
  absl::StatusOr<uint64_t> id = injector_->Add(*spec);
  if (id.ok()) response->set_fault_id(*id);
  return id.status();
}

absl::Status MaintenanceHandlers::ListFaults(const iommu::v1::ListFaultsRequest& /*request*/,
                                             iommu::v1::ListFaultsResponse* response) const {
  if (injector_ == nullptr) return InjectionDisabled();
  for (const FaultState& fault : injector_->List()) {
    FaultStateToProto(fault, response->add_faults());
  }
  for (const std::string& point : FaultPoints()) response->add_points(point);
  return absl::OkStatus();
}

absl::Status MaintenanceHandlers::ClearFaults(const iommu::v1::ClearFaultsRequest& /*request*/,
                                              iommu::v1::ClearFaultsResponse* response) const {
  if (injector_ == nullptr) return InjectionDisabled();
  response->set_cleared(injector_->Clear());
  return absl::OkStatus();
}

}  // namespace iommud
