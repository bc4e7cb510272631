// KeyStrands (server/api/key_strands.h): per key one item at a time in Schedule order; different
// keys in parallel; items waiting for their key hold no thread; the destructor runs everything.
#include "server/api/key_strands.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "core/sync.h"
#include "gtest/gtest.h"

namespace iommud {
namespace {

constexpr absl::Duration kWait = absl::Seconds(30);

TEST(KeyStrandsTest, RunsEachKeysItemsOneAtATimeInOrder) {
  constexpr int kKeys = 4;
  constexpr int kPerKey = 200;
  absl::Mutex mu;
  std::vector<std::vector<int>> seen(kKeys);  // guarded by mu
  std::atomic<int> running[kKeys] = {};
  std::atomic<bool> overlapped{false};
  {
    KeyStrands strands(8);
    for (int i = 0; i < kPerKey; ++i) {
      for (int key = 0; key < kKeys; ++key) {
        strands.Schedule(key, [&, key, i] {
          if (running[key].fetch_add(1) != 0) overlapped = true;
          {
            MutexLock lock(&mu);
            seen[key].push_back(i);
          }
          running[key].fetch_sub(1);
        });
      }
    }
  }
  EXPECT_FALSE(overlapped.load());
  MutexLock lock(&mu);
  for (int key = 0; key < kKeys; ++key) {
    ASSERT_EQ(seen[key].size(), size_t{kPerKey}) << "key " << key;
    for (int i = 0; i < kPerKey; ++i) EXPECT_EQ(seen[key][i], i) << "key " << key;
  }
}

TEST(KeyStrandsTest, RunsDifferentKeysInParallel) {
  absl::Notification a_started, b_ran;
  absl::Notification a_saw_b;
  KeyStrands strands(2);  // after what its items use
  strands.Schedule(1, [&] {
    a_started.Notify();
    // Finishes only if key 2's item runs while this one still runs.
    if (b_ran.WaitForNotificationWithTimeout(kWait)) a_saw_b.Notify();
  });
  ASSERT_TRUE(a_started.WaitForNotificationWithTimeout(kWait));
  strands.Schedule(2, [&] { b_ran.Notify(); });
  EXPECT_TRUE(a_saw_b.WaitForNotificationWithTimeout(kWait));
}

// The head-of-line case of issue #18: key 1's first item runs and blocks; key 1 gets many more
// items (which, on a plain pool, would each take a thread and wait there for key 1); then key 2
// and the shared lane get one each. With two threads, those must still run while key 1 waits.
TEST(KeyStrandsTest, ItemsWaitingForTheirKeyHoldNoThread) {
  absl::Notification release_first;
  std::atomic<int> key1_ran{0};
  absl::Notification key2_ran, unkeyed_ran;
  // Declared after what its items use: its destructor runs key 1's remaining items.
  KeyStrands strands(2);
  strands.Schedule(1, [&] {
    release_first.WaitForNotification();
    key1_ran.fetch_add(1);
  });
  for (int i = 0; i < 50; ++i) strands.Schedule(1, [&] { key1_ran.fetch_add(1); });
  strands.Schedule(2, [&] { key2_ran.Notify(); });
  strands.ScheduleUnkeyed([&] { unkeyed_ran.Notify(); });
  EXPECT_TRUE(key2_ran.WaitForNotificationWithTimeout(kWait));
  EXPECT_TRUE(unkeyed_ran.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(key1_ran.load(), 0);  // key 1's queue still waits behind its first item
  release_first.Notify();
}

TEST(KeyStrandsTest, ABusyKeyTakesTurnsWithOtherKeys) {
  // One thread: key 1 has 100 items queued; key 2's item, scheduled after them, runs before all
  // of key 1's have (each key-1 item goes back to the end of the pool's queue).
  std::atomic<int> key1_ran{0};
  std::atomic<int> key1_ran_when_key2_ran{-1};
  {
    absl::Notification release;
    KeyStrands strands(1);  // after what its items use
    strands.ScheduleUnkeyed([&] { release.WaitForNotification(); });  // holds the one thread
    for (int i = 0; i < 100; ++i) strands.Schedule(1, [&] { key1_ran.fetch_add(1); });
    strands.Schedule(2, [&] { key1_ran_when_key2_ran = key1_ran.load(); });
    release.Notify();
  }
  EXPECT_EQ(key1_ran.load(), 100);
  EXPECT_GE(key1_ran_when_key2_ran.load(), 0);
  EXPECT_LT(key1_ran_when_key2_ran.load(), 100);
}

TEST(KeyStrandsTest, TheDestructorRunsEverythingQueued) {
  std::atomic<int> ran{0};
  {
    absl::Notification release;
    KeyStrands strands(2);  // after what its items use
    strands.Schedule(7, [&] { release.WaitForNotification(); });
    for (int i = 0; i < 100; ++i) strands.Schedule(i % 5, [&] { ran.fetch_add(1); });
    for (int i = 0; i < 100; ++i) strands.ScheduleUnkeyed([&] { ran.fetch_add(1); });
    // An item that schedules another on its own key while the destructor waits.
    strands.Schedule(9, [&] { strands.Schedule(9, [&] { ran.fetch_add(1); }); });
    release.Notify();
  }
  EXPECT_EQ(ran.load(), 201);
}

TEST(KeyStrandsTest, RunInlineWhenIdleRunsAnIdleKeysItemOnTheCallersThread) {
  KeyStrands strands(2, /*inline_when_idle=*/true);
  std::thread::id ran_on;
  strands.Run(3, [&] { ran_on = std::this_thread::get_id(); });
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  std::thread::id unkeyed_on;
  strands.Run(std::nullopt, [&] { unkeyed_on = std::this_thread::get_id(); });
  EXPECT_EQ(unkeyed_on, std::this_thread::get_id());
}

TEST(KeyStrandsTest, RunInlineWhenIdleQueuesBehindABusyKeyAndKeepsOrder) {
  std::vector<int> order;  // written by key 3's items only, one at a time
  std::thread::id second_on;
  {
    absl::Notification first_started, release;
    KeyStrands strands(2, /*inline_when_idle=*/true);  // after what its items use
    std::thread first([&] {
      strands.Run(3, [&] {
        first_started.Notify();
        release.WaitForNotification();
        order.push_back(1);
      });
    });
    ASSERT_TRUE(first_started.WaitForNotificationWithTimeout(kWait));
    // Key 3 is busy inline on `first`: this item must queue (Run returns before it ran).
    strands.Run(3, [&] {
      second_on = std::this_thread::get_id();
      order.push_back(2);
    });
    EXPECT_TRUE(order.empty());
    release.Notify();
    first.join();
  }
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_NE(second_on, std::this_thread::get_id());
}

TEST(KeyStrandsTest, RunWithoutInlineWhenIdleAlwaysHandsToThePool) {
  std::thread::id keyed_on, unkeyed_on;
  {
    KeyStrands strands(1);
    strands.Run(3, [&] { keyed_on = std::this_thread::get_id(); });
    strands.Run(std::nullopt, [&] { unkeyed_on = std::this_thread::get_id(); });
  }
  EXPECT_NE(keyed_on, std::this_thread::get_id());
  EXPECT_NE(unkeyed_on, std::this_thread::get_id());
}

}  // namespace
}  // namespace iommud
