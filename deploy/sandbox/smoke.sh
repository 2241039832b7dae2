#!/usr/bin/env bash
# smoke.sh: end-to-end check of the sandbox with the real scripts: deps, guest build, up.sh 3,
# cluster bootstrap/join, a diskless domain live-migrated host1 -> host3, the busybox guest
# (TCG) booted on host1, live-migrated to host2 and shut down by ACPI, kill.sh/start.sh host2,
# down.sh twice. Prints timings. Removes the sandbox at the end (KEEP=1 keeps it). Run as root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
corral=${CORRAL:-$SANDBOX_REPO/target/debug/corral}
[ -x "$corral" ] || sb_die "corral CLI '$corral' not found (cargo build -p corral-cli, or set CORRAL)"

say() { printf '\n== %s\n' "$*" >&2; }
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
declare -A timing
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local end=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || fail "$what (waited ${limit}s)"
    sleep 0.1
  done
}
cleanup() { if [ "${KEEP:-0}" != 1 ]; then "$here/down.sh" >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

H1=$(sb_uri 1); H2=$(sb_uri 2); H3=$(sb_uri 3)
dtype=$(sb_domain_type)

say "deps and guest"
"$here/deps.sh"
"$here/guest/build.sh"
"$here/down.sh"

say "up.sh 3 (corrald args: ${CORRALD_EXTRA_ARGS-default})"
t=$(now)
lines=$("$here/up.sh" 3)
timing[up3]=$(dt "$t" "$(now)")
echo "$lines"
[ "$(echo "$lines" | grep -c '"endpoint"')" = 3 ] || fail "up.sh 3 printed $(echo "$lines" | wc -l) host lines"
again=$("$here/up.sh" 3)
[ "$again" = "$lines" ] || fail "up.sh 3 run twice printed different lines"

say "corral cluster on the sandbox hosts"
# Bootstrap and join on each host itself, over its corrald's local socket; TLS with the admin's
# credentials for the rest.
boot=$("$corral" --socket "$(sb_state 1)/corral/corrald.sock" cluster bootstrap --name lab)
echo "$boot"
token=$(echo "$boot" | tail -n 1)
"$corral" --socket "$(sb_state 1)/corral/corrald.sock" cluster credentials -f "$SANDBOX_DIR/admin.corral" --force
export CORRAL_CREDENTIALS="$SANDBOX_DIR/admin.corral"
for n in 2 3; do
  echo "$token" | "$corral" --socket "$(sb_state "$n")/corral/corrald.sock" cluster join --peer 10.213.0.2:7001 --token-file -
done
"$corral" --endpoint 10.213.0.4:7001 cluster status
virsh -c "$H2" list --all

say "diskless 64 MiB $dtype domain: start on host1, live-migrate to host3"
xml=$(mktemp)
cat >"$xml" <<EOF
<domain type='$dtype'>
  <name>smoke-tiny</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <devices><serial type='pty'/><console type='pty'/></devices>
</domain>
EOF
virsh -c "$H1" define "$xml" >/dev/null
t=$(now); virsh -c "$H1" start smoke-tiny >/dev/null; timing[tiny_start]=$(dt "$t" "$(now)")
t=$(now)
virsh -c "$H1" migrate --live --persistent --undefinesource smoke-tiny "$H3" --migrateuri tcp://10.213.0.4
timing[tiny_migrate]=$(dt "$t" "$(now)")
[ "$(virsh -c "$H3" domstate smoke-tiny)" = running ] || fail "smoke-tiny is not running on host3"
virsh -c "$H1" dominfo smoke-tiny >/dev/null 2>&1 && fail "smoke-tiny is still defined on host1"
t=$(now); virsh -c "$H3" destroy smoke-tiny >/dev/null; timing[tiny_destroy]=$(dt "$t" "$(now)")
virsh -c "$H3" undefine smoke-tiny >/dev/null

say "busybox guest (type qemu = TCG, kernel/initrd boot) on host1"
gdir=$SANDBOX_STORAGE/guest
mkdir -p "$gdir"
cp "$here/guest/out/vmlinuz" "$here/guest/out/initrd.img" "$gdir/"
console=$SANDBOX_STORAGE/smoke-guest.console.log
cat >"$xml" <<EOF
<domain type='qemu'>
  <name>smoke-guest</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$gdir/vmlinuz</kernel>
    <initrd>$gdir/initrd.img</initrd>
    <cmdline>console=ttyS0 panic=-1</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <serial type='file'><source path='$console' append='on'/><target port='0'/></serial>
  </devices>
</domain>
EOF
virsh -c "$H1" define "$xml" >/dev/null
t=$(now); virsh -c "$H1" start smoke-guest >/dev/null
wait_for 60 "no CORRAL-GUEST-UP in $console" grep -q '^CORRAL-GUEST-UP' "$console"
timing[guest_boot]=$(dt "$t" "$(now)")
grep -a '^CORRAL-GUEST-UP' "$console" >&2
last_tick() { grep -a '^CORRAL-TICK' "$console" | tail -n 1 | tr -dc '0-9'; }
tick_over() { [ "$(last_tick)" -gt "$1" ]; }
wait_for 10 "the guest does not tick" tick_over 1

say "live-migrate the running guest host1 -> host2"
before=$(last_tick)
t=$(now)
virsh -c "$H1" migrate --live --persistent --undefinesource smoke-guest "$H2" --migrateuri tcp://10.213.0.3
timing[guest_migrate]=$(dt "$t" "$(now)")
[ "$(virsh -c "$H2" domstate smoke-guest)" = running ] || fail "smoke-guest is not running on host2"
wait_for 10 "no tick after the migration" tick_over "$((before + 2))"
echo "ticks: $before before the migration, $(last_tick) now" >&2
[ "$(grep -ac '^CORRAL-GUEST-UP' "$console")" = 1 ] || fail "the guest rebooted during the migration"

say "ACPI shutdown of the guest on host2"
t=$(now); virsh -c "$H2" shutdown smoke-guest >/dev/null
wait_for 30 "smoke-guest did not shut off after virsh shutdown" \
  bash -c "[ \"\$(virsh -c '$H2' domstate smoke-guest)\" = 'shut off' ]"
timing[guest_shutdown]=$(dt "$t" "$(now)")
grep -aq 'CORRAL-GUEST-POWEROFF' "$console" || fail "no CORRAL-GUEST-POWEROFF on the console"
virsh -c "$H2" start smoke-guest >/dev/null   # running when host2 loses power below
rm -f "$xml"

say "power loss of host2, then power on"
t=$(now); "$here/kill.sh" host2; timing[kill]=$(dt "$t" "$(now)")
[ -z "$(ip netns pids corral-host2)" ] || fail "processes left in corral-host2 after kill.sh"
pgrep -f 'guest=smoke-guest' >/dev/null && fail "the guest's QEMU survived kill.sh host2"
"$here/kill.sh" host2
virsh -c "$H2" version >/dev/null 2>&1 && fail "host2's libvirtd still answers"
t=$(now); "$here/start.sh" host2; timing[start]=$(dt "$t" "$(now)")
"$here/start.sh" host2 >/dev/null
[ "$(virsh -c "$H2" domstate smoke-guest)" = "shut off" ] || fail "smoke-guest should be defined and shut off on host2 after power loss"
wait_for 30 "host2's corrald is not reachable in the cluster again" \
  bash -c "'$corral' --endpoint 10.213.0.3:7001 cluster status | grep -q host2"
"$corral" --endpoint 10.213.0.3:7001 cluster status

say "down.sh twice"
"$here/down.sh"; "$here/down.sh"
ip link show corral-br0 >/dev/null 2>&1 && fail "bridge left after down.sh"
[ -z "$(ip netns list | grep corral-host || true)" ] || fail "netns left after down.sh"
[ ! -e "$SANDBOX_DIR" ] || fail "$SANDBOX_DIR left after down.sh"

say "timings (s)"
for k in up3 tiny_start tiny_migrate tiny_destroy guest_boot guest_migrate guest_shutdown kill start; do
  printf '  %-15s %s\n' "$k" "${timing[$k]}" >&2
done
echo "smoke: ok" >&2
