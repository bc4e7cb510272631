#include "core/event_bus.h"

#include <atomic>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace iommud {
namespace {

RegistryEvent Event(RegistryEvent::Kind kind, GroupId group = 1, std::string device = "d") {
  RegistryEvent event;
  event.kind = kind;
  event.group = group;
  event.device = std::move(device);
  return event;
}

using Next = EventSubscription::Next;

TEST(EventBusTest, DeliversMatchingEventsInOrder) {
  EventBus bus;
  EventFilter filter;
  filter.kinds = {RegistryEvent::Kind::kAttached, RegistryEvent::Kind::kDetached};
  filter.group = 7;
  auto watcher = bus.Subscribe(filter, 8);
  bus.Publish(Event(RegistryEvent::Kind::kAttached, 7));
  bus.Publish(Event(RegistryEvent::Kind::kAttached, 8));   // other group
  bus.Publish(Event(RegistryEvent::Kind::kMapped, 7));     // other kind
  bus.Publish(Event(RegistryEvent::Kind::kDetached, 7));
  RegistryEvent event;
  ASSERT_EQ(watcher->Poll(&event), Next::kEvent);
  EXPECT_EQ(event.kind, RegistryEvent::Kind::kAttached);
  ASSERT_EQ(watcher->Poll(&event), Next::kEvent);
  EXPECT_EQ(event.kind, RegistryEvent::Kind::kDetached);
  EXPECT_EQ(watcher->Poll(&event), Next::kEmpty);
}

TEST(EventBusTest, FiltersByDevice) {
  EventBus bus;
  EventFilter filter;
  filter.device = "0000:01:00.0";
  auto watcher = bus.Subscribe(filter, 8);
  bus.Publish(Event(RegistryEvent::Kind::kDeviceProbed, 1, "0000:02:00.0"));
  bus.Publish(Event(RegistryEvent::Kind::kDeviceProbed, 1, "0000:01:00.0"));
  RegistryEvent event;
  ASSERT_EQ(watcher->Poll(&event), Next::kEvent);
  EXPECT_EQ(event.device, "0000:01:00.0");
  EXPECT_EQ(watcher->Poll(&event), Next::kEmpty);
}

TEST(EventBusTest, ASlowWatcherGetsOneResyncInsteadOfUnboundedMemory) {
  EventBus bus;
  auto slow = bus.Subscribe({}, 3);
  auto fast = bus.Subscribe({}, 100);
  for (int i = 0; i < 10; ++i) bus.Publish(Event(RegistryEvent::Kind::kMapped, i + 1));
  RegistryEvent event;
  EXPECT_EQ(slow->Poll(&event), Next::kResync);
  EXPECT_EQ(slow->dropped(), 10u);
  EXPECT_EQ(slow->Poll(&event), Next::kEmpty);
  // After the resync it receives new events again.
  bus.Publish(Event(RegistryEvent::Kind::kUnmapped, 42));
  ASSERT_EQ(slow->Poll(&event), Next::kEvent);
  EXPECT_EQ(event.group, 42u);
  int delivered = 0;
  while (fast->Poll(&event) == Next::kEvent) ++delivered;
  EXPECT_EQ(delivered, 11);
}

TEST(EventBusTest, NotifierFiresOnEmptyToNonEmptyOverflowAndClose) {
  EventBus bus;
  auto watcher = bus.Subscribe({}, 2);
  std::atomic<int> notified{0};
  watcher->SetNotifier([&] { notified.fetch_add(1); });
  bus.Publish(Event(RegistryEvent::Kind::kMapped));
  bus.Publish(Event(RegistryEvent::Kind::kMapped));  // queue not empty: no new notification
  EXPECT_EQ(notified.load(), 1);
  bus.Publish(Event(RegistryEvent::Kind::kMapped));  // overflow
  EXPECT_EQ(notified.load(), 2);
  watcher->Close();
  EXPECT_EQ(notified.load(), 3);
  RegistryEvent event;
  EXPECT_EQ(watcher->Poll(&event), Next::kResync);
  EXPECT_EQ(watcher->Poll(&event), Next::kClosed);
  EXPECT_EQ(bus.watchers(), 0u);
}

TEST(EventBusTest, WaitWakesUpOnPublishFromAnotherThread) {
  EventBus bus;
  auto watcher = bus.Subscribe({}, 4);
  std::thread publisher([&] { bus.Publish(Event(RegistryEvent::Kind::kFault, 3)); });
  RegistryEvent event;
  EXPECT_EQ(watcher->Wait(absl::Seconds(30), &event), Next::kEvent);
  EXPECT_EQ(event.group, 3u);
  publisher.join();
  EXPECT_EQ(watcher->Wait(absl::Milliseconds(1), &event), Next::kEmpty);
}

TEST(EventBusTest, DroppedSubscriptionsAreForgotten) {
  EventBus bus;
  {
    auto watcher = bus.Subscribe({}, 4);
    EXPECT_EQ(bus.watchers(), 1u);
  }
  bus.Publish(Event(RegistryEvent::Kind::kMapped));
  EXPECT_EQ(bus.watchers(), 0u);
  EXPECT_EQ(EventKindName(RegistryEvent::Kind::kLeakFound), "LEAK_FOUND");
}

}  // namespace
}  // namespace iommud
