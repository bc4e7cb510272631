#!/usr/bin/env bash
# The README's first command: installs the Debian packages, builds iommud (CMake, Release) and starts
# the daemon in the foreground with its embedded defaults: software backend, state under
# /run/iommud when run as root, else $XDG_RUNTIME_DIR/iommud (or $IOMMUD_STATE_DIR in either case),
# the embedded demo topology applied to a new state file <state_dir>/state.db on the first start (a
# restart recovers the registry from that file instead). Ctrl-C stops it gracefully. Packages are installed with sudo when not
# run as root.
# Extra arguments are passed to iommud (e.g. --backend=emulated).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/deploy/install-deps.sh"
cmake -S "$root" -B "$root/build-release" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DIOMMUD_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$root/build-release" -j "$(nproc)" --target iommud iommuctl
if [ "$(id -u)" -eq 0 ]; then
  default_state_dir=/run/iommud
else
  default_state_dir="${XDG_RUNTIME_DIR:-/tmp/iommud-$(id -u)}/iommud"
fi
state_dir="${IOMMUD_STATE_DIR:-$default_state_dir}"
echo "quickstart: in another terminal try:"
echo "  export IOMMUD_TARGET=unix:$state_dir/iommud.sock"
echo "  $root/build-release/clients/iommuctl/iommuctl groups"
# Callers are identified by their uid (SO_PEERCRED); this user is admin under the default policy.
exec "$root/build-release/server/iommud" --state_dir="$state_dir" "$@"
