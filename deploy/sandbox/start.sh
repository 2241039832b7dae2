#!/usr/bin/env bash
# start.sh hostN: powers a sandbox host back on after kill.sh (same namespaces setup, address,
# host_uuid, libvirt config and corrald data dir). Prints the host's JSON line like up.sh.
# Idempotent: a running host is left alone (its line is still printed).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[ $# = 1 ] || sb_die "usage: $0 hostN"
n=$(sb_host_num "$1")
sb_need_root
[ -d "$(sb_state "$n")/etc" ] || sb_die "host$n was never made here (no $(sb_state "$n")); use up.sh"
sb_host_start "$n"
sb_host_wait "$n"
