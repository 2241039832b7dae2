#!/usr/bin/env bash
# verify.sh [OUTDIR]: boots the guest from build.sh with plain QEMU under TCG, checks that it prints
# CORRAL-GUEST-UP and ticks, then hot-plugs over the monitor and checks that each change shows in a
# new CORRAL-GUEST-SEES line: a virtio-blk disk, a virtio-net NIC, a CPU and a pc-dimm, the CD
# ejected and changed (only when genisoimage, xorriso or mkisofs is there to make the ISOs), then
# the disk, NIC, DIMM and CPU unplugged, all while the guest keeps ticking. Last it sends an ACPI
# power-button press (system_powerdown on the monitor) and checks that QEMU exits. Prints the boot
# and shutdown times and how long each change took to show. Needs qemu and socat.
# HOTPLUG=0 skips the hot-plug part.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out}
boot_limit=${BOOT_LIMIT:-20}
off_limit=${OFF_LIMIT:-15}
plug_limit=${PLUG_LIMIT:-30}
log() { echo "guest/verify: $*" >&2; }
die() { log "FAIL: $*"; [ -s "${serial:-/nonexistent}" ] && tail -n 15 "$serial" >&2; exit 1; }
[ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] || die "no guest in $out; run guest/build.sh"
command -v socat >/dev/null || die "socat not found; run deploy/sandbox/deps.sh"

work=$(mktemp -d -t corral-guest-verify-XXXXXX)
serial=$work/serial.log
qpid=""
trap '[ -n "$qpid" ] && kill "$qpid" 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 1' INT TERM

now() { date +%s.%N; }
# hmp CMD: runs a monitor command; fails on an error, else prints its output (escapes dropped).
hmp() {
  local o
  o=$(echo "$*" | socat - "UNIX-CONNECT:$work/mon" | tr -d '\r' | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' |
    sed '1,/^(qemu) /d; /^(qemu) *$/d')
  if grep -qi '^error\|^Error:' <<<"$o" || grep -q 'Could not\|not found\|failed' <<<"$o"; then
    die "monitor: $*: $o"
  fi
  printf '%s\n' "$o"
}
sees() { grep -a '^CORRAL-GUEST-SEES' "$serial" | tail -n 1 | tr -d '\r'; }
field() { sees | tr ' ' '\n' | sed -n "s/^$1=//p"; }
last_tick() { grep -a '^CORRAL-TICK' "$serial" | tail -n 1 | tr -dc '0-9'; }
# expect WHAT REGEX CMD...: runs the monitor commands, then waits until the newest CORRAL-GUEST-SEES
# line matches REGEX (an ERE on the whole line).
expect() {
  local what=$1 re=$2 t0 deadline c
  shift 2
  t0=$(now)
  for c in "$@"; do hmp "$c" >/dev/null; done
  deadline=$(($(date +%s) + plug_limit))
  until sees | grep -Eq "$re"; do
    kill -0 "$qpid" 2>/dev/null || die "qemu exited during '$what': $(cat "$work/qemu.log")"
    [ "$(date +%s)" -lt "$deadline" ] || die "$what: no CORRAL-GUEST-SEES line matching '$re' within ${plug_limit}s (last: $(sees))"
    sleep 0.05
  done
  log "$(awk -v w="$what:" -v a="$t0" -v b="$(now)" 'BEGIN { printf "%-12s %4.1f s", w, b - a }') $(sees)"
}

# Two ISOs with different volume labels, if there is a tool to make them.
iso_tool=""
for t in genisoimage xorriso mkisofs; do command -v "$t" >/dev/null && { iso_tool=$t; break; }; done
mkiso() { # mkiso LABEL FILE
  mkdir -p "$work/isodir" && echo "$1" >"$work/isodir/label.txt"
  case $iso_tool in
    xorriso) xorriso -as mkisofs -quiet -V "$1" -o "$2" "$work/isodir" 2>/dev/null ;;
    *) "$iso_tool" -quiet -V "$1" -o "$2" "$work/isodir" ;;
  esac
}
cd_opt=if=ide,index=2,media=cdrom
if [ -n "$iso_tool" ]; then
  mkiso CORRAL_VERIFY_1 "$work/cd1.iso" && mkiso CORRAL_VERIFY_2 "$work/cd2.iso" ||
    die "$iso_tool could not make an ISO"
  cd_opt+=,file=$work/cd1.iso
fi
truncate -s 16M "$work/disk1.raw"

t0=$(now)
# The pc machine (i440fx, libvirt's default) with room for 3 more CPUs and 4 DIMMs.
# possible_cpus=16: physical APIC mode; in logical mode (<= 8 possible CPUs) a hot-added CPU gets
# no IPIs under TCG and memory unplug hangs (see build.sh).
qemu-system-x86_64 -accel tcg -machine pc -m 256,slots=4,maxmem=1G -smp 1,maxcpus=4 \
  -kernel "$out/vmlinuz" -initrd "$out/initrd.img" \
  -append 'console=ttyS0 panic=-1 memhp_default_state=online_movable possible_cpus=16' \
  -display none -no-reboot \
  -drive "$cd_opt" -serial "file:$serial" -monitor "unix:$work/mon,server,nowait" \
  </dev/null >"$work/qemu.log" 2>&1 &
