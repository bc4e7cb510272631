#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then the installed pieces are used the way a host or a
# downstream project would: the installed iommud serves on a temporary socket (memory state, the
# embedded demo topology) and tests/deploy/consumer, built out of tree against the prefix only,
# connects to it and lists its groups — once built with find_package(iommud CONFIG), once with
# pkg-config.
# Usage: install_test.sh BUILD_DIR CXX_COMPILER [SANITIZER_FLAGS]
#   SANITIZER_FLAGS: the -fsanitize=... the build used (its static libraries need them to link).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="$1"
cxx="$2"
san="${3:-}"
work="$(mktemp -d)"
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$work/iommud.log" ] && { echo "--- iommud log" >&2; cat "$work/iommud.log" >&2; }; exit 1; }
for tool in cmake pkg-config ninja; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (deploy/debian-packages.txt lists it)"
done

prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }

# What a host and a downstream build need, where they expect it.
for f in sbin/iommud bin/iommuctl include/iommud/clients/cpp/iommud_client.h \
         include/iommud/clients/cpp/iommu_rpcs.inc include/iommud/iommu/v1/iommu.grpc.pb.h \
         include/iommud/iommu/v1/iommu.pb.h include/iommud/grpc/health/v1/health.grpc.pb.h \
         include/iommud/google/rpc/error_details.pb.h share/iommud/proto/iommu/v1/iommu.proto \
         lib/systemd/system/iommud.service lib/sysusers.d/iommud.conf etc/default/iommud \
         share/bash-completion/completions/iommuctl; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
[ -x "$prefix/sbin/iommud" ] && [ -x "$prefix/bin/iommuctl" ] || fail "binaries not executable"
config="$(find "$prefix" -name iommudConfig.cmake)"
pc="$(find "$prefix" -name iommud.pc)"
[ -n "$config" ] || fail "no iommudConfig.cmake installed"
[ -n "$pc" ] || fail "no iommud.pc installed"
ls "$(dirname "$pc")/../libiommud_client.a" >/dev/null || fail "libiommud_client.a not beside pkgconfig/"
# Nothing but the daemon's own files: no test binaries or libraries of the build.
unexpected="$(cd "$prefix" && find . -type f | grep -v -E '^\./(sbin/iommud|bin/iommuctl|include/iommud/|share/iommud/|share/bash-completion/completions/iommuctl$|lib[^/]*/(libiommud_[a-z_]+\.a|cmake/iommud/|pkgconfig/iommud\.pc)|lib/systemd/system/iommud\.service|lib/sysusers\.d/iommud\.conf|etc/default/iommud)' || true)"
[ -z "$unexpected" ] || fail "unexpected files installed: $unexpected"

# The installed unit starts the installed daemon.
grep -qx "ExecStart=$prefix/sbin/iommud .*" "$prefix/lib/systemd/system/iommud.service" ||
  fail "the installed unit's ExecStart is not $prefix/sbin/iommud: $(grep ExecStart= "$prefix/lib/systemd/system/iommud.service")"
grep -qx "EnvironmentFile=-$prefix/etc/default/iommud" "$prefix/lib/systemd/system/iommud.service" ||
  fail "the installed unit's EnvironmentFile is not $prefix/etc/default/iommud"

# The installed daemon serves.
state="$work/state"
"$prefix/sbin/iommud" --state=memory --state_dir="$state" --metrics_port=0 2>"$work/iommud.log" &
daemon_pid=$!
for _ in $(seq 100); do grep -q "serving on" "$work/iommud.log" 2>/dev/null && break; sleep 0.1; done
grep -q "serving on" "$work/iommud.log" || fail "installed iommud did not start"
target="unix:$state/iommud.sock"
"$prefix/bin/iommuctl" --target "$target" groups >"$work/groups.txt" || fail "installed iommuctl groups"
expected_groups="$(($(wc -l <"$work/groups.txt") - 1))"  # the table has a header line
[ "$expected_groups" -gt 0 ] || fail "iommuctl listed no groups"

check_consumer() {  # check_consumer HOW BINARY
  local out
  out="$("$2" "$target")" || fail "$1 consumer failed: $out"
  [ "$out" = "$(printf 'target: %s\ngroups: %s' "$target" "$expected_groups")" ] ||
    fail "$1 consumer printed: $out"
  echo "ok: $1 consumer: $(echo "$out" | tr '\n' ' ')"
}

# 1. find_package(iommud CONFIG), nothing from the source or build tree on the paths.
cmake -S "$here/consumer" -B "$work/consumer-cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_EXE_LINKER_FLAGS="$san" -DCMAKE_CXX_FLAGS="$san" >"$work/consumer-cmake.log" 2>&1 ||
  { cat "$work/consumer-cmake.log"; fail "configuring the find_package consumer"; }
cmake --build "$work/consumer-cmake" >>"$work/consumer-cmake.log" 2>&1 ||
  { cat "$work/consumer-cmake.log"; fail "building the find_package consumer"; }
check_consumer find_package "$work/consumer-cmake/consumer"

# 2. pkg-config.
export PKG_CONFIG_PATH="$(dirname "$pc")"
[ "$(pkg-config --modversion iommud)" = "$(sed -n 's/^Version: //p' "$pc")" ] || fail "pkg-config --modversion"
# shellcheck disable=SC2046
"$cxx" -std=c++17 $san "$here/consumer/main.cc" -o "$work/consumer-pc" \
  $(pkg-config --cflags --libs iommud) 2>"$work/consumer-pc.log" ||
  { cat "$work/consumer-pc.log"; fail "building the pkg-config consumer"; }
check_consumer pkg-config "$work/consumer-pc"
echo "PASS"
