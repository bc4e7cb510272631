#!/usr/bin/env bash
# Installs iommud's Debian package on THIS machine the way an operator does (`apt-get install
# ./iommud_<version>_<arch>.deb`: dpkg, the maintainer scripts, Depends resolved by apt), runs the
# daemon the way its installed unit says, and purges the package again. systemd is not running on
# CI's machine, so the unit's process setup is done here by hand from the installed unit file:
# RuntimeDirectory/StateDirectory with their modes, Group=, the EnvironmentFile, the ExecStart
# line with $IOMMUD_OPTS expanded. Checks:
#   - the package installs; the postinst created the system group iommud; /etc/default/iommud is
#     a conffile; the installed unit passes `systemd-analyze verify`;
#   - the daemon started from the unit's ExecStart serves on /run/iommud/iommud.sock (root:iommud
#     0660): iommuctl with its built-in defaults reports SERVING; a user in group iommud reaches it
#     without root; a user outside the group is told "permission denied" at once; /metrics on
#     127.0.0.1:9464 answers; SIGTERM stops it with status 0; a second start recovers a claim made
#     before the stop from the state file (/var/lib/iommud/state.db);
#   - `apt-get purge` removes the binaries, the unit and the conffile.
# It changes the machine (a package, a group, /run/iommud, /var/lib/iommud), so it refuses to run
# unless told --yes; tests/run_all.sh passes that only on CI's throwaway machine (CI=true).
# Usage: host_install.sh BUILD_DIR --yes
set -euo pipefail
build="${1:?usage: host_install.sh BUILD_DIR --yes}"
[ "${2:-}" = "--yes" ] || { echo "host_install.sh installs a package on this machine; pass --yes" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "FAIL: host_install.sh needs root (apt-get install)" >&2; exit 1; }
work="$(mktemp -d)"
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  [ -f "$work/iommud.log" ] && { echo "--- iommud log" >&2; tail -40 "$work/iommud.log" >&2; }
  exit 1
}
if dpkg -s iommud >/dev/null 2>&1; then fail "iommud is already installed here; not touching it"; fi

cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log" >&2; fail "cpack -G DEB"; }
deb="$(find "$work/out" -maxdepth 1 -name '*.deb' | head -1)"
[ -n "$deb" ] || fail "cpack made no .deb"
chmod 0644 "$deb"; chmod 0755 "$work" "$work/out"  # apt reads it as _apt
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb" >"$work/apt.log" 2>&1 ||
  { cat "$work/apt.log" >&2; fail "apt-get install $(basename "$deb")"; }
[ "$(dpkg-query -W -f '${Status}' iommud)" = "install ok installed" ] || fail "dpkg status: $(dpkg-query -W -f '${Status}' iommud)"
echo "ok: installed $(basename "$deb")"
getent group iommud >/dev/null || fail "the postinst did not create the group iommud"
grep -qx '/etc/default/iommud' /var/lib/dpkg/info/iommud.conffiles || fail "/etc/default/iommud is not a conffile"
unit=/usr/lib/systemd/system/iommud.service
[ -f "$unit" ] || fail "no $unit"
systemd-analyze verify "$unit" >"$work/verify.log" 2>&1 || { cat "$work/verify.log" >&2; fail "systemd-analyze verify $unit"; }
echo "ok: group iommud ($(getent group iommud)), conffile, unit verifies"

# The unit's process setup, by hand.
value() { grep -m1 "^$1=" "$unit" | cut -d= -f2-; }
[ "$(value User)" = root ] || fail "User=$(value User)"
group="$(value Group)"
mkdir -p "/run/$(value RuntimeDirectory)" "/var/lib/$(value StateDirectory)"
chown "root:$group" "/run/$(value RuntimeDirectory)" "/var/lib/$(value StateDirectory)"
chmod "$(value RuntimeDirectoryMode)" "/run/$(value RuntimeDirectory)"
chmod "$(value StateDirectoryMode)" "/var/lib/$(value StateDirectory)"
IOMMUD_OPTS=""
# shellcheck disable=SC1091
. /etc/default/iommud
exec_start="$(value ExecStart)"
exec_start="${exec_start//\$IOMMUD_OPTS/$IOMMUD_OPTS}"
start_daemon() {
  # Group= of the unit: the daemon runs with that primary group, as systemd would start it.
  # shellcheck disable=SC2086
  setpriv --regid "$group" --clear-groups $exec_start >>"$work/iommud.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 300); do
    [ -S /run/iommud/iommud.sock ] && iommuctl health >/dev/null 2>&1 && return 0
    kill -0 "$daemon_pid" 2>/dev/null || fail "iommud exited during start"
    sleep 0.1
  done
  fail "iommud did not serve on /run/iommud/iommud.sock within 30 s"
}
stop_daemon() {
  kill -TERM "$daemon_pid"
  local status=0
  wait "$daemon_pid" || status=$?
  daemon_pid=""
  [ "$status" -eq 0 ] || fail "iommud exited with status $status on SIGTERM"
}
start_daemon
[ "$(iommuctl health)" = SERVING ] || fail "iommuctl health: $(iommuctl health)"
[ "$(stat -c '%U:%G %a' /run/iommud/iommud.sock)" = "root:iommud 660" ] ||
  fail "socket: $(stat -c '%U:%G %a' /run/iommud/iommud.sock)"
groups_before="$(iommuctl -o json groups)"
[ -n "$groups_before" ] || fail "iommuctl list-groups printed nothing"
# An orchestrator account in group iommud, without root; one outside it.
setpriv --reuid nobody --regid nogroup --groups "$(getent group iommud | cut -d: -f3)" iommuctl health |
  grep -qx SERVING || fail "a user in group iommud cannot reach the daemon"
denied_status=0
setpriv --reuid nobody --regid nogroup --clear-groups timeout 10 iommuctl health >"$work/denied.log" 2>&1 ||
  denied_status=$?
[ "$denied_status" -ne 0 ] && grep -qi 'permission denied' "$work/denied.log" ||
  fail "a user outside group iommud: status $denied_status, $(cat "$work/denied.log")"
python3 -c 'import urllib.request,sys; body=urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=10).read().decode(); sys.exit(0 if "iommud_" in body else 1)' ||
  fail "/metrics on 127.0.0.1:9464"
echo "ok: serves as the unit starts it: health SERVING, socket root:iommud 0660, group member allowed, others denied, metrics"
# A change that must survive the restart: root claims the first group.
first_group="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["groups"][0]["id"])' <<<"$groups_before")" ||
  fail "no group in: $groups_before"
iommuctl claim "$first_group" >/dev/null || fail "iommuctl claim $first_group"
claimed="$(iommuctl -o json group "$first_group")"
stop_daemon
[ -f /var/lib/iommud/state.db ] || fail "no state file /var/lib/iommud/state.db after a stop"
start_daemon
[ "$(iommuctl -o json group "$first_group")" = "$claimed" ] ||
  fail "group $first_group after a restart: $(iommuctl -o json group "$first_group"), before: $claimed"
stop_daemon
echo "ok: SIGTERM exits 0; a restart recovers the claim of group $first_group from /var/lib/iommud/state.db"

DEBIAN_FRONTEND=noninteractive apt-get purge -y -q iommud >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; fail "apt-get purge iommud"; }
for f in /usr/sbin/iommud /usr/bin/iommuctl "$unit" /etc/default/iommud; do
  [ ! -e "$f" ] || fail "$f is left after purge"
done
rm -rf /run/iommud /var/lib/iommud
echo "ok: purged"
echo PASS
