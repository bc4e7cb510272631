// LeaseReaper: the daemon's thread that releases lapsed ownership leases. Every `interval` it calls
// Registry::ExpireLeases (which releases each lapsed ownership like ReleaseOwnership and emits
// LEASE_EXPIRED) and exports
//   iommud_leases_expired_total          ownerships released because their lease lapsed
//   iommud_lease_expiry_failures_total   expiries the store refused (undone; retried next pass)
//   iommud_leases_active                 leases held after the last pass
// Failures are also logged to stderr. Thread-safe.
#ifndef IOMMUD_SERVER_STATE_LEASE_REAPER_H_
#define IOMMUD_SERVER_STATE_LEASE_REAPER_H_

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/registry.h"

namespace iommud {

class LeaseReaper {
 public:
  // `registry` (not owned) must outlive this; `metrics` (not owned) may be null: not exported.
  LeaseReaper(Registry* registry, absl::Duration interval, prometheus::Registry* metrics);
  ~LeaseReaper();  // Stop()
  LeaseReaper(const LeaseReaper&) = delete;
  LeaseReaper& operator=(const LeaseReaper&) = delete;

  // Starts the periodic passes (none if the interval is not positive). Call at most once.
  void Start();
  // Stops the passes and joins the thread. Idempotent.
  void Stop();
  // One pass now, on the calling thread.
  LeaseReapResult ReapNow();

 private:
  void Loop();

  Registry* const registry_;
  const absl::Duration interval_;
  prometheus::Counter* expired_ = nullptr;
  prometheus::Counter* failures_ = nullptr;
  prometheus::Gauge* active_ = nullptr;
  std::thread thread_;

  absl::Mutex mu_;
  absl::CondVar stop_changed_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_STATE_LEASE_REAPER_H_
