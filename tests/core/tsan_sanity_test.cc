// Proves the ThreadSanitizer run still catches races in our own code despite tests/tsan.supp (which
// silences what uninstrumented gRPC/protobuf/Abseil make TSan report). Only meaningful in the TSan
// build; skipped elsewhere.
#include <sys/wait.h>

#include <thread>

#include "core/sync.h"
#include "gtest/gtest.h"

namespace iommud {
namespace {

struct Counter {
  int value = 0;  // deliberately unguarded
};

// Two threads write one int without a lock: a data race TSan must report.
void RaceOnPurpose() {
  Counter counter;
  std::thread a([&counter] { for (int i = 0; i < 1000; ++i) counter.value = counter.value + 1; });
  std::thread b([&counter] { for (int i = 0; i < 1000; ++i) counter.value = counter.value + 1; });
  a.join();
  b.join();
  std::exit(counter.value > 0 ? 0 : 1);  // TSan turns the exit code into 66 after a report
}

bool ExitedNonZero(int status) { return WIFEXITED(status) && WEXITSTATUS(status) != 0; }

TEST(TsanSanityTest, ARaceInOurOwnCodeIsReportedDespiteTheSuppressions) {
#ifndef IOMMUD_TSAN
  GTEST_SKIP() << "not a ThreadSanitizer build";
#else
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(RaceOnPurpose(), ExitedNonZero, "ThreadSanitizer: data race");
#endif
}

}  // namespace
}  // namespace iommud
