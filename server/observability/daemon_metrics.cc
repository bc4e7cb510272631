#include "server/observability/daemon_metrics.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "core/fault_injector.h"
#include "core/types.h"

namespace iommud {

namespace {

// Lock waits and holds: 1us .. ~4s.
prometheus::Histogram::BucketBoundaries LockBuckets() {
  return {1e-6, 4e-6, 16e-6, 64e-6, 256e-6, 1e-3, 4e-3, 16e-3, 64e-3, 0.256, 1.0, 4.0};
}

}  // namespace

const std::vector<LeakReason>& AllLeakReasons() {
  static const std::vector<LeakReason> reasons = {
      LeakReason::kReleasedWhileOwned,  LeakReason::kReleasedWhileAttached,
      LeakReason::kRestoreDefaultFailed, LeakReason::kRidOnUnknownDomain,
      LeakReason::kRidOnWrongDomain,     LeakReason::kReleasedRidTranslates,
      LeakReason::kOwnerGone,            LeakReason::kUnaccountedOwnerCount,
      LeakReason::kOrphanDomain,         LeakReason::kHandoverHeldByOtherUid,
      LeakReason::kHeldAfterTakeBack};
  return reasons;
}

const std::vector<std::string>& DaemonMetrics::BackendOps() {
  static const std::vector<std::string> ops = {
      "add_unit", "alloc_domain", "free_domain", "attach_rid", "release_rid", "map",
      "unmap",    "invalidate_iotlb", "translate", "read_back"};
  return ops;
}

DaemonMetrics::DaemonMetrics(EventBus* events)
    : registry_(std::make_shared<prometheus::Registry>()), events_(events) {
  lock_wait_ = &prometheus::BuildHistogram()
                    .Name("iommud_group_lock_wait_seconds")
                    .Help("Time to acquire a group mutex (0 when uncontended).")
                    .Register(*registry_)
                    .Add({}, LockBuckets());
  lock_hold_ = &prometheus::BuildHistogram()
                    .Name("iommud_group_lock_hold_seconds")
                    .Help("Time a group mutex was held.")
                    .Register(*registry_)
                    .Add({}, LockBuckets());
  lock_contended_ = &prometheus::BuildCounter()
                         .Name("iommud_group_lock_contended_total")
                         .Help("Group mutex acquisitions that had to wait.")
                         .Register(*registry_)
                         .Add({});
  registry_lock_wait_ = &prometheus::BuildHistogram()
                             .Name("iommud_registry_lock_wait_seconds")
                             .Help("Time to acquire the registry's id-map lock.")
                             .Register(*registry_)
                             .Add({}, LockBuckets());
  registry_lock_contended_ = &prometheus::BuildCounter()
                                  .Name("iommud_registry_lock_contended_total")
                                  .Help("Registry id-map lock acquisitions that had to wait.")
                                  .Register(*registry_)
                                  .Add({});
  audits_ = &prometheus::BuildCounter()
                 .Name("iommud_audits_total")
                 .Help("Audits of the registry against the hardware.")
                 .Register(*registry_)
                 .Add({});
  auto& leaked = prometheus::BuildGauge()
                     .Name("iommud_leaked_attachments")
                     .Help("Leaked attachments the last audit found, by reason.")
                     .Register(*registry_);
  auto& detected = prometheus::BuildCounter()
                       .Name("iommud_leaks_detected_total")
                       .Help("Leaked attachments recorded when they happened, by reason.")
                       .Register(*registry_);
  for (LeakReason reason : AllLeakReasons()) {
    const std::string label(LeakReasonName(reason));
    leaked_[reason] = &leaked.Add({{"reason", label}});
    leaks_detected_[reason] = &detected.Add({{"reason", label}});
  }
  auto& faults = prometheus::BuildCounter()
                     .Name("iommud_translation_faults_total")
                     .Help("IOMMU translation faults of emulated DMA, by reason.")
                     .Register(*registry_);
  for (FaultReason reason : {FaultReason::kUnknownRid, FaultReason::kBlocked,
                             FaultReason::kNoMapping, FaultReason::kPermission}) {
    translation_faults_[reason] =
        &faults.Add({{"reason", absl::AsciiStrToLower(FaultReasonName(reason))}});
  }
  auto& injected = prometheus::BuildCounter()
                       .Name("iommud_faults_injected_total")
                       .Help("Faults injected (--allow_fault_injection), by injection point.")
                       .Register(*registry_);
  for (const std::string& point : FaultPoints()) {
    faults_injected_[point] = &injected.Add({{"point", point}});
  }
  auto& release = prometheus::BuildCounter()
                      .Name("iommud_release_requests_total")
                      .Help("The kernel's requests for an owned device back (--backend=linux), "
                            "by outcome: released, revoked, revoke_failed.")
                      .Register(*registry_);
  for (const char* outcome : {"released", "revoked", "revoke_failed"}) {
    release_requests_[outcome] = &release.Add({{"outcome", outcome}});
  }
  auto& bound = prometheus::BuildCounter()
                    .Name("iommud_bound_stream_releases_total")
                    .Help("Ends of KeepLease streams that bound an ownership, by outcome: "
                          "released, kept, failed.")
                    .Register(*registry_);
  for (const char* outcome : {"released", "kept", "failed"}) {
    bound_stream_releases_[outcome] = &bound.Add({{"outcome", outcome}});
  }
  auto& backend = prometheus::BuildHistogram()
                      .Name("iommud_backend_op_seconds")
                      .Help("Duration of backend (hardware) operations, by op.")
                      .Register(*registry_);
  for (const std::string& op : BackendOps()) {
    backend_ops_[op] = &backend.Add({{"op", op}}, LockBuckets());
  }
}

void DaemonMetrics::OnGroupLockAcquired(absl::Duration wait, bool contended) {
  lock_wait_->Observe(absl::ToDoubleSeconds(wait));
  if (contended) lock_contended_->Increment();
}

void DaemonMetrics::OnGroupLockReleased(absl::Duration hold) {
  lock_hold_->Observe(absl::ToDoubleSeconds(hold));
}

void DaemonMetrics::OnRegistryLockAcquired(absl::Duration wait, bool contended) {
  if (!contended) return;  // the uncontended case is not timed (no clock reads on the hot path)
  registry_lock_wait_->Observe(absl::ToDoubleSeconds(wait));
  registry_lock_contended_->Increment();
}

void DaemonMetrics::OnEvent(const RegistryEvent& event) {
  if (events_ != nullptr) events_->Publish(event);
}

void DaemonMetrics::OnLeak(const LeakRecord& leak) { leaks_detected_[leak.reason]->Increment(); }

void DaemonMetrics::OnFault(const FaultRecord& fault) {
  auto it = translation_faults_.find(fault.reason);
  if (it != translation_faults_.end()) it->second->Increment();
}

void DaemonMetrics::SetCurrentLeaks(const std::vector<LeakRecord>& leaks) {
  std::map<LeakReason, int> counts;
  for (const LeakRecord& leak : leaks) ++counts[leak.reason];
  for (auto& [reason, gauge] : leaked_) gauge->Set(counts[reason]);
}

prometheus::Histogram& DaemonMetrics::BackendOpHistogram(absl::string_view op) {
  auto it = backend_ops_.find(op);
  return it != backend_ops_.end() ? *it->second : *backend_ops_.find("read_back")->second;
}

void DaemonMetrics::CountAudit() { audits_->Increment(); }

void DaemonMetrics::CountInjectedFault(absl::string_view point) {
  auto it = faults_injected_.find(point);
  if (it != faults_injected_.end()) it->second->Increment();
}

void DaemonMetrics::CountReleaseRequest(absl::string_view outcome) {
  auto it = release_requests_.find(outcome);
  if (it != release_requests_.end()) it->second->Increment();
}

void DaemonMetrics::CountBoundStreamRelease(absl::string_view outcome) {
  auto it = bound_stream_releases_.find(outcome);
  if (it != bound_stream_releases_.end()) it->second->Increment();
}

}  // namespace iommud
