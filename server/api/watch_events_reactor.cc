#include "server/api/watch_events_reactor.h"

#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/sync.h"
#include "proto/status_codec.h"

namespace iommud {

absl::Status ShuttingDownStatus() {
  return Error(absl::StatusCode::kUnavailable, reason::kServerShuttingDown,
               "iommud is shutting down: this stream ends; reconnect and watch again (a new "
               "snapshot comes first)");
}

WatchEventsReactor::WatchEventsReactor(const Registry* registry, EventBus* bus,
                                       const WatchSpec& spec, ClientLimiter::Permit permit)
    : registry_(registry),
      spec_(spec),
      permit_(std::move(permit)),
      link_(std::make_shared<Link>()) {
  // Subscribe before the snapshot: an event may then appear in both, but none is lost.
  subscription_ = bus->Subscribe(spec_.filter, spec_.queue_size);
  std::shared_ptr<Link> link = link_;
  subscription_->SetNotifier([link] {
    MutexLock lock(&link->mu);
    if (link->reactor != nullptr) link->reactor->PumpFromNotifier();
  });
  {
    MutexLock lock(&link_->mu);
    link_->reactor = this;
    need_snapshot_ = spec_.snapshot;
  }
  PumpWithSnapshots();
}

void WatchEventsReactor::PumpWithSnapshots() {
  for (;;) {
    {
      MutexLock lock(&link_->mu);
      if (writing_ || finished_ || building_snapshot_) return;
      if (!(pending_.empty() && need_snapshot_)) {
        Pump();
        return;
      }
      need_snapshot_ = false;
      building_snapshot_ = true;
    }
    std::vector<iommu::v1::Event> snapshot = SnapshotEvents(*registry_, spec_.filter);
    MutexLock lock(&link_->mu);
    building_snapshot_ = false;
    for (iommu::v1::Event& event : snapshot) pending_.push_back(std::move(event));
  }
}

void WatchEventsReactor::Pump() {
  if (writing_ || finished_ || building_snapshot_) return;
  if (pending_.empty() && need_snapshot_) return;  // built by PumpWithSnapshots on a gRPC thread
  if (!pending_.empty()) {
    current_ = std::move(pending_.front());
    pending_.pop_front();
  } else {
    RegistryEvent event;
    switch (subscription_->Poll(&event)) {
      case EventSubscription::Next::kEvent:
        current_.Clear();
        EventToProto(event, &current_);
        break;
      case EventSubscription::Next::kResync:
        current_.Clear();
        current_.set_kind(iommu::v1::EVENT_KIND_RESYNC);
        current_.set_time_unix_nanos(absl::ToUnixNanos(absl::Now()));
        need_snapshot_ = true;
        break;
      case EventSubscription::Next::kClosed:  // only EventBus::CloseAll closes a live one
        finished_ = true;
        Finish(ToGrpcStatus(ShuttingDownStatus()));
        return;
      case EventSubscription::Next::kEmpty:
        return;
    }
  }
  writing_ = true;
  StartWrite(&current_);
}

void WatchEventsReactor::OnWriteDone(bool ok) {
  {
    MutexLock lock(&link_->mu);
    writing_ = false;
    if (!ok) {  // the client went away
      if (!finished_) {
        finished_ = true;
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
      }
      return;
    }
  }
  PumpWithSnapshots();
}

void WatchEventsReactor::OnCancel() {
  MutexLock lock(&link_->mu);
  if (finished_) return;
  finished_ = true;
  Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
}

void WatchEventsReactor::OnDone() {
  subscription_->Close();
  {
    MutexLock lock(&link_->mu);
    link_->reactor = nullptr;
  }
  delete this;
}

}  // namespace iommud
