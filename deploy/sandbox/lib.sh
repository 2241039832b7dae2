# shellcheck shell=bash
# Shared code of the namespace sandbox (sourced by up.sh, start.sh, kill.sh, down.sh): one
# "host" = network + mount + PID + UTS namespaces running virtlogd, libvirtd -l and corrald.
# host_init runs *inside* a host's namespaces (as the child of its PID 1); the rest runs in the root namespace.

SANDBOX_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SANDBOX_REPO=$(cd "$SANDBOX_LIB_DIR/../.." && pwd)
SANDBOX_DIR=${CORRAL_SANDBOX_DIR:-/var/tmp/corral-sandbox}
SANDBOX_STORAGE=$SANDBOX_DIR/storage
SANDBOX_BRIDGE=corral-br0
SANDBOX_NET=10.213.0          # the only range used: 10.213.0.0/24 on corral-br0
SANDBOX_BRIDGE_IP=$SANDBOX_NET.1
SANDBOX_CORRALD_PORT=7001
SANDBOX_LIBVIRT_PORT=16509
SANDBOX_WAIT=${SANDBOX_WAIT:-60}   # seconds to wait for a host's libvirtd / corrald
SANDBOX_WATCHDOG_MS=${SANDBOX_WATCHDOG_MS:-2000}   # the host watchdog's timeout; 0 = no watchdog

sb_log() { echo "sandbox: $*" >&2; }
sb_die() { echo "sandbox: ERROR: $*" >&2; exit 1; }

sb_need_root() {
  [ "$(id -u)" = 0 ] || sb_die "must run as root (it creates network, mount and PID namespaces, a bridge and veths)"
  # One sandbox script at a time.
  exec 9>/run/corral-sandbox.lock
  flock -w 300 9 || sb_die "another sandbox script holds /run/corral-sandbox.lock"
  local c
  for c in ip unshare nsenter libvirtd virtlogd virsh; do
    command -v "$c" >/dev/null || sb_die "'$c' not found; run deploy/sandbox/deps.sh first"
  done
}

