#!/usr/bin/env bash
# The whole iommud test suite (the README's test command; .ci/run calls it):
#   1. installs the Debian packages it needs (deploy/install-deps.sh),
#   2. CMake build + ctest (every unit, conformance, registry, server-integration and stress test),
#   3. ThreadSanitizer build of the core and its concurrency tests, AddressSanitizer+UBSan build of
#      the suite,
#   4. Bazel build + test of the same targets, offline,
#   5. a short benchmark smoke run so the benchmarks keep working.
# Any failure, sanitizer report included, fails the run.
#
# Flags: --quick (step 2 only), --soak (long stress/soak runs as well; off by default, hours not
# minutes), --no-bazel, --no-sanitizers.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

quick=0 soak=0 bazel=1 sanitizers=1
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --soak) soak=1 ;;
    --no-bazel) bazel=0 ;;
    --no-sanitizers) sanitizers=0 ;;
    *) echo "usage: tests/run_all.sh [--quick] [--soak] [--no-bazel] [--no-sanitizers]" >&2; exit 2 ;;
  esac
done
jobs="$(nproc)"
export IOMMUD_SOAK="$soak"

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "dependencies"
"$root/deploy/install-deps.sh"

build_and_test() {  # build_and_test DIR [cmake args...] -- [ctest args...]
  local dir="$1"; shift
  local cmake_args=() ctest_args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do cmake_args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  ctest_args=("$@")
  cmake -S "$root" -B "$dir" -G Ninja "${cmake_args[@]}" >/dev/null
  cmake --build "$dir" -j "$jobs"
  (cd "$dir" && ctest --output-on-failure -j "$jobs" "${ctest_args[@]}")
}

step "CMake build + ctest"
build_and_test "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo --
[ "$quick" -eq 1 ] && exit 0

if [ "$sanitizers" -eq 1 ]; then
  # Sanitizer builds use clang (also checks the -Wthread-safety annotations) and skip benchmarks.
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$root/tests/tsan.supp"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  step "ThreadSanitizer build + core tests"
  CC=clang CXX=clang++ build_and_test "$root/build-tsan" -DIOMMUD_SANITIZE=thread \
    -DIOMMUD_CORE_ONLY=ON -DIOMMUD_BUILD_BENCHMARKS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo --
  step "AddressSanitizer + UBSan build + ctest"
  CC=clang CXX=clang++ build_and_test "$root/build-asan" -DIOMMUD_SANITIZE=address \
    -DIOMMUD_BUILD_BENCHMARKS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo --
fi

if [ "$bazel" -eq 1 ]; then
  step "Bazel (offline) build + test"
  bazel test //... --jobs="$jobs"
fi

if [ -x "$root/tests/bench/run.sh" ]; then
  step "benchmark smoke run"
  "$root/tests/bench/run.sh" --short --build-dir "$root/build"
fi
step "all tests passed"
