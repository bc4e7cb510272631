// WatchEventsReactor: one WatchEvents stream. Sends the snapshot first, then every event of its
// EventBus subscription as it arrives; when the subscription overflowed it sends RESYNC and a new
// snapshot. Writes are driven from two places: gRPC's OnWriteDone and the subscription's notifier
// (which runs on the publishing thread, possibly inside a registry operation, so it never takes
// registry locks: snapshots are only built on gRPC threads). Deletes itself in OnDone.
//
// When the daemon begins shutting down it closes the EventBus (EventBus::CloseAll): the stream
// sends what was queued for it, then finishes with UNAVAILABLE (SERVER_SHUTTING_DOWN) at once,
// instead of being held for the shutdown grace and cut with a bare UNAVAILABLE.
#ifndef IOMMUD_SERVER_API_WATCH_EVENTS_REACTOR_H_
#define IOMMUD_SERVER_API_WATCH_EVENTS_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/event_bus.h"
#include "core/registry.h"
#include "iommu/v1/iommu.pb.h"
#include "server/api/observability_convert.h"
#include "server/security/limits.h"

namespace iommud {

// UNAVAILABLE (SERVER_SHUTTING_DOWN): how watch streams end, and new ones are refused, once the
// daemon's shutdown began.
absl::Status ShuttingDownStatus();

class WatchEventsReactor : public grpc::ServerWriteReactor<iommu::v1::Event> {
 public:
  // Starts the stream; `registry` and `bus` must outlive it. `permit` (the stream's watcher slot,
  // limits.h) is held until the stream is done.
  WatchEventsReactor(const Registry* registry, EventBus* bus, const WatchSpec& spec,
                     ClientLimiter::Permit permit = {});

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // Shared with the notifier, which may outlive the reactor: null once the reactor is done.
  struct Link {
    absl::Mutex mu;
    WatchEventsReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };

  // Starts the next write if none is in flight and nothing must come first (a snapshot being
  // built). Never takes registry locks: the notifier calls it inside registry operations.
  void Pump() ABSL_EXCLUSIVE_LOCKS_REQUIRED(link_->mu);
  // From gRPC threads only (no registry lock held, link_->mu not held): builds a pending snapshot
  // without holding link_->mu (registry locks come before it in the notifier's path), then pumps.
  void PumpWithSnapshots() ABSL_LOCKS_EXCLUDED(link_->mu);
  // The notifier's entry: it holds link_->mu through its own copy of the Link pointer, which the
  // analysis cannot see is the same mutex.
  void PumpFromNotifier() ABSL_NO_THREAD_SAFETY_ANALYSIS { Pump(); }

  const Registry* const registry_;
  const WatchSpec spec_;
  ClientLimiter::Permit permit_;
  std::shared_ptr<Link> link_;
  std::shared_ptr<EventSubscription> subscription_;
  // Guarded by link_->mu:
  std::deque<iommu::v1::Event> pending_;  // snapshot events and markers, sent before the queue
  bool need_snapshot_ = false;
  bool building_snapshot_ = false;
  bool writing_ = false;
  bool finished_ = false;
  iommu::v1::Event current_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_WATCH_EVENTS_REACTOR_H_