# "host3" or "3" -> 3
sb_host_num() {
  local n=${1#host}
  [[ $n =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 253 ] || sb_die "bad host name '$1' (expected host1..host253)"
  echo "$n"
}
sb_ip() { echo "$SANDBOX_NET.$(($1 + 1))"; }
sb_netns() { echo "corral-host$1"; }
sb_veth() { echo "corral-v$1"; }   # root-side end; the netns end is eth0
sb_state() { echo "$SANDBOX_DIR/host$1"; }
sb_uri() { echo "qemu+tcp://$(sb_ip "$1")/system"; }

# Hosts that have a state dir, as numbers, sorted.
sb_known_hosts() {
  local d
  for d in "$SANDBOX_DIR"/host*; do
    [ -d "$d" ] || continue
    d=${d##*/host}
    [[ $d =~ ^[0-9]+$ ]] && echo "$d"
  done | sort -n
}

# kvm when /dev/kvm can be opened, else qemu (TCG); SANDBOX_DOMAIN_TYPE overrides.
sb_domain_type() {
  if [ -n "${SANDBOX_DOMAIN_TYPE:-}" ]; then echo "$SANDBOX_DOMAIN_TYPE"
  elif [ -c /dev/kvm ] && (exec 3<>/dev/kvm) 2>/dev/null; then echo kvm
  else echo qemu; fi
}

sb_bridge_up() {
  if ! ip link show "$SANDBOX_BRIDGE" >/dev/null 2>&1; then
    sb_log "creating bridge $SANDBOX_BRIDGE ($SANDBOX_BRIDGE_IP/24)"
    ip link add "$SANDBOX_BRIDGE" type bridge stp_state 0 forward_delay 0
  fi
  ip addr replace "$SANDBOX_BRIDGE_IP/24" dev "$SANDBOX_BRIDGE"
  sb_no_ipv6 "$SANDBOX_BRIDGE"
  ip link set "$SANDBOX_BRIDGE" up
}

# No IPv6 (not even link-local) on the sandbox's links: only 10.213.0.0/24 and loopback are used.
sb_no_ipv6() { # sb_no_ipv6 IFACE [NETNS]
  local run=()
  [ -z "${2:-}" ] || run=(ip netns exec "$2")
  "${run[@]}" sh -c "[ ! -e /proc/sys/net/ipv6/conf/$1 ] || echo 1 >/proc/sys/net/ipv6/conf/$1/disable_ipv6"
}

# Network namespace + veth for host N; idempotent. Only the connected 10.213.0.0/24 route, no default route.
sb_host_net_up() {
  local n=$1 ns veth
  ns=$(sb_netns "$n"); veth=$(sb_veth "$n")
  ip netns list | awk '{print $1}' | grep -qxF "$ns" || ip netns add "$ns"
  if ! ip link show "$veth" >/dev/null 2>&1; then
    ip -n "$ns" link del eth0 2>/dev/null || true
    ip link add "$veth" type veth peer name eth0 netns "$ns"
  fi
  sb_no_ipv6 "$veth"
  sb_no_ipv6 eth0 "$ns"
  ip link set "$veth" master "$SANDBOX_BRIDGE" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr replace "$(sb_ip "$n")/24" dev eth0
  ip -n "$ns" link set eth0 up
}

# /etc/netns/corral-hostN/{hosts,resolv.conf} for every known host (ip netns exec binds them over /etc).
# Rewritten in place so the files bind-mounted into running hosts see the new names too.
sb_write_name_files() {
  local hosts i n
  hosts=$(printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n%s\tcorral-bridge\n' "$SANDBOX_BRIDGE_IP"
          for i in $(sb_known_hosts); do printf '%s\thost%s\n' "$(sb_ip "$i")" "$i"; done)
  for n in $(sb_known_hosts); do
    mkdir -p "/etc/netns/$(sb_netns "$n")"
    printf '%s\n' "$hosts" >"/etc/netns/$(sb_netns "$n")/hosts"
    : >"/etc/netns/$(sb_netns "$n")/resolv.conf"
  done
}

# Per-host state dir: the dirs bind-mounted over libvirt's, a stable host_uuid, the config.
sb_host_state_init() {
  local n=$1 s ip uuid
  s=$(sb_state "$n"); ip=$(sb_ip "$n")
  mkdir -p "$s"/{run,lib,log,cache,corral} "$SANDBOX_STORAGE"
  mkdir -p /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt   # mount points
  if [ ! -d "$s/etc" ]; then
    cp -a /etc/libvirt "$s/etc.tmp"
    rm -rf "$s/etc.tmp/qemu/networks/autostart"   # never bring up a NAT network of the system config
    mv "$s/etc.tmp" "$s/etc"
  fi
  [ -s "$s/host_uuid" ] || cat /proc/sys/kernel/random/uuid >"$s/host_uuid"
  uuid=$(cat "$s/host_uuid")
  cat >"$s/etc/libvirtd.conf" <<EOF
# written by deploy/sandbox/lib.sh for sandbox host$n
listen_tls = 0
listen_tcp = 1
listen_addr = "$ip"
tcp_port = "$SANDBOX_LIBVIRT_PORT"
auth_tcp = "none"
auth_unix_ro = "none"
auth_unix_rw = "none"
host_uuid = "$uuid"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  cat >"$s/etc/virtlogd.conf" <<EOF
log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
EOF
  # cgroups off: every host shares this machine's cgroup tree, and two hosts would both name
  # a domain's cgroup machine/qemu-1-NAME (e.g. during a migration).
  cat >"$s/etc/qemu.conf" <<EOF
# written by deploy/sandbox/lib.sh for sandbox host$n
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
migration_host = "$ip"
migration_address = "$ip"
EOF
}

# Root-namespace PID of host N's PID 1, if that host is running.
sb_host_pid1() {
  local n=$1 f pid start
  f=$(sb_state "$n")/pid1
  [ -s "$f" ] || return 1
  read -r pid start <"$f"
  [ -d "/proc/$pid" ] || return 1
  [ "$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null)" = "$start" ] || return 1
  grep -qE "^NSpid:[[:space:]]+${pid}[[:space:]]+1\$" "/proc/$pid/status" 2>/dev/null || return 1
  echo "$pid"
}

# Launch host N's namespaces in the background and record its PID 1. Power-on semantics:
# /run/libvirt starts empty (it is a tmpfs on a real host); everything else is kept.
sb_host_launch() {
  local n=$1 s ns upid pid1 i corrald extra
  s=$(sb_state "$n"); ns=$(sb_netns "$n")
  corrald=${CORRALD:-$SANDBOX_REPO/target/debug/corrald}
  [ -x "$corrald" ] || sb_die "corrald binary '$corrald' not found (build it: cargo build -p corral-node, or set CORRALD)"
  corrald=$(cd "$(dirname "$corrald")" && pwd)/$(basename "$corrald")
  extra=${CORRALD_EXTRA_ARGS---storage-dir $SANDBOX_STORAGE --domain-type $(sb_domain_type)}
  # Flags of this host alone (CORRALD_EXTRA_ARGS_HOST3="--engine-gateway ..."), on top.
  local own="CORRALD_EXTRA_ARGS_HOST$n"
  extra="$extra ${!own:-}"
  find "$s/run" -mindepth 1 -delete
  rm -f "$s/pid1" "$s/corrald.exit"
  local init=(bash -c 'source "$1"; sb_host_init "$2"' host-init "$SANDBOX_LIB_DIR/lib.sh" "$n")
  local tini=()
  if [ "${SANDBOX_NO_TINI:-0}" != 1 ] && command -v tini >/dev/null; then tini=("$(command -v tini)" --); fi
  sb_log "host$n: starting ($(sb_ip "$n"), pid 1 = ${tini[0]:-bash loop}, corrald args: ${extra:-none})"
  echo "=== power on $(date -Is)" >>"$s/init.log"
  SANDBOX_HOST_CORRALD=$corrald SANDBOX_HOST_CORRALD_ARGS=$extra \
    setsid ip netns exec "$ns" unshare -m -p -f -u --propagation private --mount-proc \
    "${tini[@]}" "${init[@]}" </dev/null >>"$s/init.log" 2>&1 9>&- &
  upid=$!
  for i in $(seq 1 100); do
    pid1=$(awk '{print $1}' "/proc/$upid/task/$upid/children" 2>/dev/null || true)
    [ -n "$pid1" ] && grep -qE "^NSpid:.*[[:space:]]1\$" "/proc/$pid1/status" 2>/dev/null && break
    pid1=""; sleep 0.05
  done
  [ -n "$pid1" ] || sb_die "host$n: its PID namespace did not start; see $s/init.log"
  echo "$pid1 $(awk '{print $22}' "/proc/$pid1/stat")" >"$s/pid1"
}

# Wait (bounded) until host N's libvirtd answers over TCP and its corrald accepts connections,
# from the root namespace; then print its JSON line on stdout.
sb_host_wait() {
  local n=$1 s ip deadline
  s=$(sb_state "$n"); ip=$(sb_ip "$n")
  deadline=$((SECONDS + SANDBOX_WAIT))
  until timeout 5 virsh -c "$(sb_uri "$n")" version >/dev/null 2>&1; do
    sb_host_pid1 "$n" >/dev/null || { tail -n 20 "$s/init.log" >&2; sb_die "host$n died while starting; see $s/init.log"; }
    [ $SECONDS -lt "$deadline" ] || { tail -n 20 "$s/log/libvirtd.log" "$s/init.log" >&2 2>/dev/null
      sb_die "host$n: libvirtd did not answer on $(sb_uri "$n") within ${SANDBOX_WAIT}s"; }
    sleep 0.2
  done
  until timeout 2 bash -c "exec 3<>/dev/tcp/$ip/$SANDBOX_CORRALD_PORT" 2>/dev/null; do
    if [ -e "$s/corrald.exit" ]; then
      tail -n 20 "$s/corrald.log" >&2
      grep -q "unexpected argument" "$s/corrald.log" &&
        sb_log "hint: this corrald lacks a flag of CORRALD_EXTRA_ARGS; try CORRALD_EXTRA_ARGS=\"\""
      sb_die "host$n: corrald exited (status $(cat "$s/corrald.exit")); see $s/corrald.log"
    fi
    sb_host_pid1 "$n" >/dev/null || sb_die "host$n died while starting; see $s/init.log"
    [ $SECONDS -lt "$deadline" ] || { tail -n 20 "$s/corrald.log" >&2
      sb_die "host$n: corrald does not accept on $ip:$SANDBOX_CORRALD_PORT within ${SANDBOX_WAIT}s"; }
    sleep 0.2
  done
  printf '{"name":"host%s","endpoint":"%s:%s","libvirt_uri":"%s","socket":"%s"}\n' "$n" "$ip" "$SANDBOX_CORRALD_PORT" \
    "$(sb_uri "$n")" "$s/corral/corrald.sock"
}

# Everything to power on host N (network, names, state, processes); prints its JSON line.
sb_host_start() {
  local n=$1
  sb_bridge_up
  sb_host_state_init "$n"
  sb_host_net_up "$n"
  sb_write_name_files
  if sb_host_pid1 "$n" >/dev/null && [ -e "$(sb_state "$n")/corrald.exit" ]; then
    sb_log "host$n: running but its corrald had exited; power-cycling it"
    sb_host_kill "$n"
  fi
  if sb_host_pid1 "$n" >/dev/null; then
    sb_log "host$n: already running"
  else
    sb_host_launch "$n"
  fi
}

# Power loss: SIGKILL of the PID namespace's PID 1 kills every process of the host at once.
sb_host_kill() {
  local n=$1 ns pid1 i
  ns=$(sb_netns "$n")
  if pid1=$(sb_host_pid1 "$n"); then
    sb_log "host$n: SIGKILL to its PID 1 ($pid1)"
    kill -9 "$pid1"
  else
    sb_log "host$n: not running"
  fi
  rm -f "$(sb_state "$n")/pid1"
  # Wait until no process is left in the host's network namespace (bounded).
  ip netns list | awk '{print $1}' | grep -qxF "$ns" || return 0
  for i in $(seq 1 150); do
    [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  local left; left=$(ip netns pids "$ns" | tr '\n' ' ')
  sb_log "host$n: processes still in $ns after PID 1 died: $left; killing them"
  # shellcheck disable=SC2086
  kill -9 $left 2>/dev/null || true
  sleep 0.5
  [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] || sb_die "host$n: could not kill $left"
}

# ---- inside the host's namespaces (net, mount, PID, UTS), as PID 1 (no tini) or tini's child ----
sb_host_init() {
  set -u
  local n=$1 s ip d i
  s=$(sb_state "$n"); ip=$(sb_ip "$n")
  echo "host$n init: pid $$ in its PID namespace"
  # The watchdog's power-off. A process of this PID namespace cannot SIGKILL its PID 1, but it
  # can signal a handler: this shell exits, then so does PID 1 (this shell, or tini when this
  # is its child), and the kernel SIGKILLs every process left in the namespace, as kill.sh does.
  trap 'echo "host$n init: SIGUSR1 from the watchdog; powering off"; exit 137' USR1
  hostname "host$n"
  for d in run:/run/libvirt lib:/var/lib/libvirt etc:/etc/libvirt log:/var/log/libvirt cache:/var/cache/libvirt; do
    mount --bind "$s/${d%%:*}" "${d#*:}" || { echo "bind mount of $d failed"; exit 1; }
  done
  virtlogd -d -p /run/libvirt/virtlogd.pid || { echo "virtlogd failed"; exit 1; }
  libvirtd -l -p /run/libvirt/libvirtd.pid >>"$s/libvirtd.stderr" 2>&1 &
  for i in $(seq 1 300); do
    virsh -c qemu:///system version >/dev/null 2>&1 && break
    sleep 0.2
  done
  local args=()
  read -ra args <<<"${SANDBOX_HOST_CORRALD_ARGS:-}"
  if [ "$SANDBOX_WATCHDOG_MS" != 0 ]; then
    sb_watchdog_start "$n" && args+=(--watchdog "$s/watchdog")
  fi
  echo "host$n init: starting corrald ${args[*]}"
  ( "$SANDBOX_HOST_CORRALD" --name "host$n" --listen "$ip:$SANDBOX_CORRALD_PORT" --data-dir "$s/corral" \
      --libvirt-uri "qemu+tcp://$ip/system" "${args[@]}" </dev/null >>"$s/corrald.log" 2>&1
    echo $? >"$s/corrald.exit" ) &
  # Reap every orphan (QEMU daemonizes, so its processes end up here), forever. Both waits are
  # the builtin, which the watchdog's SIGUSR1 interrupts at once (a foreground sleep would
  # delay the power-off by up to a second).
  while true; do wait; sleep 1 & wait $!; done
}

# Starts host N's watchdog (inside the host's namespaces, from sb_host_init) and waits until it
# reads its FIFO. Fails, so that corrald runs without --watchdog, when corrald lacks the flag.
sb_watchdog_start() {
  local n=$1 s i
  s=$(sb_state "$n")
  if ! "$SANDBOX_HOST_CORRALD" --help 2>/dev/null | grep -q -- '--watchdog'; then
    echo "host$n init: this corrald has no --watchdog; the host runs without a watchdog"
    return 1
  fi
  rm -f "$s/watchdog"
  bash -c 'source "$1"; sb_watchdog "$2" "$3"' corral-watchdog "$SANDBOX_LIB_DIR/lib.sh" "$n" "$$" \
    </dev/null >>"$s/watchdog.log" 2>&1 &
  for i in $(seq 1 100); do
    [ -p "$s/watchdog" ] && return 0
    sleep 0.05
  done
  echo "host$n init: the watchdog did not start; see $s/watchdog.log"
  exit 1
}

# The sandbox host's /dev/watchdog: sb_watchdog N INIT_PID reads the FIFO $state/watchdog. The
# first byte arms it and any byte feeds it; 'V' disarms it (Linux's magic close) until the next
# byte. Armed and not fed for SANDBOX_WATCHDOG_MS, it powers the host off: SIGUSR1 to host init
# (INIT_PID), whose trap exits, so the kernel kills the whole PID namespace at once.
sb_watchdog() {
  set -u
  local n=$1 init_pid=$2 fifo ms timeout byte armed=0 status
  fifo=$(sb_state "$n")/watchdog; ms=$SANDBOX_WATCHDOG_MS
  timeout=$((ms / 1000)).$(printf '%03d' $((ms % 1000)))
  rm -f "$fifo.new"
  mkfifo -m 0600 "$fifo.new"
  # Read-write: the FIFO always has a writer, so a read never returns EOF (no busy loop when
  # corrald closes or dies), and corrald's non-blocking open always finds a reader.
  exec 3<>"$fifo.new"
  mv -f "$fifo.new" "$fifo"   # the name appears once it is read: sb_watchdog_start waits for it
  sb_watchdog_log "ready on $fifo (timeout $ms ms), not armed"
  while true; do
    status=0
    # One byte, any byte: with NUL as the delimiter a NUL byte reads as "" (bash drops NULs
    # otherwise, and a feeder writing "\0", as many do, would never feed).
    if [ $armed = 0 ]; then
      IFS= read -r -n 1 -d '' -u 3 byte || status=$?
    else
      IFS= read -r -n 1 -d '' -u 3 -t "$timeout" byte || status=$?
    fi
    if [ $status != 0 ]; then
      # Over 128 is the timeout. Any other failure while armed fences too: a watchdog that
      # cannot watch must not leave the host unguarded.
      [ $armed = 1 ] || { sb_watchdog_log "cannot read $fifo (status $status); exiting"; exit 1; }
      [ "$status" -gt 128 ] || sb_watchdog_log "cannot read $fifo (status $status)"
      sb_watchdog_log "not fed for $ms ms; powering host $n off"
      kill -USR1 "$init_pid"
      exit 0
    fi
    if [ "$byte" = V ]; then
      [ $armed = 0 ] || sb_watchdog_log "magic close: disarmed"
      armed=0
    elif [ $armed = 0 ]; then
      armed=1
      sb_watchdog_log "armed"
    fi
  done
}

sb_watchdog_log() { echo "$(date +%FT%T.%3N) watchdog: $*"; }
