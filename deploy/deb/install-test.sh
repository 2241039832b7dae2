#!/usr/bin/env bash
# Installs the Corral package in a clean Debian 12 root and checks it there (under
# `make check-long`; results in RELIABILITY.md): deploy/deb/install-test.sh BINDIR|DEB
# Makes the root with `debootstrap --variant=minbase bookworm` (installing debootstrap if
# missing; the root is cached in $CORRAL_DEBOOTSTRAP_CACHE, default /var/tmp/corral-bookworm.tar,
# and unpacked afresh for every run), installs the .deb with apt-get so that its Depends are
# resolved from Debian's archive, then checks the files, `systemd-analyze verify` of the unit,
# the conffile, and `corral --version`. Needs root (chroot).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 BINDIR|DEB" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "install-test: needs root (debootstrap, chroot)" >&2; exit 1; }
mirror=${CORRAL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${CORRAL_DEBOOTSTRAP_CACHE:-/var/tmp/corral-bookworm.tar}

work=$(mktemp -d /var/tmp/corral-install-test.XXXXXX)
root="$work/root"
cleanup() {
  for m in dev/pts dev proc sys; do umount -l "$root/$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if [ -f "$1" ]; then
  deb=$1
else
  deb=$(CORRAL_DEB_COMPRESSION=gzip bash "$here/build.sh" "$1" "$work/deb")
fi
echo "install-test: package $deb"

if [ ! -f "$cache" ]; then
  if ! command -v debootstrap >/dev/null; then
    echo "install-test: installing debootstrap" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  fi
  echo "install-test: debootstrap --variant=minbase bookworm (once; cached in $cache)"
  debootstrap --variant=minbase bookworm "$work/fresh" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  tar -C "$work/fresh" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
  rm -rf "$work/fresh"
fi
mkdir "$root"
tar -C "$root" -xf "$cache"
for m in proc sys dev dev/pts; do mount --bind "/$m" "$root/$m"; done
cp /etc/resolv.conf "$root/etc/resolv.conf"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }

cp "$deb" "$root/tmp/corral.deb"
in_root apt-get update -qq
echo "install-test: apt-get install /tmp/corral.deb"
in_root apt-get install -y -qq --no-install-recommends /tmp/corral.deb >"$work/apt.log" 2>&1 \
  || { tail -30 "$work/apt.log" >&2; exit 1; }
# minbase has no systemd (the unit is checked with the root's own systemd-analyze) and no man,
# which verify runs for the unit's Documentation= pages.
in_root apt-get install -y -qq --no-install-recommends systemd man-db >>"$work/apt.log" 2>&1 \
  || { tail -30 "$work/apt.log" >&2; exit 1; }

fail() { echo "install-test: FAILED: $*" >&2; exit 1; }
for f in /usr/bin/corral /usr/bin/corrald /lib/systemd/system/corrald.service /etc/corral/corrald.toml \
  /usr/share/bash-completion/completions/corral /usr/share/zsh/vendor-completions/_corral \
  /usr/share/fish/vendor_completions.d/corral.fish /usr/share/man/man1/corral.1.gz \
  /usr/share/man/man1/corral-vm-migrate.1.gz /usr/share/man/man8/corrald.8.gz; do
  [ -e "$root$f" ] || fail "$f is missing"
done
[ "$(stat -c %a "$root/var/lib/corral")" = 711 ] || fail "/var/lib/corral is not mode 0711"
in_root dpkg-query -W -f='${Conffiles}\n' corral | grep -q /etc/corral/corrald.toml || fail "corrald.toml is not a conffile"
for dep in libvirt0 qemu-utils genisoimage; do
  in_root dpkg-query -W -f='${Status}\n' "$dep" | grep -q "install ok installed" || fail "$dep was not installed"
done
echo "install-test: systemd-analyze verify /lib/systemd/system/corrald.service"
in_root systemd-analyze verify /lib/systemd/system/corrald.service || fail "systemd-analyze verify"
version=$(in_root corral --version) || fail "corral --version"
in_root corrald --version >/dev/null || fail "corrald --version (its libraries)"
echo "install-test: $version"
echo "install-test: ok"
