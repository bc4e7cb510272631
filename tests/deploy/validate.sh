#!/usr/bin/env bash
# Validates deploy/: Prometheus config and alert rules (promtool check config / check rules / test
# rules), every YAML and JSON file well-formed, the systemd unit's sections, and that every metric
# the alert rules and the Grafana dashboard use is one iommud exports. With --iommud PATH, the
# metric names are read from a running daemon's /metrics (otherwise from the list in this script).
# Prints "N passed, M failed"; exits non-zero on any failure. Runnable from any directory.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
deploy="$root/deploy"
iommud=""
while [ $# -gt 0 ]; do
  case "$1" in
    --iommud) iommud="$(realpath "$2")"; shift 2 ;;
    *) echo "usage: validate.sh [--iommud PATH]" >&2; exit 2 ;;
  esac
done

passed=0 failed=0
check() {  # check NAME COMMAND...
  local name="$1"; shift
  local output
  if output="$("$@" 2>&1)"; then
    passed=$((passed + 1)); echo "ok    $name"
  else
    failed=$((failed + 1)); echo "FAIL  $name"; echo "$output" | sed 's/^/      /'
  fi
}

cd "$deploy/prometheus" || exit 1
check "promtool check config" promtool check config prometheus.yml
check "promtool check rules" promtool check rules alerts.yml
check "promtool test rules" promtool test rules alerts_test.yml

while IFS= read -r file; do
  check "yaml ${file#$root/}" python3 -c 'import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))' "$file"
done < <(find "$deploy" -name '*.yml' -o -name '*.yaml' | sort)
while IFS= read -r file; do
  check "json ${file#$root/}" python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$file"
done < <(find "$deploy" -name '*.json' | sort)

check "systemd unit sections" python3 - "$deploy/systemd/iommud.service" <<'PY'
import sys
sections, keys = set(), set()
for line in open(sys.argv[1]):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    if line.startswith("["):
        sections.add(line)
    elif "=" in line:
        keys.add(line.split("=", 1)[0])
    else:
        sys.exit(f"not a key=value line: {line}")
missing = {"[Unit]", "[Service]", "[Install]"} - sections
need = {"ExecStart", "RuntimeDirectory", "NoNewPrivileges", "ProtectSystem", "CapabilityBoundingSet"}
if missing or need - keys:
    sys.exit(f"missing sections {missing} or keys {need - keys}")
PY

# The metric names iommud exports: from a live daemon when given, else this list.
exported="grpc_server_started_total grpc_server_handled_total grpc_server_handling_seconds
iommud_group_lock_wait_seconds iommud_group_lock_hold_seconds iommud_group_lock_contended_total
iommud_registry_lock_wait_seconds iommud_registry_lock_contended_total iommud_audits_total
iommud_leaked_attachments iommud_leaks_detected_total iommud_translation_faults_total
iommud_backend_op_seconds iommud_devices iommud_groups iommud_owned_groups iommud_attachments
iommud_mappings iommud_mapped_bytes iommud_domains iommud_event_watchers
iommud_recovery_leaks_remaining iommud_leases_expired_total iommud_lease_expiry_failures_total
iommud_store_failures_total iommud_release_requests_total"
if [ -n "$iommud" ]; then
  state="$(mktemp -d)"
  "$iommud" --state_dir="$state" --metrics_port=-1 --audit_interval=0 2>"$state/log" &
  pid=$!
  for _ in $(seq 100); do grep -q "serving on" "$state/log" 2>/dev/null && break; sleep 0.1; done
  port="$(sed -n 's/.*metrics on .* (port \([0-9]*\)).*/\1/p' "$state/log")"
  live="$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' \
          "http://127.0.0.1:$port/metrics" | sed -n 's/^# TYPE \([a-z_]*\) .*/\1/p')"
  kill "$pid"; wait "$pid" 2>/dev/null; rm -rf "$state"
  check "live daemon exported metrics" test -n "$live"
  exported="$live"
fi
check "alert rules and dashboard use only exported metrics" python3 - "$deploy" "$exported" <<'PY'
import json, re, sys, yaml
deploy, exported = sys.argv[1], set(sys.argv[2].split())
exported.add("up")
exprs = []
for group in yaml.safe_load(open(f"{deploy}/prometheus/alerts.yml"))["groups"]:
    exprs += [rule["expr"] for rule in group["rules"]]
dashboard = json.load(open(f"{deploy}/grafana/iommud-dashboard.json"))
exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
unknown = set()
for expr in exprs:
    for name in re.findall(r"\b(?:grpc_server_\w+|iommud_\w+|up)\b", expr):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in exported and base not in exported:
            unknown.add(name)
if unknown:
    sys.exit(f"metrics not exported by iommud: {sorted(unknown)}")
print(f"{len(exprs)} expressions checked")
PY

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
