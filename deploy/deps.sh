#!/usr/bin/env bash
# Installs the Debian packages that building and testing Corral need, if they are missing:
# libvirt's client library and headers (the `virt` crate links against them; its
# `test:///default` driver is the in-process hypervisor the tests use), pkg-config, qemu-img, ping,
# iptables and genisoimage; systemd-analyze, dpkg-deb and man for the package test; Node.js and
# npm (the web console is built with them) and Debian's chromium (its browser tests drive it
# headless).
# Safe to run again: it does nothing when everything is there.
set -euo pipefail

need=()
pkg-config --exists libvirt 2>/dev/null || need+=(libvirt-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v virsh >/dev/null || need+=(libvirt-clients)
command -v cc >/dev/null || need+=(gcc)
# Disk images are made with qemu-img (any version; the machine image ships a newer one).
command -v qemu-img >/dev/null || need+=(qemu-utils)
# The hosted engine's gateway check pings.
command -v ping >/dev/null || need+=(iputils-ping)
# The fault-schedule harness (corral-faults, tests/tests/faults.rs) partitions nodes with it.
command -v iptables >/dev/null || need+=(iptables)
# Cloud-init seeds (NoCloud ISOs labelled cidata) are made with it on the host that starts a VM.
command -v genisoimage >/dev/null || need+=(genisoimage)
# The package test (tests/tests/package.rs) checks the unit with systemd-analyze and builds the
# .deb with dpkg-deb; man-db renders its man pages.
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v dpkg-deb >/dev/null || need+=(dpkg)
command -v man >/dev/null || need+=(man-db)
# The web console (web/) is built with Vite, which needs Node.js 20.19 or newer.
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
# Its browser tests (web/e2e) run Debian's chromium headless through playwright-core.
[ -x /usr/bin/chromium ] || need+=(chromium)

if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "deps: the web console needs Node.js 20.19 or newer, this is $(node --version);" \
    "Debian 13 has it, Debian 12 has it from NodeSource (https://github.com/nodesource/distributions)" >&2
fi

# The REST API's OpenAPI document is checked by schemathesis (PyPI), in a venv of its own under
# target/ (tests/tests/schemathesis.rs finds it there), pinned.
SCHEMATHESIS=schemathesis==4.32.5
venv=target/st-venv
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version ${SCHEMATHESIS#*==}" ]; then
  echo "deps: installing $SCHEMATHESIS into $venv" >&2
  python3 -m venv "$venv" 2>/dev/null || {
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install -q "$SCHEMATHESIS"
fi

if ! command -v cargo >/dev/null; then
  echo "deps: cargo is missing; install Rust (https://rustup.rs) and run again" >&2
  exit 1
fi
