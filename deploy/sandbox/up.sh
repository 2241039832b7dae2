#!/usr/bin/env bash
# up.sh N: makes sandbox hosts host1..hostN on this machine (each its own network, mount, PID and
# UTS namespaces running virtlogd, libvirtd -l and corrald) on bridge corral-br0, 10.213.0.0/24.
# Prints one JSON line per host on stdout once its libvirtd answers and corrald accepts; idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[ $# = 1 ] || sb_die "usage: $0 N   (makes host1..hostN)"
[[ $1 =~ ^[1-9][0-9]*$ ]] && [ "$1" -le 253 ] || sb_die "N must be 1..253, got '$1'"
sb_need_root
t0=$SECONDS
for i in $(seq 1 "$1"); do sb_host_state_init "$i"; done
for i in $(seq 1 "$1"); do sb_host_start "$i"; done
for i in $(seq 1 "$1"); do sb_host_wait "$i"; done
sb_log "$1 host(s) up in $((SECONDS - t0)) s; state in $SANDBOX_DIR"
