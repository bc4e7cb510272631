#!/usr/bin/env bash
# End to end through the iommuctl binary against a real iommud (demo topology, software backend):
# the VMM walkthrough, --json, IOMMUD_TARGET, exit codes (0 ok, 1 refused/unreachable, 2 usage)
# and the "iommuctl: CODE REASON: message (k=v)" error line; then --tls-* against a daemon's mutual
# TLS TCP listener (certificates made with the openssl CLI).
# Usage: iommuctl_daemon_test.sh IOMMUD_BINARY IOMMUCTL_BINARY
set -euo pipefail
iommud="$1"
iommuctl="$2"
work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; echo "--- iommud log" >&2; cat "$work/iommud.log" >&2 || true; exit 1; }

"$iommud" --state_dir="$work/state" --metrics_port=-1 2>"$work/iommud.log" &
pid=$!
for _ in $(seq 100); do grep -q "serving on" "$work/iommud.log" 2>/dev/null && break; sleep 0.1; done
grep -q "iommud: serving on unix:$work/state/iommud.sock" "$work/iommud.log" || fail "iommud did not start"

export IOMMUD_TARGET="unix:$work/state/iommud.sock"
ctl() { "$iommuctl" --owner vmm-1 "$@"; }
# run EXPECTED_EXIT ARGS...: runs iommuctl, stdout -> $work/out, stderr -> $work/err.
run() {
  local want="$1"; shift
  local got=0
  ctl "$@" >"$work/out" 2>"$work/err" || got=$?
  [ "$got" = "$want" ] || fail "iommuctl $*: exit $got, want $want; stderr: $(cat "$work/err")"
}
# json_field FIELD: the field of the JSON object in $work/out.
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/out" "$1"; }

run 0 --help
for sub in units groups devices domains mappings faults health probe release use-default \
           unuse-default claim renew keep-lease release-ownership claim-device release-device-ownership alloc free \
           attach-device detach-device attach detach replace register-memory unregister-memory regions map-region map \
           unmap unmap-all iova-ranges translate; do
  grep -q -- "$sub" "$work/out" || fail "help does not list '$sub'"
done

run 0 units
grep -q "smmu0" "$work/out" || fail "units: no smmu0 in $(cat "$work/out")"
run 0 health
grep -q "SERVING" "$work/out" || fail "health: $(cat "$work/out")"

run 0 probe smmu0 0000:07:00.0 0x700
run 0 --json device 0000:07:00.0
group="$(json_field group_id)"
[ -n "$group" ] || fail "device has no group"
run 0 claim "$group"
grep -q "vmm-1" "$work/out" || fail "claim: owner not shown: $(cat "$work/out")"
run 0 --json alloc smmu0 --type UNMANAGED
domain="$(json_field id)"
run 0 attach "$group" "$domain"
# Guest memory is a registered region, mapped by (region, offset).
run 0 --json register-memory 4M
region="$(json_field id)"
base="$(json_field base)"
[ "$base" = "1099511627776" ] || fail "register-memory: base $base"
run 0 map-region "$domain" 0x100000 "$region" 2M 2M --prot rw
grep -q "mapped 0x100000 -> region $region + 0x200000 (0x10000200000) size 2M rw" "$work/out" ||
  fail "map-region: $(cat "$work/out")"
run 0 regions
grep -Eq "^$region +uid:[0-9]+/vmm-1 +EMULATED +4M +0x10000000000 +2M" "$work/out" ||
  fail "regions: $(cat "$work/out")"
run 1 unregister-memory "$region"
grep -q "^iommuctl: FAILED_PRECONDITION REGION_IN_USE: " "$work/err" || fail "unregister: $(cat "$work/err")"
run 0 mappings "$domain"
grep -q "0x100000" "$work/out" || fail "mappings: $(cat "$work/out")"
run 0 translate 0000:07:00.0 0x100040
grep -q "0x10000200040" "$work/out" || fail "translate: $(cat "$work/out")"
run 0 unmap "$domain" 0x100000 2M
run 0 unregister-memory "$region"
# Raw physical addresses: this uid is admin under the default policy.
run 0 map "$domain" 0x100000 0x80000000 2M --prot rw
run 0 translate 0000:07:00.0 0x100040
grep -q "0x80000040" "$work/out" || fail "translate: $(cat "$work/out")"

