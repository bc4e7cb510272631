#!/usr/bin/env bash
# The whole iommud test suite (the README's test command; .ci/run calls it):
#   1. installs the Debian packages it needs (deploy/install-deps.sh);
#   2. CMake build of everything with AddressSanitizer + UBSan (clang, so the -Wthread-safety
#      annotations are checked too) and the whole ctest suite: unit, conformance (both backends),
#      registry, seed race, stress, server integration against the real daemon, iommuctl, deploy
#      (promtool, a real Prometheus scraping iommud);
#   3. ThreadSanitizer build of the whole suite as well (gRPC, protobuf and Abseil from Debian are not
#      TSan-instrumented: tests/tsan.supp lists what their unseen synchronization makes TSan report);
#   4. the libFuzzer targets (tests/fuzz/run_fuzzers.sh): 30 s each, 20 min each with --soak;
#   5. the host VM harness (tests/host/run.sh, CTest's host_vm): Debian's kernel under QEMU with an
#      emulated Intel IOMMU, core/host's VFIO layer driving real device DMA (one boot, about 4 minutes of QEMU with the ASan build);
#   6. Bazel (offline), with gcc: every target analysed (bazel build --nobuild //...), every target
#      outside tests/server built and tested; --bazel-full builds and tests them all (tests/server,
#      the in-process daemon tests, is 60% of the compile, and its code is built and run by both
#      sanitizer steps);
#   7. a short benchmark run (Release core build) so the benchmarks keep working;
#   8. on CI's throwaway machine only (CI=true, or --host-install): the Debian package installed on
#      the machine itself with apt-get, run as its unit says, purged (tests/deploy/host_install.sh).
# Any failure, sanitizer report included, fails the run. The aim: about 35 minutes on 2 cores. So
# the sanitizer builds precompile the headers of the tests and the gRPC layer
# (IOMMUD_PRECOMPILE_HEADERS: a clean build, no ccache) and keep line tables only as debug
# information (sanitizer reports keep file:line; full -g doubles the objects and the links). ASan
# compiles at -O0 (measured: -O1 compiled 2 minutes longer than it saved in ctest), TSan at -O1
# (-O2 before: the TSan build went 11.8 -> 8 minutes with the precompiled headers).
#
# Flags: --quick (plain CMake build + ctest only), --soak (long stress runs as well, hours not
# minutes; Bazel in full too), --bazel-full, --no-bazel, --no-sanitizers (plain build instead of
# ASan in step 2; skips steps 3-4),
# --host-install (step 8 outside CI: it installs and purges the package iommud on this machine).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

quick=0 soak=0 bazel=1 bazel_full=0 sanitizers=1 host_install=0
[ "${CI:-}" = true ] && host_install=1
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --soak) soak=1 ;;
    --no-bazel) bazel=0 ;;
    --bazel-full) bazel_full=1 ;;
    --no-sanitizers) sanitizers=0 ;;
    --host-install) host_install=1 ;;
    *) echo "usage: tests/run_all.sh [--quick] [--soak] [--bazel-full] [--no-bazel] [--no-sanitizers]" \
            "[--host-install]" >&2
       exit 2 ;;
  esac
done
jobs="$(nproc)"
if [ "$soak" -eq 1 ]; then
  export IOMMUD_STRESS_OPS=200000 IOMMUD_STRESS_ROUNDS=2000 IOMMUD_CRASH_ROUNDS=2000
  bazel_full=1
fi

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "dependencies"
"$root/deploy/install-deps.sh"

# host_vm (label host) boots a VM: it runs once, in its own step below, not in every build.
exclude_labels="host"
build_and_test() {  # build_and_test DIR [cmake args...] -- [ctest args...]
  local dir="$1"; shift
  local cmake_args=() ctest_args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do cmake_args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  ctest_args=("$@")
  cmake -S "$root" -B "$dir" -G Ninja "${cmake_args[@]}" >/dev/null
  cmake --build "$dir" -j "$jobs"
  (cd "$dir" && ctest --output-on-failure -j "$jobs" -LE "$exclude_labels" "${ctest_args[@]}")
}

if [ "$quick" -eq 1 ] || [ "$sanitizers" -eq 0 ]; then
  step "CMake build + ctest"
  build_and_test "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIOMMUD_BUILD_BENCHMARKS=OFF --
  [ "$quick" -eq 1 ] && { step "quick run passed"; exit 0; }
else
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  step "CMake build (clang, AddressSanitizer + UBSan) + the whole ctest suite"
  CC=clang CXX=clang++ build_and_test "$root/build-asan" -DIOMMUD_SANITIZE=address \
    -DIOMMUD_PRECOMPILE_HEADERS=ON -DCMAKE_CXX_FLAGS_DEBUG="-O0 -gline-tables-only" \
    -DIOMMUD_BUILD_BENCHMARKS=OFF -DCMAKE_BUILD_TYPE=Debug --
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$root/tests/tsan.supp"
  step "ThreadSanitizer build + the whole ctest suite"
  # The crash-point sweep (~800 daemon starts, one call in flight at a time) checks crash
  # consistency, not races: it runs under ASan above, and under TSan too with --soak.
  tsan_skip=(-E 'CrashPointSweepTest|CallSweepTest')
  [ "$soak" -eq 1 ] && tsan_skip=()
  CC=clang CXX=clang++ build_and_test "$root/build-tsan" -DIOMMUD_SANITIZE=thread \
    -DIOMMUD_PRECOMPILE_HEADERS=ON \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DIOMMUD_BUILD_BENCHMARKS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo -- "${tsan_skip[@]}"
fi

if [ "$sanitizers" -eq 1 ]; then
  step "libFuzzer targets (clang, ASan+UBSan)"
  fuzz_seconds=30
  [ "$soak" -eq 1 ] && fuzz_seconds=1200
  "$root/tests/fuzz/run_fuzzers.sh" --seconds "$fuzz_seconds"
fi

step "host VM harness (tests/host/run.sh)"
# The scenarios run the step-2 build's binary in the guest: with sanitizers, ASan+UBSan check
# core/host against the real kernel too.
if [ "$sanitizers" -eq 1 ]; then host_build="$root/build-asan"; else host_build="$root/build"; fi
host_args=(--build-dir "$host_build")
[ "$soak" -eq 1 ] && host_args+=(--soak)  # host_crash_vm_test: 40 kill rounds instead of 6
"$root/tests/host/run.sh" "${host_args[@]}"

if [ "$bazel" -eq 1 ]; then
  if [ "$bazel_full" -eq 1 ]; then
    step "Bazel (offline) build + test of every target"
    bazel test //... --jobs="$jobs"
  else
    step "Bazel (offline): every target analysed, all but tests/server built + tested"
    bazel build --nobuild //... --jobs="$jobs"
    bazel test --jobs="$jobs" -- //... -//tests/server/...
  fi
fi

step "install on a host: the Debian package on this machine (tests/deploy/host_install.sh)"
if [ "$host_install" -eq 1 ]; then
  "$root/tests/deploy/host_install.sh" "$host_build" --yes
else
  echo "not run here: it installs and purges a package on this machine (CI=true or --host-install)"
fi

step "benchmark smoke run"
cmake -S "$root" -B "$root/build-bench" -G Ninja -DCMAKE_BUILD_TYPE=Release -DIOMMUD_CORE_ONLY=ON \
  >/dev/null
"$root/tests/bench/run.sh" --short --build-dir "$root/build-bench"
step "all tests passed"
