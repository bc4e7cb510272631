#!/usr/bin/env bash
# Runs the benchmarks (Release build) and prints the README's performance table: each figure and
# its ratio to the target, all measured in this one run on this machine.
#   tests/bench/run.sh [--short] [--build-dir DIR] [--out FILE.md]
# --short: a quick smoke run for CI (tiny min time and sizes; figures are noisy, nothing asserted).
# --build-dir: use an existing CMake build (default: configure and build build-bench in Release).
# The RPC figures (loadgen against the daemon) need a full build: they run when the build dir has
# server/iommud and clients/loadgen/loadgen (the default build-bench is full unless --short).
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
targets=(backend_bench registry_bench recovery_bench store_bench memory_bench)
if [ -z "$build_dir" ]; then
  build_dir="$root/build-bench"
  core_only=OFF
  [ "$short" -eq 1 ] && core_only=ON
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DIOMMUD_CORE_ONLY="$core_only" >/dev/null
  [ "$core_only" = OFF ] && targets+=(iommud iommuctl loadgen)
fi
cmake --build "$build_dir" -j "$(nproc)" --target "${targets[@]}"
min_time=1.0 devices=100000 pages=10000000 rpc_seconds=5
[ "$short" -eq 1 ] && { min_time=0.01; devices=2000; pages=100000; rpc_seconds=1; }
results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT
for bench in backend_bench registry_bench recovery_bench store_bench; do
  "$build_dir/tests/bench/$bench" --benchmark_min_time="$min_time" \
    --benchmark_out="$results/$bench.json" --benchmark_out_format=json >/dev/null
done
"$build_dir/tests/bench/memory_bench" "$devices" "$pages" > "$results/memory.json"
if [ -x "$build_dir/server/iommud" ] && [ -x "$build_dir/clients/loadgen/loadgen" ]; then
  "$root/tests/bench/rpc_bench.sh" "$build_dir" "$rpc_seconds" > "$results/rpc.jsonl"
fi
python3 "$root/tests/bench/report.py" "$results" | tee ${out:+"$out"}