# Refused: freeing an attached domain; the error line has code, reason, message.
run 1 free "$domain"
grep -Eq '^iommuctl: FAILED_PRECONDITION [A-Z_]+: ' "$work/err" || fail "error line: $(cat "$work/err")"
run 1 device 0000:99:00.0
[ "$(cat "$work/err")" = "iommuctl: NOT_FOUND DEVICE_NOT_FOUND: no device '0000:99:00.0' (device=0000:99:00.0)" ] ||
  fail "not-found line: $(cat "$work/err")"
[ ! -s "$work/out" ] || fail "a refused call printed to stdout"

# Usage errors exit 2.
run 2 map "$domain" 0x1000 0x1000 4K --prot x
run 2 frobnicate
run 2 --timeout soon units

run 0 unmap "$domain" 0x100000 2M
run 0 translate 0000:07:00.0 0x100040
grep -q "NO_MAPPING" "$work/out" || fail "translate after unmap: $(cat "$work/out")"
run 0 detach "$group" "$domain"
run 0 free "$domain"
run 0 release-ownership "$group"

# Per-device attach in a two-device group (0x880 and 0x888 share the alias 0x87f): the first device
# attaches the group, the second joins; a second domain is refused; detach-device one by one.
run 0 probe smmu0 0000:08:10.0 0x880 --alias 0x87f
run 0 probe smmu0 0000:08:11.0 0x888 --alias 0x87f
run 0 --json device 0000:08:10.0
pair="$(json_field group_id)"
run 0 claim "$pair"
run 0 --json alloc smmu0
pair_domain="$(json_field id)"
run 0 --json alloc smmu0
other_domain="$(json_field id)"
run 0 attach-device 0000:08:10.0 "$pair_domain"
run 1 attach-device 0000:08:11.0 "$other_domain"
grep -q "^iommuctl: FAILED_PRECONDITION GROUP_ATTACHED_ELSEWHERE: " "$work/err" ||
  fail "attach-device elsewhere: $(cat "$work/err")"
run 0 --json attach-device 0000:08:11.0 "$pair_domain"
python3 -c 'import json,sys; g=json.load(open(sys.argv[1])); assert g["attached_devices"] == ["0000:08:10.0", "0000:08:11.0"], g' "$work/out" ||
  fail "attach-device join: $(cat "$work/out")"
run 0 -o wide groups
grep -Eq "^$pair .*0000:08:10.0,0000:08:11.0 .*0000:08:10.0,0000:08:11.0 " "$work/out" || fail "groups -o wide: $(cat "$work/out")"
run 0 --json detach-device 0000:08:10.0 "$pair_domain"
[ "$(json_field domain_id)" = "$pair_domain" ] || fail "detach-device of one: $(cat "$work/out")"
run 1 detach-device 0000:08:10.0 "$pair_domain"
grep -q "^iommuctl: FAILED_PRECONDITION DEVICE_NOT_ATTACHED: " "$work/err" || fail "detach-device twice: $(cat "$work/err")"
run 0 --json detach-device 0000:08:11.0 "$pair_domain"
[ "$(json_field domain_id)" = "$(json_field blocking_domain_id)" ] || fail "detach-device of the last: $(cat "$work/out")"
run 0 free "$pair_domain"
run 0 free "$other_domain"
run 0 release-ownership "$pair"

# Ownership leases: claim with one, renew it with a new TTL; an unleased claim has none to renew.
run 0 --json claim "$group" --lease 1m
[ "$(json_field lease_ttl_millis)" = "60000" ] || fail "claim --lease: $(cat "$work/out")"
run 0 renew "$group" --lease 2m
grep -q "(2m)" "$work/out" || fail "renew: lease not shown: $(cat "$work/out")"
run 0 release-ownership "$group"
run 0 claim "$group"
run 1 renew "$group"
grep -q "^iommuctl: FAILED_PRECONDITION NO_LEASE: " "$work/err" || fail "renew: $(cat "$work/err")"
run 0 release-ownership "$group"
# keep-lease: one KeepLease stream keeps a 1s lease past its TTL; once it ends the lease lapses
# and the daemon releases the group; keeping a lease of a group not owned is refused.
run 0 claim "$group" --lease 1s
run 0 keep-lease "$group" --interval 300ms --for 2500ms
[ "$(grep -c "^renewed group $group: lease until " "$work/out")" -ge 5 ] || fail "keep-lease: $(cat "$work/out")"
run 0 --json group "$group"
grep -q "vmm-1" "$work/out" || fail "keep-lease did not keep the group owned: $(cat "$work/out")"
for _ in $(seq 40); do
  run 0 --json group "$group"
  grep -q "vmm-1" "$work/out" || break
  sleep 0.1
