#!/usr/bin/env bash
# The README's first command: installs the Debian packages, builds iommud (CMake, Release) and starts
# the daemon in the foreground with its embedded defaults: software backend, state under
# /run/iommud (or $IOMMUD_STATE_DIR), the embedded demo topology. Ctrl-C stops it gracefully.
# Extra arguments are passed to iommud (e.g. --backend=emulated).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/deploy/install-deps.sh"
cmake -S "$root" -B "$root/build-release" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DIOMMUD_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$root/build-release" -j "$(nproc)" --target iommud iommuctl
state_dir="${IOMMUD_STATE_DIR:-/run/iommud}"
echo "quickstart: in another terminal try:"
echo "  $root/build-release/clients/iommuctl/iommuctl --target unix:$state_dir/iommud.sock groups"
exec "$root/build-release/server/iommud" --state_dir="$state_dir" "$@"
