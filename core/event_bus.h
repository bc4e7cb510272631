// EventBus: fans registry events out to watchers (the WatchEvents stream), each with a bounded
// queue. A watcher that falls behind does not grow memory: its queue is dropped and it is told to
// resync (take a new snapshot) instead.
//
// Publish is called from RegistryObserver::OnEvent, possibly with a group mutex held: it only
// copies the event into the matching queues and calls their notifiers; it never blocks on a slow
// watcher. Thread-safe.
#ifndef IOMMUD_CORE_EVENT_BUS_H_
#define IOMMUD_CORE_EVENT_BUS_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/registry_observer.h"

namespace iommud {

// Which events a watcher wants. Empty fields match everything.
struct EventFilter {
  std::set<RegistryEvent::Kind> kinds;
  GroupId group = 0;
  std::string device;
  bool Matches(const RegistryEvent& event) const;
};

class EventSubscription {
 public:
  enum class Next { kEvent, kResync, kClosed, kEmpty };

  // Takes the oldest queued event without blocking. kResync once after the queue overflowed
  // (the events in between are lost; the watcher must resynchronize), kClosed after Close().
  Next Poll(RegistryEvent* event);
  // Like Poll but waits up to `timeout` for something other than kEmpty.
  Next Wait(absl::Duration timeout, RegistryEvent* event);

  // `notify` is called (from the publishing thread, with no bus lock held) each time the queue
  // goes from empty to non-empty, on overflow and on Close. It must be fast and must not block.
  void SetNotifier(std::function<void()> notify);
  // Stops delivery; Poll returns kClosed once the queue is drained. Idempotent.
  void Close();

  uint64_t dropped() const;  // events lost to overflows

 private:
  friend class EventBus;
  EventSubscription(EventFilter filter, size_t capacity)
      : filter_(std::move(filter)), capacity_(capacity) {}
  // Queues `event` if it matches; returns the notifier to call, if any.
  std::function<void()> Offer(const RegistryEvent& event);

  const EventFilter filter_;
  const size_t capacity_;
  mutable absl::Mutex mu_;
  absl::CondVar ready_;  // signalled on a new event, an overflow and Close
  std::deque<RegistryEvent> queue_ ABSL_GUARDED_BY(mu_);
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<void()> notify_ ABSL_GUARDED_BY(mu_);
};

class EventBus {
 public:
  // A new watcher with a queue of at most `capacity` events (>= 1). Unsubscribes when the last
  // reference goes away or on Close.
  std::shared_ptr<EventSubscription> Subscribe(EventFilter filter, size_t capacity);
  void Publish(const RegistryEvent& event);
  size_t watchers() const;  // live subscriptions
  // Closes every subscription (their watchers get what is queued, then kClosed), and every later
  // one at once: the daemon's shutdown ends its watch streams with it. Idempotent.
  void CloseAll();
  bool closed() const;  // CloseAll ran

 private:
  mutable absl::Mutex mu_;
  std::vector<std::weak_ptr<EventSubscription>> subscriptions_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// Names of the event kinds ("DEVICE_PROBED", ...), for logs and the wire.
absl::string_view EventKindName(RegistryEvent::Kind kind);

}  // namespace iommud

#endif  // IOMMUD_CORE_EVENT_BUS_H_
