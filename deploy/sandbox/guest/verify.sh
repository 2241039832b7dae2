#!/usr/bin/env bash
# verify.sh [OUTDIR]: boots the guest from build.sh with plain QEMU under TCG, checks that it prints
# CORRAL-GUEST-UP and ticks, then sends an ACPI power-button press (system_powerdown on the
# monitor) and checks that QEMU exits. Prints the boot and shutdown times. Needs qemu and socat.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out}
boot_limit=${BOOT_LIMIT:-20}
off_limit=${OFF_LIMIT:-15}
log() { echo "guest/verify: $*" >&2; }
die() { log "FAIL: $*"; [ -s "${serial:-/nonexistent}" ] && tail -n 15 "$serial" >&2; exit 1; }
[ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] || die "no guest in $out; run guest/build.sh"
command -v socat >/dev/null || die "socat not found; run deploy/sandbox/deps.sh"

work=$(mktemp -d -t corral-guest-verify-XXXXXX)
serial=$work/serial.log
qpid=""
trap '[ -n "$qpid" ] && kill "$qpid" 2>/dev/null; rm -rf "$work"' EXIT

now() { date +%s.%N; }
t0=$(now)
qemu-system-x86_64 -accel tcg -m 128 -kernel "$out/vmlinuz" -initrd "$out/initrd.img" \
  -append 'console=ttyS0 panic=-1' -display none -no-reboot \
  -serial "file:$serial" -monitor "unix:$work/mon,server,nowait" </dev/null >"$work/qemu.log" 2>&1 &
qpid=$!

deadline=$(( $(date +%s) + boot_limit ))
until grep -q '^CORRAL-GUEST-UP' "$serial" 2>/dev/null; do
  kill -0 "$qpid" 2>/dev/null || die "qemu exited before the guest came up: $(cat "$work/qemu.log")"
  [ "$(date +%s)" -lt "$deadline" ] || die "no CORRAL-GUEST-UP within ${boot_limit}s"
  sleep 0.1
done
t_up=$(now)
log "$(grep -a '^CORRAL-GUEST-UP' "$serial" | tr -d '\r')"
grep -a 'CORRAL-GUEST-WARN' "$serial" >&2 || true
until grep -q '^CORRAL-TICK 2' "$serial"; do
  [ "$(date +%s)" -lt $((deadline + 5)) ] || die "the guest does not tick"
  sleep 0.1
done

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
