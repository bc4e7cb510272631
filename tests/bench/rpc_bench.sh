#!/usr/bin/env bash
# The RPC figures of the performance table, over the daemon's unix socket with clients/loadgen:
#   rpc_bench.sh BUILD_DIR SECONDS   -> one JSON line per run, for report.py
# BUILD_DIR holds server/iommud and clients/loadgen/loadgen. Unix socket only. The main daemon keeps
# its state in memory (--state=memory: the RPC path alone); the durable runs repeat attach+detach
# against daemons on an SQLite state file (--state_sync=normal, then full). IOMMUD_BENCH_FLAGS
# (optional, words) go to every daemon, e.g. IOMMUD_BENCH_FLAGS=--group_strands=false for the
# threading before the per-group strands, side by side.
set -euo pipefail
build="$1"
seconds="${2:-5}"
work="$(mktemp -d)"
daemons=()
trap 'for d in "${daemons[@]}"; do kill "$d" 2>/dev/null; wait "$d" 2>/dev/null; done; rm -rf "$work"' EXIT
cat > "$work/topology.textpb" <<'TOPO'
units { name: "smmu0" caps { pgsize_bitmap: 0x40201000 iova_bits: 48 max_rids: 65536 } }
TOPO
loadgen="$build/clients/loadgen/loadgen"
start_daemon() {  # start_daemon NAME iommud-flags... ; sets $target
  local state="$work/$1"; shift
  mkdir -p "$state"
  "$build/server/iommud" --state_dir="$state" --metrics_port=0 --audit_interval=0 \
    --topology="$work/topology.textpb" \
    --rate_per_client=0 ${IOMMUD_BENCH_FLAGS:-} "$@" 2>"$state/log" &  # no per-client rate: measure gRPC, not the limit
  daemons+=($!)
  for _ in $(seq 200); do grep -q "serving on" "$state/log" && break; sleep 0.05; done
  target="unix:$state/iommud.sock"
}
run() {  # run NAME loadgen-args...
  local name="$1"; shift
  printf '{"run": "%s", "result": %s}\n' "$name" \
    "$("$loadgen" --target="$target" --json --duration="${seconds}s" "$@")"
}
start_daemon memory --state=memory
# RPC floor: the same connections and calls in flight, health checks vs attach+detach.
run health --mix=health --channels=4 --outstanding=8
run attach_detach --mix=attach_detach --channels=4 --outstanding=8 --rid_base=0x1000
# Group isolation: 64 distinct groups vs 1 group, same clients.
run distinct_groups --mix=use_unuse --channels=4 --outstanding=16 --groups=64 --rid_base=0x2000
run one_group --mix=use_unuse --channels=4 --outstanding=16 --groups=1 --rid_base=0x3000
# Isolation (issue #18 item 4): one light client (1x1 use_unuse on its own group) while a heavy
# client (4x16) runs health Checks (CPU contention alone), then while it mutates another group
# (the same concurrency, plus whatever waiting for that group costs the light client).
run light_idle --mix=use_unuse --channels=1 --outstanding=1 --groups=1 --rid_base=0x4000
light_beside() {  # light_beside NAME RID_BASE heavy-loadgen-args...
  local name="$1" rid="$2"; shift 2
  "$loadgen" --target="$target" --json --duration="$((seconds + 2))s" --channels=4 \
    --outstanding=16 "$@" >/dev/null &
  local heavy=$!
  sleep 1
  run "$name" --mix=use_unuse --channels=1 --outstanding=1 --groups=1 --rid_base="$rid"
  wait "$heavy"
}
light_beside light_under_health 0x6000 --mix=health
light_beside light_under_load 0x7000 --mix=use_unuse --groups=1 --rid_base=0x5000
# Durable attach+detach: every change committed to the SQLite file before the reply.
start_daemon sqlite_normal --state=sqlite --state_sync=normal
run attach_detach_sqlite_normal --mix=attach_detach --channels=4 --outstanding=8 --rid_base=0x1000
# The same with a request id on every call (its record and reply are stored too).
run attach_detach_sqlite_normal_ids --mix=attach_detach --channels=4 --outstanding=8 \
  --rid_base=0x1000 --request_ids
light_beside light_under_health_sqlite_normal 0x6000 --mix=health
light_beside light_under_load_sqlite_normal 0x7000 --mix=use_unuse --groups=1 --rid_base=0x5000
start_daemon sqlite_full --state=sqlite --state_sync=full
run attach_detach_sqlite_full --mix=attach_detach --channels=4 --outstanding=8 --rid_base=0x1000
