#!/usr/bin/env bash
# Boots Debian's kernel under QEMU (TCG) with an emulated Intel IOMMU and edu devices, and runs the
# scenarios inside it: core/host against the kernel (host_vfio_vm_test) and iommud --backend=linux
# through its API (host_api_vm_test). See tests/host/README.md.
#
#   tests/host/run.sh [--build-dir DIR] [--timeout SECONDS] [--cache-dir DIR] [--bench] [--soak]
#                     [--only BINARY]
#
# Prints "PASS name" / "FAIL name" per scenario and last "N passed, M failed"; exits 0 only if all
# passed. A VM that does not boot or hangs fails (with the reason and the guest log's path).
# --bench runs host_map_bench in the guest instead of the scenarios (map+unmap through iommud's API
# vs direct VFIO), prints its output and exits 0 only if it ran (its figures are never judged).
# --soak runs the scenarios' long variants (IOMMUD_VM_SOAK=1 in the guest: e.g. more rounds of the
# unplug race, 40 kill rounds of host_crash_vm_test instead of 6) with a longer default timeout
# (1200 s); --only runs one scenario binary (e.g. host_unplug_vm_test).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tests/host"

build_dir=""
timeout_s=""
cache_dir="${IOMMUD_VM_CACHE:-/var/cache/iommud-vm}"
bench=0
soak=0
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir="$(cd "$2" && pwd)"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --cache-dir) cache_dir="$2"; shift 2 ;;
    --bench) bench=1; shift ;;
    --soak) soak=1; shift ;;
    --only) only="$2"; shift 2 ;;
    *) echo "usage: tests/host/run.sh [--build-dir DIR] [--timeout SECONDS] [--cache-dir DIR] [--bench] [--soak] [--only BINARY]" >&2
       exit 2 ;;
  esac
done

[ -n "$timeout_s" ] || { [ "$soak" -eq 1 ] && timeout_s=1200 || timeout_s=900; }

log() { printf 'host-vm: %s\n' "$*" >&2; }
die() {  # die REASON: the run fails as a whole
  log "FAILED: $*"
  echo "FAIL vm: $*"
  echo "0 passed, 1 failed"
  exit 1
}

# --- 1. packages on the build machine --------------------------------------------------------
mapfile -t packages < <(grep -v '^\s*#' "$here/packages.txt" | grep -v '^\s*$')
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing ${missing[*]}"
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >&2 ||
    die "cannot install ${missing[*]}"
fi
[ "$(id -u)" -eq 0 ] || die "must run as root (the kernel cache and QEMU's 9p export of / need it)"

# --- 2. the scenario binary --------------------------------------------------------------------
if [ -z "$build_dir" ]; then
  build_dir="$root/build-host"
  if [ ! -f "$build_dir/build.ninja" ]; then
    cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DIOMMUD_BUILD_BENCHMARKS=OFF -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >&2 ||
      die "cmake configure failed"
  fi
  targets=(host_vfio_vm_test host_api_vm_test host_handover_vm_test host_fd_channel_vm_test
    host_unplug_vm_test host_crash_vm_test host_fdstore_vm_test iommud)
  [ "$bench" -eq 1 ] && targets=(host_map_bench iommud)
  cmake --build "$build_dir" --target "${targets[@]}" >&2 ||
    die "build of the scenario binaries failed"
fi
# The scenario binaries (core/host against the kernel; the daemon's API against the kernel) and
# the daemon the second one starts; with --bench, the benchmark instead (it starts the daemon too).
test_bins=(host_vfio_vm_test host_api_vm_test host_handover_vm_test host_fd_channel_vm_test
  host_unplug_vm_test host_crash_vm_test host_fdstore_vm_test)
[ -n "$only" ] && test_bins=("$only")
[ "$bench" -eq 1 ] && test_bins=(host_map_bench)
daemon_bin="$build_dir/server/iommud"
[ -x "$daemon_bin" ] || die "no $daemon_bin (build the iommud target)"
scenarios=()
for t in "${test_bins[@]}"; do
  [ -x "$build_dir/tests/host/$t" ] || die "no $build_dir/tests/host/$t (build the $t target)"
  [ "$bench" -eq 1 ] && continue
  mapfile -t -O "${#scenarios[@]}" scenarios < <("$build_dir/tests/host/$t" --gtest_list_tests |
    awk '/^[^ ]/ && /\.$/ { suite = $1; next } /^  / { print suite $1 }')
done
[ "$bench" -eq 1 ] || [ "${#scenarios[@]}" -gt 0 ] || die "the scenario binaries list no tests"

