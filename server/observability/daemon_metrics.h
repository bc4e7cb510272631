// DaemonMetrics: the daemon's Prometheus metrics (docs/architecture.md "Observability") and
// its RegistryObserver. Every metric the hot path touches is created and its reference cached in
// the constructor: no call after construction takes prometheus-cpp's family mutex.
//
// Also forwards registry events to the EventBus (the WatchEvents streams). Thread-safe.
#ifndef IOMMUD_SERVER_OBSERVABILITY_DAEMON_METRICS_H_
#define IOMMUD_SERVER_OBSERVABILITY_DAEMON_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/event_bus.h"
#include "core/registry_observer.h"

namespace iommud {

class DaemonMetrics : public RegistryObserver {
 public:
  // `events` (may be null, not owned) receives every registry event.
  explicit DaemonMetrics(EventBus* events);

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

  // RegistryObserver.
  void OnGroupLockAcquired(absl::Duration wait, bool contended) override;
  void OnGroupLockReleased(absl::Duration hold) override;
  void OnRegistryLockAcquired(absl::Duration wait, bool contended) override;
  void OnEvent(const RegistryEvent& event) override;
  void OnLeak(const LeakRecord& leak) override;
  void OnFault(const FaultRecord& fault) override;

  // iommud_leaked_attachments{reason}: the leaks the last audit found.
  void SetCurrentLeaks(const std::vector<LeakRecord>& leaks);
  // iommud_backend_op_seconds{op}; `op` is one of kBackendOps.
  prometheus::Histogram& BackendOpHistogram(absl::string_view op);
  static const std::vector<std::string>& BackendOps();
  // iommud_audits_total.
  void CountAudit();
  // iommud_faults_injected_total{point}.
  void CountInjectedFault(absl::string_view point);
  // iommud_release_requests_total{outcome}: how the kernel's requests for an owned device ended
  // (server/host/device_removal.h: released, revoked, revoke_failed).
  void CountReleaseRequest(absl::string_view outcome);
  // iommud_bound_stream_releases_total{outcome}: what the end of a KeepLease stream that bound an
  // ownership did to it: released, kept (released or re-claimed meanwhile), failed (the store
  // refused; the lease's TTL decides).
  void CountBoundStreamRelease(absl::string_view outcome);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  EventBus* const events_;
  prometheus::Histogram* lock_wait_;
  prometheus::Histogram* lock_hold_;
  prometheus::Counter* lock_contended_;
  prometheus::Histogram* registry_lock_wait_;
  prometheus::Counter* registry_lock_contended_;
  prometheus::Counter* audits_;
  std::map<LeakReason, prometheus::Gauge*> leaked_;
  std::map<LeakReason, prometheus::Counter*> leaks_detected_;
  std::map<FaultReason, prometheus::Counter*> translation_faults_;
  std::map<std::string, prometheus::Histogram*, std::less<>> backend_ops_;
  std::map<std::string, prometheus::Counter*, std::less<>> faults_injected_;
  std::map<std::string, prometheus::Counter*, std::less<>> release_requests_;
  std::map<std::string, prometheus::Counter*, std::less<>> bound_stream_releases_;
};

// Every LeakReason, for label pre-creation and tests.
const std::vector<LeakReason>& AllLeakReasons();

}  // namespace iommud

#endif  // IOMMUD_SERVER_OBSERVABILITY_DAEMON_METRICS_H_
