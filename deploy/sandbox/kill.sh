#!/usr/bin/env bash
# kill.sh hostN: power loss of a sandbox host: SIGKILL to its PID namespace's PID 1, so its
# libvirtd, virtlogd, every QEMU and corrald die at once. Its state dir, network namespace and
# veth are kept, so start.sh can power it on again. Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[ $# = 1 ] || sb_die "usage: $0 hostN"
n=$(sb_host_num "$1")
sb_need_root
[ -d "$(sb_state "$n")" ] || ip netns list | grep -q "^$(sb_netns "$n")\b" ||
  sb_die "no sandbox host$n here"
sb_host_kill "$n"