# --- 3. the guest kernel: Debian's package file, unpacked, never installed -------------------
mkdir -p "$cache_dir"
exec 9>"$cache_dir/.lock"
flock 9  # one fetch/unpack at a time when several runs share the cache
kernel_pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-6/{print $2; exit}')"
[ -n "$kernel_pkg" ] || die "cannot resolve linux-image-amd64's kernel package (apt-get update?)"
kernel_dir="$cache_dir/$kernel_pkg"
if [ ! -f "$kernel_dir/.unpacked" ]; then
  log "fetching $kernel_pkg"
  rm -f "$cache_dir/${kernel_pkg}"_*.deb
  # apt fetches as the _apt user: let it write the cache directory (no "unsandboxed" warning).
  id _apt >/dev/null 2>&1 && chown _apt "$cache_dir"
  (cd "$cache_dir" && apt-get download -q "$kernel_pkg" >&2) ||
    die "apt-get download $kernel_pkg failed"
  rm -rf "$kernel_dir"
  dpkg-deb -x "$cache_dir/${kernel_pkg}"_*.deb "$kernel_dir" || die "dpkg-deb -x failed"
  touch "$kernel_dir/.unpacked"
fi
vmlinuz="$(ls "$kernel_dir"/boot/vmlinuz-* 2>/dev/null | head -1)"
[ -n "$vmlinuz" ] || die "no vmlinuz in $kernel_dir"
moddir="$(ls -d "$kernel_dir"/lib/modules/* | head -1)"
exec 9>&-  # releases the lock

# Where the guest writes the binaries' output (in the results share).
out_log=gtest.log
[ "$bench" -eq 1 ] && out_log=bench.log

# --- 4. the initramfs: busybox, the modules (dependency order from modinfo), an init ------------
work="$(mktemp -d "${TMPDIR:-/tmp}/iommud-vm.XXXXXX")"
initrd_root="$work/initrd"
mkdir -p "$initrd_root"/{bin,lib/modules,proc,sys,dev,host}
cp /bin/busybox "$initrd_root/bin/busybox"

declare -A module_path=() module_done=()
while IFS= read -r ko; do
  name="$(basename "$ko")"; name="${name%%.ko*}"
  module_path["${name//-/_}"]="$ko"
done < <(find "$moddir/kernel" -name '*.ko*')
load_order=()
add_module() {  # depth first: a module's dependencies before it
  local key="${1//-/_}" ko dep
  [ -n "${module_done[$key]:-}" ] && return 0
  module_done[$key]=1
  ko="${module_path[$key]:-}"
  [ -n "$ko" ] || die "kernel module $1 not in $kernel_pkg"
  for dep in $(modinfo -F depends "$ko" | tr ',' ' '); do add_module "$dep"; done
  load_order+=("$key")
}
# 9p root of the build machine; VFIO (type1 is requested at run time, which needs modprobe: load
# it explicitly); pci-stub and ahci (binds the ICH9 SATA function) for the scenarios of devices
# held by other drivers.
for m in virtio_pci 9pnet_virtio 9p vfio_iommu_type1 vfio-pci pci-stub ahci; do add_module "$m"; done
for key in "${load_order[@]}"; do
  ko="${module_path[$key]}"
  case "$ko" in
    *.ko.xz) xz -dc "$ko" > "$initrd_root/lib/modules/$key.ko" ;;
    *.ko.zst) zstd -qdc "$ko" > "$initrd_root/lib/modules/$key.ko" ;;
    *) cp "$ko" "$initrd_root/lib/modules/$key.ko" ;;
  esac
done
echo "${load_order[*]}" > "$initrd_root/modules"

