#!/usr/bin/env bash
# Runs the benchmarks (Release build) and prints the README's performance table: each figure and
# its ratio to the target, all measured in this one run on this machine.
#   tests/bench/run.sh [--short] [--build-dir DIR] [--out FILE.md]
# --short: a quick smoke run for CI (tiny min time; figures are noisy, nothing is asserted).
# --build-dir: use an existing CMake build (default: configure and build build-bench in Release).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
short=0 build_dir="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --short) short=1; shift ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: tests/bench/run.sh [--short] [--build-dir DIR] [--out FILE.md]" >&2; exit 2 ;;
  esac
done
if [ -z "$build_dir" ]; then
  build_dir="$root/build-bench"
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DIOMMUD_CORE_ONLY=ON \
    >/dev/null
fi
cmake --build "$build_dir" -j "$(nproc)" --target backend_bench registry_bench
min_time=1.0
[ "$short" -eq 1 ] && min_time=0.01
results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT
for bench in backend_bench registry_bench; do
  "$build_dir/tests/bench/$bench" --benchmark_min_time="$min_time" \
    --benchmark_out="$results/$bench.json" --benchmark_out_format=json >/dev/null
done
python3 "$root/tests/bench/report.py" "$results/backend_bench.json" "$results/registry_bench.json" \
  | tee ${out:+"$out"}
