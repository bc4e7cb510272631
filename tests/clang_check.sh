#!/usr/bin/env bash
# The quick local loop for the thread-safety annotations: builds the libraries and the daemon with
# clang, where -Wthread-safety is an error (CMakeLists.txt), into build-clang/ (ccache when present).
# gcc ignores ABSL_GUARDED_BY and friends, so the default build never checks them; CI checks them
# in its sanitizer builds (clang). Usage: tests/clang_check.sh [extra ninja targets...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
CC=clang CXX=clang++ cmake -S "$root" -B "$root/build-clang" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DIOMMUD_BUILD_BENCHMARKS=OFF "${launcher[@]}" >/dev/null
targets=(iommud_core iommud_host iommud_server iommud iommuctl "$@")
cmake --build "$root/build-clang" -j "$(nproc)" --target "${targets[@]}"
echo "clang_check: thread-safety annotations hold in ${targets[*]}"
