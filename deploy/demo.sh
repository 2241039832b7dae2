#!/usr/bin/env bash
# The demo behind `make demo`: a 3-node Corral cluster on this machine, each node on libvirt's
# in-process test hypervisor (test:///default), in a temp dir that is removed at the end.
# It bootstraps with a hosted engine (the cluster's own management VM), joins, creates and
# edits VMs, kills the leader with SIGKILL, and shows that a new leader took over with every VM
# intact and the engine VM restarted; shows every host's OVF store and an OVF export/import;
# gives a user a role on one VM and logs in as that user; then kills the host of an HA VM and
# shows the VM restarted elsewhere.
# Usage: deploy/demo.sh [BIN_DIR]
set -euo pipefail

bin=$(cd "${1:-target/debug}" && pwd)
corrald="$bin/corrald"
corral_bin="$bin/corral"
work=$(mktemp -d -t corral-demo-XXXXXX)
declare -A pid

cleanup() {
  for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "corral $*"; "$corral_bin" "$@"; }

in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
base=17001
while in_use $base || in_use $((base + 1)) || in_use $((base + 2)); do base=$((base + 10)); done
addr() { echo "127.0.0.1:$((base + $1 - 1))"; }

start() {
  local i=$1
  "$corrald" --name "host$i" --listen "$(addr "$i")" --data-dir "$work/host$i" \
    --libvirt-uri test:///default --storage-dir "$work/storage" --engine-score-ms 500 \
    >>"$work/host$i.log" 2>&1 &
  pid[$i]=$!
  for _ in $(seq 1 100); do in_use "$((base + i - 1))" && return; sleep 0.05; done
  echo "host$i did not start; its log:" >&2; cat "$work/host$i.log" >&2; exit 1
}

leader_id() { "$corral_bin" --endpoint "$1" -o json --stale cluster status 2>/dev/null |
  sed -n 's/.*"leader_id": *\([0-9]*\).*/\1/p'; }

step "Starting three corrald nodes in $work"
for i in 1 2 3; do start "$i"; echo "host$i listens on $(addr "$i")"; done

step "Bootstrapping the cluster on host1, over its local socket, with a hosted engine (the last line is the join token)"
mkdir -p "$work/storage"
qemu-img create -q -f qcow2 "$work/engine.qcow2" 64M
out=$(show --socket "$work/host1/corrald.sock" cluster bootstrap --name lab --engine-image "$work/engine.qcow2" \
  --engine-memory 512M --engine-vcpus 1)
echo "$out"
token=$(echo "$out" | tail -n 1)

step "The admin's credentials (client certificate, key, cluster CA): every TCP call is TLS from here on"
show --socket "$work/host1/corrald.sock" cluster credentials -f "$work/admin.corral"
export CORRAL_CREDENTIALS="$work/admin.corral"

step "Joining host2 and host3 with the token, each on its own socket (the token read from stdin)"
echo "$token" | show --socket "$work/host2/corrald.sock" cluster join --peer "$(addr 1)" --token-file -
echo "$token" | show --socket "$work/host3/corrald.sock" cluster join --peer "$(addr 1)" --token-file -
show --endpoint "$(addr 3)" cluster status
show --endpoint "$(addr 3)" cluster token list
printf '$ corral --endpoint %s vm list   # without credentials\n' "$(addr 2)"
env -u CORRAL_CREDENTIALS "$corral_bin" --endpoint "$(addr 2)" vm list || true

wait_engine() {
  for _ in $(seq 1 200); do
    "$corral_bin" --endpoint "$1" -o json engine status 2>/dev/null | grep -q '"state": *"up"' &&
      "$corral_bin" --endpoint "$1" -o json engine status 2>/dev/null | grep -q '"score": *[0-9]' && return
    sleep 0.1
  done
}

step "The hosted engine: an ordinary VM of the cluster, HA first, delete-protected"
wait_engine "$(addr 1)"
show --endpoint "$(addr 2)" engine status
show --endpoint "$(addr 2)" vm delete hosted-engine || true

step "Creating and editing VMs through different nodes"
show --endpoint "$(addr 2)" vm create web1 --memory 1G --vcpus 2 --ha --ha-priority high >/dev/null
show --endpoint "$(addr 3)" vm create db1 --memory 2G --vcpus 4 --description "primary database" >/dev/null
show --endpoint "$(addr 1)" vm edit web1 --memory 2G --description "front end" >/dev/null

step "Starting VMs: each host's agent runs what the cluster assigns to it"
show --endpoint "$(addr 3)" vm start web1 --host host2 >/dev/null
show --endpoint "$(addr 3)" vm start db1 --host host3 >/dev/null
for _ in $(seq 1 100); do
  "$corral_bin" --endpoint "$(addr 1)" vm list | grep -q powering_up || break; sleep 0.1
done
show --endpoint "$(addr 3)" vm list
show --endpoint "$(addr 2)" host list

