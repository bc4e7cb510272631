// BlockingExecutor (server/api/blocking_executor.h): work runs on the executor's threads, not the
// caller's; everything queued runs before the destructor returns.
#include "server/api/blocking_executor.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace iommud {
namespace {

TEST(BlockingExecutorTest, RunsWorkOnItsOwnThreads) {
  BlockingExecutor executor(2);
  absl::Notification done;
  std::thread::id ran_on;
  executor.Schedule([&] {
    ran_on = std::this_thread::get_id();
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_NE(ran_on, std::this_thread::get_id());
}

TEST(BlockingExecutorTest, TheDestructorRunsEverythingQueued) {
  std::atomic<int> ran{0};
  {
    BlockingExecutor executor(1);
    absl::Notification release;
    executor.Schedule([&] { release.WaitForNotification(); });  // holds the one thread
    for (int i = 0; i < 100; ++i) executor.Schedule([&] { ran.fetch_add(1); });
    release.Notify();
  }
  EXPECT_EQ(ran.load(), 100);
}

}  // namespace
}  // namespace iommud
