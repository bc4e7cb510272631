#!/usr/bin/env bash
# deploy/systemd/iommud.service:
#   1. `systemd-analyze verify` of a copy whose ExecStart names the built daemon: no error and no
#      warning (verify exits 0 on an unknown key or an unknown system-call group, so its output
#      must be empty too).
#   2. The system-call filter: the daemon runs under strace with the unit's own ExecStart arguments
#      (paths moved to a temporary directory, a free metrics port, the caller's group as
#      --socket_group) and a walk through the RPCs that write the SQLite state (WAL) and chown the
#      socket; every system call any of its threads made must be allowed by the unit's
#      SystemCallFilter= lines, evaluated in order the way systemd does (groups expanded by
#      `systemd-analyze syscall-filter`; tests/deploy/unit_syscall_filter.py). Run as root, SQLite's
#      fchown of its -wal/-shm files is among them (the SIGSYS this filter used to cause).
#   3. The same walk with the daemon running under that filter loaded as a real seccomp filter
#      (python3-seccomp; default action: kill with SIGSYS, as systemd's): it must serve and stop
#      with status 0.
# Usage: systemd_unit_test.sh IOMMUD IOMMUCTL [--no-strace]
#   --no-strace: only step 1 (sanitizer builds: their runtimes make system calls the real daemon
#   does not).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unit="$here/../../deploy/systemd/iommud.service"
iommud="$(realpath "$1")"
iommuctl="$(realpath "$2")"
strace_step=1
[ "${3:-}" = "--no-strace" ] && strace_step=0
work="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$work/iommud.log" ] && { echo "--- iommud log" >&2; tail -30 "$work/iommud.log" >&2; }; exit 1; }
for tool in systemd-analyze python3; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (deploy/debian-packages.txt lists it)"
done
[ "$strace_step" -eq 0 ] || command -v strace >/dev/null ||
  fail "strace is not installed (deploy/debian-packages.txt lists it)"

# 1. systemd-analyze verify.
grep -q '^ExecStart=/usr/sbin/iommud ' "$unit" || fail "ExecStart is not /usr/sbin/iommud"
sed "s|^ExecStart=/usr/sbin/iommud |ExecStart=$iommud |" "$unit" >"$work/iommud.service"
if ! systemd-analyze verify --man=no "$work/iommud.service" >"$work/verify.log" 2>&1 ||
   [ -s "$work/verify.log" ]; then
  cat "$work/verify.log" >&2
  fail "systemd-analyze verify"
fi
echo "ok: systemd-analyze verify"
# 1b. The host-backend example (deploy/systemd/iommud-host.service): verify only (it needs a host
# with VFIO to run). It must keep the fd store on and the daemon's own notify access.
host_unit="$here/../../deploy/systemd/iommud-host.service"
for line in '^Type=notify$' '^NotifyAccess=main$' '^FileDescriptorStoreMax=[1-9]' '^DeviceAllow=char-vfio rw$' \
            '^ExecStart=/usr/sbin/iommud --backend=linux --fd_store=required '; do
  grep -qE "$line" "$host_unit" || fail "iommud-host.service has no line matching $line"
done
sed "s|^ExecStart=/usr/sbin/iommud |ExecStart=$iommud |" "$host_unit" >"$work/iommud-host.service"
if ! systemd-analyze verify --man=no "$work/iommud-host.service" >"$work/verify-host.log" 2>&1 ||
   [ -s "$work/verify-host.log" ]; then
  cat "$work/verify-host.log" >&2
  fail "systemd-analyze verify of iommud-host.service"
fi
echo "ok: systemd-analyze verify iommud-host.service"
[ "$strace_step" -eq 1 ] || { echo "PASS (verify only)"; exit 0; }

# The unit's ExecStart arguments, with paths moved to a temporary directory, a free metrics port
# and the caller's group as --socket_group.
args="$(sed -n 's|^ExecStart=/usr/sbin/iommud ||p' "$unit" | sed 's| \$IOMMUD_OPTS$||')"
echo "$args" | grep -q '\$' && fail "unexpected variables in ExecStart: $args"
metrics_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
args="$(echo "$args" | sed -e "s|/run/iommud|$work/run|g" -e "s|/var/lib/iommud|$work/lib|g" \
  -e "s|--socket_group=iommud|--socket_group=$(id -g)|" -e "s|--metrics_port=9464|--metrics_port=$metrics_port|")"
echo "$args" | grep -q -- "--socket_group=$(id -g)" || fail "the unit has no --socket_group=iommud"

# Starts `"$@" iommud ARGS` on fresh directories, walks through the RPCs that write the SQLite
# state (WAL) and chown the socket, scrapes /metrics. The caller stops it.
start_and_walk() {
  rm -rf "$work/run" "$work/lib" "$work/iommud.log"
  mkdir -m 0750 "$work/run" "$work/lib"
  # shellcheck disable=SC2086
  "$@" "$iommud" $args 2>"$work/iommud.log" &
  pid=$!
  for _ in $(seq 300); do grep -q "serving on" "$work/iommud.log" 2>/dev/null && break; sleep 0.1; done
  grep -q "serving on" "$work/iommud.log" || fail "iommud did not start under $1"
  ctl() { "$iommuctl" --target "unix:$work/run/iommud.sock" "$@" >/dev/null || fail "iommuctl $*"; }
  ctl groups
  ctl probe smmu0 0000:07:00.0 0x700
  ctl claim 7
  ctl alloc smmu0
  ctl attach 7 17
  ctl map 17 0x100000 0x80000000 2M
  ctl translate 0000:07:00.0 0x100040
  ctl unmap 17 0x100000 2M
  ctl detach 7 17
  ctl free 17
  ctl release-ownership 7
  ctl release 0000:07:00.0
  ctl audit
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()' \
    "http://127.0.0.1:$metrics_port/metrics" || fail "metrics"
}
# SIGTERM to `daemon_pid`, then wait for `pid`: status 0 and a clean stop.
stop_and_check() {
  kill -TERM "$1"
  status=0
  wait "$pid" || status=$?
  pid=""
  [ "$status" -eq 0 ] || fail "iommud exited with $status after SIGTERM (159: killed by SIGSYS)"
  grep -q "stopped" "$work/iommud.log" || fail "iommud did not stop cleanly"
}

# 2. The daemon under strace: every system call any of its threads made is allowed by the filter.
start_and_walk timeout 120 strace -f -qq -o "$work/trace"
strace_pid="$(pgrep -P "$pid" -x strace)" && daemon_pid="$(pgrep -P "$strace_pid" -x iommud)" ||
  fail "no iommud process under strace"
stop_and_check "$daemon_pid"  # the daemon itself: strace passes nothing on
python3 "$here/unit_syscall_filter.py" check "$unit" "$work/trace" "$(id -u)"

# 3. The daemon under the unit's filter itself, as a seccomp filter that kills with SIGSYS (and
# no_new_privs, as NoNewPrivileges=yes): the same walk, then a clean stop.
/usr/bin/python3 -c 'import seccomp' 2>/dev/null ||
  fail "Debian's python3-seccomp is not installed (deploy/debian-packages.txt lists it)"
start_and_walk /usr/bin/python3 "$here/unit_syscall_filter.py" exec "$unit" --
stop_and_check "$pid"  # the launcher executed iommud: same process
echo "ok: iommud served the walk and stopped under the unit's seccomp filter"
echo "PASS"
