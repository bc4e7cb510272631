#include "server/state/lease_reaper.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "core/sync.h"
#include "server/observability/log.h"

namespace iommud {

LeaseReaper::LeaseReaper(Registry* registry, absl::Duration interval,
                         prometheus::Registry* metrics)
    : registry_(registry), interval_(interval) {
  if (metrics == nullptr) return;
  expired_ = &prometheus::BuildCounter()
                  .Name("iommud_leases_expired_total")
                  .Help("Ownerships released because their lease lapsed")
                  .Register(*metrics)
                  .Add({});
  failures_ = &prometheus::BuildCounter()
                   .Name("iommud_lease_expiry_failures_total")
                   .Help("Lease expiries the state store refused (undone, retried next pass)")
                   .Register(*metrics)
                   .Add({});
  active_ = &prometheus::BuildGauge()
                 .Name("iommud_leases_active")
                 .Help("Ownership leases held after the last reaper pass")
                 .Register(*metrics)
                 .Add({});
}

LeaseReaper::~LeaseReaper() { Stop(); }

void LeaseReaper::Start() {
  if (interval_ <= absl::ZeroDuration()) return;
  thread_ = std::thread([this] { Loop(); });
}

void LeaseReaper::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    stop_changed_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
}

LeaseReapResult LeaseReaper::ReapNow() {
  LeaseReapResult result = registry_->ExpireLeases();
  for (const auto& [lease, status] : result.failed) {
    LogToStderr(LogLevel::kError,
                absl::StrCat("the lease of group ", lease.group, " (owner '", lease.owner,
                             "') lapsed but its release failed: ", status.ToString()));
  }
  if (expired_ != nullptr) {
    expired_->Increment(static_cast<double>(result.expired.size()));
    failures_->Increment(static_cast<double>(result.failed.size()));
    active_->Set(static_cast<double>(result.active));
  }
  return result;
}

void LeaseReaper::Loop() {
  for (;;) {
    {
      MutexLock lock(&mu_);
      const absl::Time next = absl::Now() + interval_;
      while (!stop_ && !WaitWithDeadline(&stop_changed_, &mu_, next)) {
      }
      if (stop_) return;
    }
    ReapNow();
  }
}

}  // namespace iommud