done
grep -q "vmm-1" "$work/out" && fail "the lease did not lapse after keep-lease ended: $(cat "$work/out")"
run 1 keep-lease "$group" --interval 1s
grep -q "^iommuctl: FAILED_PRECONDITION GROUP_NOT_OWNED: " "$work/err" || fail "keep-lease of an unowned group: $(cat "$work/err")"
run 2 keep-lease "$group" --interval 0s
run 2 claim "$group" --lease soon
run 2 claim "$group" --lease -5s
run 1 claim "$group" --lease 100ms
grep -q "LEASE_TTL_OUT_OF_RANGE" "$work/err" || fail "claim --lease 100ms: $(cat "$work/err")"
# claim --hold: the ownership is bound to iommuctl's KeepLease stream; killing iommuctl (SIGKILL:
# nothing of it runs) releases the group at once, long before its 10-minute lease; --for ends it
# cleanly, with the same effect.
"$iommuctl" --owner vmm-1 claim "$group" --hold --lease 10m --interval 1s >"$work/hold.out" 2>"$work/hold.err" &  # not ctl: $! must be iommuctl itself
holder=$!
for _ in $(seq 100); do grep -q "bound to this stream" "$work/hold.out" && break; sleep 0.1; done
grep -q "bound to this stream" "$work/hold.out" || fail "claim --hold: $(cat "$work/hold.out" "$work/hold.err")"
run 0 --json group "$group"
[ "$(json_field lease_bound)" = "True" ] || fail "claim --hold: not bound: $(cat "$work/out")"
kill -9 "$holder"; wait "$holder" 2>/dev/null || true
for _ in $(seq 100); do
  run 0 --json group "$group"
  grep -q "vmm-1" "$work/out" || break
  sleep 0.1
done
grep -q "vmm-1" "$work/out" && fail "the group stayed owned after its holder was killed: $(cat "$work/out")"
run 0 claim "$group" --hold --lease 10m --interval 200ms --for 600ms
grep -q "bound to this stream" "$work/out" || fail "claim --hold --for: $(cat "$work/out")"
for _ in $(seq 100); do
  run 0 --json group "$group"
  grep -q "vmm-1" "$work/out" || break
  sleep 0.1
done
grep -q "vmm-1" "$work/out" && fail "claim --hold --for did not release the group: $(cat "$work/out")"
run 1 keep-lease "$group" --bind --interval 1s
grep -q "GROUP_NOT_OWNED" "$work/err" || fail "keep-lease --bind of an unowned group: $(cat "$work/err")"
# Request ids: a retried alloc with the same --request-id is answered with the first domain and
# allocates nothing more; the id reused for other fields is refused; a bad id is refused.
run 0 --json --request-id alloc-7 alloc smmu0 --type UNMANAGED
first="$(json_field id)"
run 0 --json --request-id alloc-7 --retries 2 alloc smmu0 --type UNMANAGED
[ "$(json_field id)" = "$first" ] || fail "retried alloc: $(cat "$work/out"), first was $first"
run 0 --json domains
[ "$(grep -o "\"owner\": *\"[^\"]*vmm-1\"" "$work/out" | wc -l)" = 1 ] ||
  fail "a retried alloc allocated twice: $(cat "$work/out")"
run 1 --request-id alloc-7 alloc smmu0 --type IDENTITY
grep -q "^iommuctl: INVALID_ARGUMENT REQUEST_ID_REUSED: " "$work/err" || fail "reused id: $(cat "$work/err")"
run 1 --request-id "has space" alloc smmu0
grep -q "^iommuctl: INVALID_ARGUMENT INVALID_REQUEST_ID: " "$work/err" || fail "bad id: $(cat "$work/err")"
run 2 --retries many units
run 0 free "$first"

