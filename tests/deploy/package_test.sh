#!/usr/bin/env bash
# `cpack -G DEB` builds the Debian package iommud (cmake/Packaging.cmake); its contents and control
# data are checked with dpkg-deb: the daemon, iommuctl, the unit (ExecStart /usr/sbin/iommud,
# EnvironmentFile /etc/default/iommud), the sysusers.d file and /etc/default/iommud as a conffile;
# no headers, static libraries or build-tree files; Depends on run-time libraries only (no -dev),
# each listed in deploy/debian-packages-runtime.txt; the postinst creates the group. The packaged
# binaries run (--version).
# Usage: package_test.sh BUILD_DIR VERSION
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
runtime_list="$here/../../deploy/debian-packages-runtime.txt"
build="$1"
version="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in cpack dpkg-deb dpkg-shlibdeps; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (deploy/debian-packages.txt lists it)"
done

cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log" >&2; fail "cpack -G DEB"; }
mapfile -t debs < <(find "$work/out" -maxdepth 1 -name '*.deb')
[ "${#debs[@]}" -eq 1 ] || fail "expected one .deb, got: ${debs[*]:-none}"
deb="${debs[0]}"
echo "ok: built $(basename "$deb")"

# Contents.
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' | grep -v '/$' | sort >"$work/files"
expected="/etc/default/iommud
/usr/bin/iommuctl
/usr/lib/systemd/system/iommud.service
/usr/lib/sysusers.d/iommud.conf
/usr/sbin/iommud
/usr/share/bash-completion/completions/iommuctl"
[ "$(cat "$work/files")" = "$expected" ] ||
  fail "package files differ from the expected list:$(diff <(echo "$expected") "$work/files" || true)"
echo "ok: contents: $(tr '\n' ' ' <"$work/files")"
dpkg-deb -c "$deb" | grep -E ' \./usr/sbin/iommud$' | grep -q '^-rwxr-xr-x root/root' ||
  fail "/usr/sbin/iommud is not an executable owned by root: $(dpkg-deb -c "$deb" | grep sbin/iommud)"

# Control data.
dpkg-deb -I "$deb" >"$work/info"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = iommud ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$version" ] || fail "Version: $(field Version), expected $version"
[ "$(field Architecture)" = "$(dpkg --print-architecture)" ] || fail "Architecture: $(field Architecture)"
depends="$(field Depends)"
[ -n "$depends" ] || fail "no Depends"
mapfile -t dep_names < <(echo "$depends" | tr ',' '\n' | sed 's/(.*)//; s/|.*//; s/ //g' | grep -v '^$')
for name in libgrpc++1.51 libprotobuf32 libsqlite3-0 libsystemd0 libabsl20220623; do
  printf '%s\n' "${dep_names[@]}" | grep -qx "$name" || fail "Depends lacks $name: $depends"
done
for name in "${dep_names[@]}"; do
  case "$name" in *-dev|cmake|g++*|gcc|clang*|protobuf-compiler*) fail "build-time package in Depends: $name" ;; esac
  grep -qx "$name" "$runtime_list" ||
    fail "Depends names $name, which deploy/debian-packages-runtime.txt does not list"
done
echo "ok: Depends: $depends"
grep -q 'conffiles' "$work/info" || fail "no conffiles in the control archive: $(cat "$work/info")"
mkdir "$work/control"
dpkg-deb -e "$deb" "$work/control"
[ "$(cat "$work/control/conffiles")" = "/etc/default/iommud" ] || fail "conffiles: $(cat "$work/control/conffiles")"
[ -x "$work/control/postinst" ] || fail "no executable postinst"
grep -q 'systemd-sysusers /usr/lib/sysusers.d/iommud.conf' "$work/control/postinst" ||
  fail "the postinst does not create the iommud group"
echo "ok: conffiles, postinst"

# The unit and the binaries as installed.
dpkg-deb -x "$deb" "$work/root"
unit="$work/root/usr/lib/systemd/system/iommud.service"
grep -qx 'ExecStart=/usr/sbin/iommud .* \$IOMMUD_OPTS' "$unit" || fail "unit ExecStart: $(grep ExecStart= "$unit")"
grep -qx 'EnvironmentFile=-/etc/default/iommud' "$unit" || fail "unit EnvironmentFile: $(grep EnvironmentFile= "$unit")"
grep -qx 'IOMMUD_OPTS=""' "$work/root/etc/default/iommud" || fail "/etc/default/iommud sets no IOMMUD_OPTS"
[ "$(cat "$work/root/usr/lib/sysusers.d/iommud.conf" | grep -v '^#')" = "g iommud -" ] ||
  fail "sysusers.d file: $(cat "$work/root/usr/lib/sysusers.d/iommud.conf")"
"$work/root/usr/sbin/iommud" --version | grep -qx "iommud $version (.* build)" || fail "packaged iommud --version"
"$work/root/usr/bin/iommuctl" --version | grep -qx "iommuctl $version (.* build)" || fail "packaged iommuctl --version"
echo "ok: unit, default file, binaries run"
echo PASS