cat > "$initrd_root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "HOSTVM: init started"
for m in \$(cat /modules); do
  insmod /lib/modules/\$m.ko || echo "HOSTVM: insmod \$m failed"
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro host /host || { echo "HOSTVM: mounting the 9p root failed"; poweroff -f; }
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mount -t tmpfs tmpfs /host/tmp
mount -t tmpfs tmpfs /host/run
mkdir -p /host/tmp/results
mount -t 9p -o trans=virtio,version=9p2000.L results /host/tmp/results || { echo "HOSTVM: mounting the results share failed"; poweroff -f; }
echo "HOSTVM: running scenarios"
chroot /host /bin/sh -c 'cd /tmp && rc=0; for t in ${test_bins[*]}; do IOMMUD_VM_SOAK=${soak} IOMMUD_BIN=/tmp/results/iommud /tmp/results/\$t >> /tmp/results/${out_log} 2>&1 || rc=\$?; done; echo \$rc > /tmp/results/exit_code'
sync
echo "HOSTVM: scenarios finished"
umount /host/tmp/results
poweroff -f
INIT
chmod +x "$initrd_root/init"
(cd "$initrd_root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.cpio.gz" ||
  die "building the initramfs failed"

# --- 5. boot ------------------------------------------------------------------------------------
results="$work/results"
mkdir -p "$results"
# The scenario binary goes to the guest through the results share: the build tree may be anywhere
# (under /tmp, which the guest covers with its own tmpfs, or on another mount than /).
for t in "${test_bins[@]}"; do
  cp "$build_dir/tests/host/$t" "$results/$t" || die "cannot copy $t to $results"
done
cp "$daemon_bin" "$results/iommud" || die "cannot copy $daemon_bin to $results"
guest_log="$work/guest.log"
log "booting $(basename "$vmlinuz") (timeout ${timeout_s}s), guest log: $guest_log"
start=$(date +%s)
set +e
timeout -k 5 "$timeout_s" qemu-system-x86_64 \
  -machine q35,accel=tcg,kernel-irqchip=split -cpu max -m 1536 -smp 1 \
  -nographic -no-reboot -net none \
  -device intel-iommu,intremap=on,caching-mode=on \
  -device edu,addr=02.0 \
  -device pci-bridge,id=br1,chassis_nr=1,addr=03.0 \
  -device edu,bus=br1,addr=01.0 -device edu,bus=br1,addr=02.0 \
  -device pcie-root-port,id=rp1,chassis=2,addr=04.0 -device edu,bus=rp1,addr=00.0 \
  -fsdev local,id=hostfs,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=hostfs,mount_tag=host,addr=10.0 \
  -fsdev local,id=resultsfs,path="$results",security_model=none \
  -device virtio-9p-pci,fsdev=resultsfs,mount_tag=results,addr=11.0 \
  -kernel "$vmlinuz" -initrd "$work/initrd.cpio.gz" \
  -append "console=ttyS0 intel_iommu=on loglevel=3 panic=-1" \
  < /dev/null > "$guest_log" 2>&1
qemu_rc=$?
set -e
elapsed=$(( $(date +%s) - start ))
log "QEMU exited with $qemu_rc after ${elapsed}s"

# --- 6. results -----------------------------------------------------------------------------------
reason=""
if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
  reason="the VM did not power off within ${timeout_s}s (hung boot or scenario)"
elif [ "$qemu_rc" -ne 0 ]; then
  reason="QEMU exited with status $qemu_rc"
elif ! grep -q "HOSTVM: init started" "$guest_log"; then
  reason="the guest never reached the initramfs's init"
elif ! grep -q "HOSTVM: running scenarios" "$guest_log"; then
  reason="the guest did not get to the scenarios: $(grep 'HOSTVM:' "$guest_log" | tail -1)"
elif [ ! -f "$results/exit_code" ]; then
  reason="the scenario binary did not finish (no exit code in the results share)"
fi
if grep -q "Kernel panic" "$guest_log"; then
  reason="${reason:+$reason; }the guest kernel panicked: $(grep -m1 'Kernel panic' "$guest_log")"
fi
if grep -q "kernel BUG at" "$guest_log"; then
  reason="${reason:+$reason; }the guest kernel hit a BUG: $(grep -m1 'kernel BUG at' "$guest_log")"
fi
if grep -q "HOSTVM: insmod .* failed" "$guest_log"; then
  reason="${reason:+$reason; }$(grep -m1 'HOSTVM: insmod' "$guest_log")"
fi

if [ "$bench" -eq 1 ]; then
  # The benchmark's own lines; the run fails only if it could not run (never on its figures).
  [ -f "$results/bench.log" ] && cat "$results/bench.log"
  if [ -z "$reason" ] && [ "$(cat "$results/exit_code")" != "0" ]; then
    reason="host_map_bench exited with $(cat "$results/exit_code")"
  fi
  if [ -n "$reason" ]; then
    echo "FAIL bench: $reason"
    log "guest log kept: $guest_log"
    log "guest log tail:"; tail -30 "$guest_log" >&2
    exit 1
  fi
  rm -rf "$work"
  exit 0
fi

# The scenarios' figures (lines starting with "FIGURES ", and e.g. "host_crash: rounds=8 kills=8
# ... leaks found=0"), before the verdicts, pass or fail.
[ -f "$results/gtest.log" ] && { grep -hE '^FIGURES |^[a-z_]+: rounds=' "$results/gtest.log" || true; }
passed=0 failed=0
for s in "${scenarios[@]}"; do
  if [ -f "$results/gtest.log" ] && grep -qF "[       OK ] $s (" "$results/gtest.log"; then
    echo "PASS $s"; passed=$((passed + 1))
  else
    echo "FAIL $s"; failed=$((failed + 1))
  fi
done
# The scenarios' figures: lines they print starting with "FIGURES ".
[ -f "$results/gtest.log" ] && grep -E '^FIGURES ' "$results/gtest.log" || true
if [ -n "$reason" ]; then
  echo "FAIL vm: $reason"
  failed=$((failed + 1))
elif [ "$(cat "$results/exit_code")" != "0" ] && [ "$failed" -eq 0 ]; then
  echo "FAIL vm: the scenario binary exited with $(cat "$results/exit_code")"
  failed=$((failed + 1))
fi
if [ "$failed" -gt 0 ]; then
  log "guest log kept: $guest_log"
  [ -f "$results/gtest.log" ] && { log "scenario output ($results/gtest.log):"; \
    grep -vE '^\[ +(RUN|OK) +\]' "$results/gtest.log" | tail -60 >&2; }
  [ -n "$reason" ] && { log "guest log tail:"; tail -30 "$guest_log" >&2; }
else
  rm -rf "$work"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
