#!/usr/bin/env bash
# Integration: a real Prometheus server (Debian's prometheus package) scrapes a running iommud with
# the alert rules of deploy/prometheus loaded, and this test queries Prometheus's HTTP API for the
# daemon's metrics. Loopback only. Usage: prometheus_scrape_test.sh IOMMUD_BINARY [IOMMUCTL_BINARY]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
iommud="$1"
iommuctl="${2:-}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; echo "--- iommud log"; cat "$work/iommud.log" >&2 || true;
         echo "--- prometheus log"; tail -20 "$work/prometheus.log" >&2 || true; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$iommud" --state_dir="$work/state" --metrics_port=-1 --audit_interval=1s \
  2>"$work/iommud.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "serving on" "$work/iommud.log" 2>/dev/null && break; sleep 0.1; done
metrics_port="$(sed -n 's/.*metrics on .* (port \([0-9]*\)).*/\1/p' "$work/iommud.log")"
[ -n "$metrics_port" ] || fail "iommud did not start"

# Some traffic for the RPC metrics.
if [ -n "$iommuctl" ]; then
  "$iommuctl" --target "unix:$work/state/iommud.sock" groups >/dev/null
  "$iommuctl" --target "unix:$work/state/iommud.sock" device 0000:99:99.9 2>/dev/null && fail "expected NOT_FOUND"
fi

prom_port="$(free_port)"
cp "$root/deploy/prometheus/alerts.yml" "$work/"
cat > "$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: iommud
    static_configs:
      - targets: ["127.0.0.1:$metrics_port"]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)

query() {  # query PROMQL -> the first sample's value, or empty
  python3 - "http://127.0.0.1:$prom_port/api/v1/query" "$1" <<'PY'
import json, sys, urllib.parse, urllib.request
try:
    url = sys.argv[1] + "?" + urllib.parse.urlencode({"query": sys.argv[2]})
    result = json.load(urllib.request.urlopen(url, timeout=2))["data"]["result"]
    print(result[0]["value"][1] if result else "")
except Exception:
    print("")
PY
}
wait_for() {  # wait_for PROMQL EXPECTED
  for _ in $(seq 120); do
    [ "$(query "$1")" = "$2" ] && return 0
    sleep 0.5
  done
  fail "$1 never became $2 (last: '$(query "$1")')"
}

wait_for 'up{job="iommud"}' 1
wait_for 'iommud_devices' 8          # the embedded demo topology
wait_for 'iommud_groups' 6
wait_for 'sum(iommud_leaked_attachments)' 0
wait_for 'iommud_audits_total > bool 1' 1
if [ -n "$iommuctl" ]; then
  wait_for 'sum(grpc_server_handled_total{grpc_method="GetDevice",grpc_code="NotFound"})' 1
fi
rules="$(python3 -c 'import json, sys, urllib.request; d=json.load(urllib.request.urlopen(sys.argv[1])); print(sum(len(g["rules"]) for g in d["data"]["groups"]))' "http://127.0.0.1:$prom_port/api/v1/rules")"
want_rules="$(grep -c '^ *- alert: ' "$root/deploy/prometheus/alerts.yml")"
[ "$rules" -eq "$want_rules" ] || fail "expected $want_rules alert rules loaded (alerts.yml), got $rules"
echo "prometheus scraped iommud: up=1, 8 devices, 6 groups, 0 leaks, $rules alert rules loaded"