step "Changing running VMs: vCPUs now (the host confirms), memory and OS at the next run, a floating disk"
show --endpoint "$(addr 1)" vm edit web1 --vcpus 3 >/dev/null
show --endpoint "$(addr 2)" vm edit db1 --memory 16G | grep -E "^(\$|note:)"
show --endpoint "$(addr 2)" vm edit db1 --memory 3G --os rhel_9x64 --next-run >/dev/null
show --endpoint "$(addr 3)" disk create data1 --size 256M >/dev/null
show --endpoint "$(addr 3)" vm disk attach db1 data1 --unplugged >/dev/null
show --endpoint "$(addr 3)" vm list
show --endpoint "$(addr 1)" vm show db1 --next-run

step "Snapshots: two of db1 while it runs (its disk data1), as a tree with where it is now"
show --endpoint "$(addr 1)" vm snapshot create db1 --description "before the upgrade"
show --endpoint "$(addr 2)" vm snapshot create db1 --description "after the upgrade" --disks data1
show --endpoint "$(addr 3)" vm snapshot list db1

step "The library: an offering, a template of a down VM, and a thin VM made from both"
show --endpoint "$(addr 1)" offering create small --vcpus 1 --memory 256M >/dev/null
show --endpoint "$(addr 2)" vm create base1 --memory 256M --disk 64M >/dev/null
show --endpoint "$(addr 3)" template create gold --from-vm base1 --description "a golden image" >/dev/null
show --endpoint "$(addr 1)" vm create app1 --template gold --thin --offering small | grep -E "^(name|template|offering|memory|vcpus):"
show --endpoint "$(addr 2)" template list

old=$(leader_id "$(addr 1)")
step "Killing the leader (node $old, host$old) with SIGKILL"
kill -9 "${pid[$old]}"; wait "${pid[$old]}" 2>/dev/null || true; unset "pid[$old]"
others=$(for i in 1 2 3; do [ "$i" = "$old" ] || printf '%s,' "$(addr "$i")"; done); others=${others%,}
survivor=${others%%,*}
new=""
for _ in $(seq 1 100); do
  new=$(leader_id "$survivor")
  [ -n "$new" ] && [ "$new" != 0 ] && [ "$new" != "$old" ] && break
  sleep 0.1
done
[ -n "$new" ] && [ "$new" != "$old" ] || { echo "no new leader was elected" >&2; exit 1; }
show --endpoint "$others" cluster status

step "The data is intact, the VMs on host2 and host3 kept running, and writes go on"
show --endpoint "$others" vm list
wait_engine "$others"
for _ in $(seq 1 200); do
  "$corral_bin" --endpoint "$others" -o json vm show hosted-engine 2>/dev/null | grep -q '"host": *"host'"$old"'"' ||
    break
  sleep 0.1
done
wait_engine "$others"
echo "The engine VM ran on the dead host$old; HA restarted it first, on the best-scored host:"
show --endpoint "$others" engine status
show --endpoint "$others" vm create web2 --memory 512M --vcpus 1 >/dev/null
show --endpoint "$others" vm show web2

step "host$old comes back and catches up from the log"
start "$old"
for _ in $(seq 1 100); do
  "$corral_bin" --endpoint "$(addr "$old")" --stale vm show web2 >/dev/null 2>&1 && break; sleep 0.1
done
show --endpoint "$(addr "$old")" --stale vm list
show --endpoint "$(addr "$old")" events

step "Every host keeps every VM's OVF document, readable with no quorum; export and import"
show --endpoint "$(addr 3)" ovf list --local
show --endpoint "$others" vm export web1 -f "$work/web1.ovf"
show --endpoint "$others" vm import "$work/web1.ovf" --name web1-copy --clone >/dev/null
show --endpoint "$others" vm show web1-copy

step "Users and roles: alice gets UserRole on web2, logs in with the cluster's CA, and sees only web2"
sock="$work/host1/corrald.sock"
printf 'alice-demo-password\n' >"$work/alice.pw"
show --socket "$sock" user create alice --password-file "$work/alice.pw" >/dev/null
show --socket "$sock" permission add --user alice --role UserRole --on vm:web2
show --socket "$sock" cluster ca -f "$work/ca.pem"
as_alice() { printf '$ (alice) corral %s\n' "$*"; env -u CORRAL_CREDENTIALS XDG_CONFIG_HOME="$work/alice" "$corral_bin" "$@"; }
as_alice login --endpoint "$others" --user alice --password-file "$work/alice.pw" --ca-file "$work/ca.pem"
as_alice vm list
as_alice vm start web2 >/dev/null
as_alice vm delete web2 || true
show --endpoint "$others" events --user alice

step "High availability: killing host2, which runs the HA VM web1"
kill -9 "${pid[2]}"; wait "${pid[2]}" 2>/dev/null || true; unset "pid[2]"
alive="$(addr 1),$(addr 3)"
t0=$(date +%s%N)
for _ in $(seq 1 300); do
  "$corral_bin" --endpoint "$alive" -o json vm show web1 2>/dev/null | grep -q '"status": *"up"' &&
    ! "$corral_bin" --endpoint "$alive" -o json vm show web1 2>/dev/null | grep -q '"host": *"host2"' && break
  sleep 0.1
done
echo "web1 is up again after $(( ($(date +%s%N) - t0) / 1000000 )) ms (its host's 3 s lease had to end first)"
show --endpoint "$alive" vm list
show --endpoint "$alive" host list
"$corral_bin" --endpoint "$alive" events | tail -n 8

step "Done; stopping the nodes and removing $work"