qpid=$!

deadline=$(( $(date +%s) + boot_limit ))
until grep -q '^CORRAL-GUEST-UP' "$serial" 2>/dev/null; do
  kill -0 "$qpid" 2>/dev/null || die "qemu exited before the guest came up: $(cat "$work/qemu.log")"
  [ "$(date +%s)" -lt "$deadline" ] || die "no CORRAL-GUEST-UP within ${boot_limit}s"
  sleep 0.1
done
t_up=$(now)
log "$(grep -a '^CORRAL-GUEST-UP' "$serial" | tr -d '\r')"
until grep -q '^CORRAL-TICK 2' "$serial"; do
  [ "$(date +%s)" -lt $((deadline + 5)) ] || die "the guest does not tick"
  sleep 0.1
done
grep -a 'CORRAL-GUEST-WARN' "$serial" >&2 || true

if [ "${HOTPLUG:-1}" != 0 ]; then
  cd0=empty
  [ -n "$iso_tool" ] && cd0=CORRAL_VERIFY_1
  until [ -n "$(sees)" ]; do
    [ "$(date +%s)" -lt $((deadline + 5 + plug_limit)) ] || die "no CORRAL-GUEST-SEES line"
    sleep 0.1
  done
  log "at boot: $(sees)"
  sees | grep -Eq "^CORRAL-GUEST-SEES disks=- nics=- macs=- cpus=1 mem_mib=[0-9]+ cd=$cd0\$" ||
    die "unexpected first CORRAL-GUEST-SEES line (want disks=- nics=- macs=- cpus=1 cd=$cd0): $(sees)"
  mem0=$(field mem_mib)
  tick0=$(last_tick)

  expect "disk plug" ' disks=vda ' \
    "drive_add 0 if=none,id=vdisk1,file=$work/disk1.raw,format=raw" \
    "device_add virtio-blk-pci,drive=vdisk1,id=vdisk1"
  expect "NIC plug" ' nics=eth0 macs=52:54:00:c0:ff:01 ' \
    "netdev_add user,id=vnet1" "device_add virtio-net-pci,netdev=vnet1,id=vnic1,mac=52:54:00:c0:ff:01"
  # The first free slot in `info hotpluggable-cpus` (entries without a qom_path), as device_add args.
  cpu=$(hmp "info hotpluggable-cpus" | awk -F'"' '
    function flush() { if (type != "" && !used && pick == "") pick = type props; type = ""; props = ""; used = 0 }
    /type:/ { flush(); type = $2 } /qom_path:/ { used = 1 }
    /(node|socket|die|cluster|core|thread)-id:/ { sub(/^ */, "", $1); sub(/: *$/, "", $1); props = props "," $1 "=" $2 }
    END { flush(); print pick }')
  [ -n "$cpu" ] || die "no free CPU slot in 'info hotpluggable-cpus'"
  expect "CPU plug" ' cpus=2 ' "device_add $cpu,id=vcpu1"
  expect "DIMM plug" " mem_mib=$((mem0 + 128)) " \
    "object_add memory-backend-ram,id=vmem1,size=128M" "device_add pc-dimm,id=vdimm1,memdev=vmem1"
  if [ -n "$iso_tool" ]; then
    expect "CD eject" ' cd=empty$' "eject ide1-cd0"
    expect "CD change" ' cd=CORRAL_VERIFY_2$' "change ide1-cd0 $work/cd2.iso"
  else
    log "note: no genisoimage, xorriso or mkisofs: CD change not checked"
  fi
  expect "disk unplug" ' disks=- ' "device_del vdisk1"
  expect "NIC unplug" ' nics=- macs=- ' "device_del vnic1"
  expect "DIMM unplug" " mem_mib=$mem0 " "device_del vdimm1"
  # Last: after a CPU unplug, QEMU 7.2 under TCG crashes ("double free or corruption", SIGSEGV)
  # on the next hot-plug, be it a PCI device, a DIMM or a CPU.
  expect "CPU unplug" ' cpus=1 ' "device_del vcpu1"
  sleep 1.5
  tick1=$(last_tick)
  [ "$tick1" -gt "$tick0" ] || die "the guest stopped ticking during hot-plug (CORRAL-TICK $tick0, then $tick1)"
  log "ticks went on: CORRAL-TICK $tick0 -> $tick1"
fi

t1=$(now)
echo system_powerdown | socat - "UNIX-CONNECT:$work/mon" >/dev/null
deadline=$(( $(date +%s) + off_limit ))
while kill -0 "$qpid" 2>/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || die "qemu still runs ${off_limit}s after system_powerdown"
  sleep 0.1
done
t_off=$(now)
wait "$qpid" || true
qpid=""
grep -q 'CORRAL-GUEST-POWEROFF' "$serial" || log "note: no CORRAL-GUEST-POWEROFF line on the console"
awk -v a="$t0" -v b="$t_up" -v c="$t1" -v d="$t_off" 'BEGIN {
  printf "guest/verify: ok: CORRAL-GUEST-UP %.1f s after qemu start (TCG); off %.1f s after system_powerdown\n", b - a, d - c }' >&2
