#!/usr/bin/env bash
# partition.sh hostN cut|heal: a network partition of one sandbox host. `cut` sets the host's
# root-side veth (corral-vN) down, so it reaches no other host and nothing reaches it; `heal`
# sets it up again. Nothing else changes: the host's processes keep running. Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[ $# = 2 ] || sb_die "usage: $0 hostN cut|heal"
n=$(sb_host_num "$1")
sb_need_root
veth=$(sb_veth "$n")
ip link show "$veth" >/dev/null 2>&1 || sb_die "host$n has no veth $veth (no such sandbox host here)"
case $2 in
  cut) ip link set "$veth" down; sb_log "host$n: partitioned ($veth down)" ;;
  heal) ip link set "$veth" up; sb_log "host$n: healed ($veth up)" ;;
  *) sb_die "usage: $0 hostN cut|heal (got '$2')" ;;
esac
