#include "core/event_bus.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "core/sync.h"

namespace iommud {

bool EventFilter::Matches(const RegistryEvent& event) const {
  if (!kinds.empty() && kinds.count(event.kind) == 0) return false;
  if (group != 0 && event.group != group) return false;
  if (!device.empty() && event.device != device) return false;
  return true;
}

EventSubscription::Next EventSubscription::Poll(RegistryEvent* event) {
  MutexLock lock(&mu_);
  if (overflowed_) {
    overflowed_ = false;
    return Next::kResync;
  }
  if (!queue_.empty()) {
    *event = std::move(queue_.front());
    queue_.pop_front();
    return Next::kEvent;
  }
  return closed_ ? Next::kClosed : Next::kEmpty;
}

EventSubscription::Next EventSubscription::Wait(absl::Duration timeout, RegistryEvent* event) {
  const absl::Time deadline = absl::Now() + timeout;
  {
    MutexLock lock(&mu_);
    while (!overflowed_ && !closed_ && queue_.empty()) {
      if (WaitWithDeadline(&ready_, &mu_, deadline)) break;
    }
  }
  return Poll(event);
}

void EventSubscription::SetNotifier(std::function<void()> notify) {
  MutexLock lock(&mu_);
  notify_ = std::move(notify);
}

void EventSubscription::Close() {
  std::function<void()> notify;
  {
    MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
    notify = notify_;
    ready_.SignalAll();
  }
  if (notify) notify();
}

uint64_t EventSubscription::dropped() const {
  MutexLock lock(&mu_);
  return dropped_;
}

std::function<void()> EventSubscription::Offer(const RegistryEvent& event) {
  if (!filter_.Matches(event)) return nullptr;
  MutexLock lock(&mu_);
  if (closed_) return nullptr;
  if (overflowed_) {  // still waiting for the watcher to take its resync marker
    ++dropped_;
    return nullptr;
  }
  if (queue_.size() >= capacity_) {
    dropped_ += queue_.size() + 1;
    queue_.clear();
    overflowed_ = true;
    ready_.SignalAll();
    return notify_;
  }
  const bool was_empty = queue_.empty();
  queue_.push_back(event);
  if (!was_empty) return nullptr;
  ready_.SignalAll();
  return notify_;
}

std::shared_ptr<EventSubscription> EventBus::Subscribe(EventFilter filter, size_t capacity) {
  std::shared_ptr<EventSubscription> subscription(
      new EventSubscription(std::move(filter), std::max<size_t>(capacity, 1)));
  {
    MutexLock lock(&mu_);
    if (!closed_) {
      subscriptions_.push_back(subscription);
      return subscription;
    }
  }
  subscription->Close();  // after CloseAll: closed from the start
  return subscription;
}

void EventBus::CloseAll() {
  std::vector<std::shared_ptr<EventSubscription>> live;
  {
    MutexLock lock(&mu_);
    closed_ = true;
    for (const std::weak_ptr<EventSubscription>& weak : subscriptions_) {
      if (std::shared_ptr<EventSubscription> subscription = weak.lock()) {
        live.push_back(std::move(subscription));
      }
    }
    subscriptions_.clear();
  }
  for (const std::shared_ptr<EventSubscription>& subscription : live) subscription->Close();
}

bool EventBus::closed() const {
  MutexLock lock(&mu_);
  return closed_;
}

void EventBus::Publish(const RegistryEvent& event) {
  std::vector<std::shared_ptr<EventSubscription>> live;
  {
    MutexLock lock(&mu_);
    auto dead = std::remove_if(subscriptions_.begin(), subscriptions_.end(),
                               [](const std::weak_ptr<EventSubscription>& weak) {
                                 return weak.expired();
                               });
    subscriptions_.erase(dead, subscriptions_.end());
    live.reserve(subscriptions_.size());
    for (const auto& weak : subscriptions_) {
      if (auto subscription = weak.lock()) live.push_back(std::move(subscription));
    }
  }
  for (const auto& subscription : live) {
    if (std::function<void()> notify = subscription->Offer(event)) notify();
  }
}

size_t EventBus::watchers() const {
  MutexLock lock(&mu_);
  size_t count = 0;
  for (const auto& weak : subscriptions_) {
    if (auto subscription = weak.lock()) {
      MutexLock sub_lock(&subscription->mu_);
      if (!subscription->closed_) ++count;
    }
  }
  return count;
}

absl::string_view EventKindName(RegistryEvent::Kind kind) {
  using Kind = RegistryEvent::Kind;
  switch (kind) {
    case Kind::kDeviceProbed: return "DEVICE_PROBED";
    case Kind::kDeviceReleased: return "DEVICE_RELEASED";
    case Kind::kOwnershipClaimed: return "OWNERSHIP_CLAIMED";
    case Kind::kOwnershipReleased: return "OWNERSHIP_RELEASED";
    case Kind::kDomainAllocated: return "DOMAIN_ALLOCATED";
    case Kind::kDomainFreed: return "DOMAIN_FREED";
    case Kind::kAttached: return "ATTACHED";
    case Kind::kDetached: return "DETACHED";
    case Kind::kMapped: return "MAPPED";
    case Kind::kUnmapped: return "UNMAPPED";
    case Kind::kFault: return "FAULT";
    case Kind::kLeakFound: return "LEAK_FOUND";
    case Kind::kLeakRepaired: return "LEAK_REPAIRED";
    case Kind::kLeaseExpired: return "LEASE_EXPIRED";
    case Kind::kReleaseRequested: return "RELEASE_REQUESTED";
    case Kind::kReleaseResolved: return "RELEASE_RESOLVED";
  }
  return "UNKNOWN";
}

}  // namespace iommud
