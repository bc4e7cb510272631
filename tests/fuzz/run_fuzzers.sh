#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan+UBSan, -O1 with asserts, in build-fuzz)
# and runs each for N seconds, starting from its seed corpus tests/fuzz/corpus/<target> (read
# only: what the run discovers goes to build-fuzz/fuzz-corpus/<target>, kept between runs). Any
# crash, leak, sanitizer report, failed check or timeout fails the script; the reproducer is saved
# as build-fuzz/fuzz-artifacts/<target>/crash-* (replay: build-fuzz/tests/fuzz/<target> <file>,
# with IOMMUD_FUZZ_TRACE=1 to print each step).
#
# usage: tests/fuzz/run_fuzzers.sh [--seconds N] [--build-dir DIR] [--no-build] [target...]
#   --seconds N   per target (default 30, what CI runs); longer for a soak, e.g. --seconds 3600
#   target...     a subset of: request_handlers_fuzzer registry_ops_fuzzer emulated_queue_fuzzer
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
seconds=30
build_dir="$root/build-fuzz"
build=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "run_fuzzers.sh: unknown flag $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] ||
  targets=(request_handlers_fuzzer registry_ops_fuzzer emulated_queue_fuzzer)

if [ "$build" -eq 1 ]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS_DEBUG="-gline-tables-only -O1" -DIOMMUD_BUILD_FUZZERS=ON -DIOMMUD_BUILD_BENCHMARKS=OFF \
    >/dev/null
  cmake --build "$build_dir" -j "$(nproc)" --target "${targets[@]}"
fi

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
failed=()
summary=()
for target in "${targets[@]}"; do
  corpus="$build_dir/fuzz-corpus/$target"
  artifacts="$build_dir/fuzz-artifacts/$target"
  log="$build_dir/fuzz-logs/$target.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  printf '=== %s for %ss\n' "$target" "$seconds"
  status=0
  "$build_dir/tests/fuzz/$target" "$corpus" "$root/tests/fuzz/corpus/$target" \
    -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2560 -max_len=4096 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)"
  cov="$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")"
  execs="$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log")"
  rate="$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log")"
  summary+=("$(printf '%-26s cov: %-7s execs: %-9s exec/s: %s' "$target" "${cov:-?}" \
    "${execs:-?}" "${rate:-?}")")
  if [ "$status" -ne 0 ]; then
    failed+=("$target")
    echo "--- $target FAILED (exit $status); log $log, reproducer in $artifacts:" >&2
    grep -E -A40 'ERROR: |FUZZ CHECK FAILED|runtime error|Assertion' "$log" | head -80 >&2 ||
      tail -40 "$log" >&2
  fi
done
printf '\n=== fuzzing summary (%ss per target)\n' "$seconds"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing FAILED: ${failed[*]}" >&2
  exit 1
fi