run 0 release 0000:07:00.0
run 1 device 0000:07:00.0

# Unreachable daemon: UNAVAILABLE CONNECT_FAILED, exit 1.
got=0
"$iommuctl" --target "unix:$work/nobody.sock" --timeout 1s units >/dev/null 2>"$work/err" || got=$?
[ "$got" = 1 ] || fail "unreachable: exit $got"
grep -q "^iommuctl: UNAVAILABLE CONNECT_FAILED: " "$work/err" || fail "unreachable: $(cat "$work/err")"

kill -TERM "$pid"
wait "$pid" || fail "iommud exited with $? after SIGTERM"
pid=""

# Mutual TLS over TCP: a test CA, the daemon's certificate for 127.0.0.1, a client certificate.
pki="$work/pki"
mkdir -p "$pki"
ossl() { openssl "$@" 2>>"$work/openssl.log" || fail "openssl $*: $(cat "$work/openssl.log")"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/O=iommud-test/CN=ca" \
  -keyout "$pki/ca-key.pem" -out "$pki/ca.pem"
issue() {  # issue NAME SUBJECT EXTENSIONS
  ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" \
    -keyout "$pki/$1-key.pem" -out "$pki/$1.csr"
  printf '%s\n' "$3" >"$pki/$1.ext"
  ossl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca-key.pem" -CAcreateserial \
    -days 1 -extfile "$pki/$1.ext" -out "$pki/$1.pem"
}
issue server "/O=iommud-test/CN=iommud" "subjectAltName=DNS:localhost,IP:127.0.0.1"
issue client "/O=iommud-test/CN=vmm-ctl" "extendedKeyUsage=clientAuth"
printf 'operator x509:CN=vmm-ctl,O=iommud-test\n' >"$work/policy.txt"
"$iommud" --state_dir="$work/tls-state" --metrics_port=0 --listen_tcp=127.0.0.1:0 \
  --tls_cert="$pki/server.pem" --tls_key="$pki/server-key.pem" --tls_client_ca="$pki/ca.pem" \
  --policy_file="$work/policy.txt" 2>"$work/iommud.log" &
pid=$!
for _ in $(seq 100); do grep -q "serving on" "$work/iommud.log" 2>/dev/null && break; sleep 0.1; done
port="$(sed -n 's/^.*iommud: listening on tcp port \([0-9]*\)$/\1/p' "$work/iommud.log")"
[ -n "$port" ] || fail "TLS daemon did not report its port"
tls=(--target "127.0.0.1:$port" --tls-ca "$pki/ca.pem" --tls-cert "$pki/client.pem"
     --tls-key "$pki/client-key.pem")
unset IOMMUD_TARGET
# tls_run EXPECTED_EXIT ARGS...: run with the TLS options. A handshake of the sanitizer build can
# outlast iommuctl's 5s connect limit on a loaded machine; such a call sent nothing: try again.
tls_run() {
  local want="$1"; shift
  local got=0
  for _ in 1 2 3; do
    got=0
    ctl "${tls[@]}" "$@" >"$work/out" 2>"$work/err" || got=$?
    grep -q "CONNECT_FAILED" "$work/err" || break
  done
  [ "$got" = "$want" ] || fail "iommuctl (TLS) $*: exit $got, want $want; stderr: $(cat "$work/err")"
}
tls_run 0 units
grep -q "smmu0" "$work/out" || fail "units over TLS: $(cat "$work/out")"
tls_run 0 probe smmu0 0000:07:00.0 0x700
tls_run 0 --json device 0000:07:00.0
group="$(json_field group_id)"
tls_run 0 claim "$group"
grep -q "x509:CN=vmm-ctl,O=iommud-test/vmm-1" "$work/out" || fail "claim over TLS: $(cat "$work/out")"
# Without a client certificate the handshake is refused.
run 1 --target "127.0.0.1:$port" --tls-ca "$pki/ca.pem" --timeout 2s units
run 1 --target "127.0.0.1:$port" --timeout 2s units
kill -TERM "$pid"
wait "$pid" || fail "TLS iommud exited with $? after SIGTERM"
pid=""
echo PASS
