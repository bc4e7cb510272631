// The main() of the benchmark binaries: as in iommud, Abseil's debug lock-order graph (a hash
// lookup per lock in Debian's build) is turned off before running (see README, Performance).
#ifndef IOMMUD_TESTS_BENCH_BENCH_MAIN_H_
#define IOMMUD_TESTS_BENCH_BENCH_MAIN_H_

#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"

#define IOMMUD_BENCHMARK_MAIN()                                              \
  int main(int argc, char** argv) {                                          \
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);     \
    benchmark::Initialize(&argc, argv);                                      \
    benchmark::RunSpecifiedBenchmarks();                                     \
    benchmark::Shutdown();                                                   \
    return 0;                                                                \
  }

#endif  // IOMMUD_TESTS_BENCH_BENCH_MAIN_H_
