#!/usr/bin/env bash
# down.sh: removes the whole sandbox: every host's processes, its network namespace and veth,
# the bridge corral-br0, /etc/netns/corral-host*, and the state dir (incl. shared storage).
# Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
sb_need_root
nums=$( { sb_known_hosts; ip netns list | awk '{print $1}' | sed -n 's/^corral-host\([0-9][0-9]*\)$/\1/p'; } | sort -nu)
for n in $nums; do
  sb_host_kill "$n"
  ns=$(sb_netns "$n")
  if ip netns list | awk '{print $1}' | grep -qxF "$ns"; then ip netns del "$ns"; fi
  ip link del "$(sb_veth "$n")" 2>/dev/null || true
  rm -rf "/etc/netns/$ns"
done
for l in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E '^corral-v[0-9]+$' || true); do
  ip link del "$l" 2>/dev/null || true
done
rmdir /etc/netns 2>/dev/null || true   # only if empty
if ip link show "$SANDBOX_BRIDGE" >/dev/null 2>&1; then ip link del "$SANDBOX_BRIDGE"; fi
case $SANDBOX_DIR in /|/var|/var/tmp|/tmp|"") sb_die "refusing to remove '$SANDBOX_DIR'";; esac
rm -rf "$SANDBOX_DIR"
sb_log "sandbox removed"
