#!/usr/bin/env bash
# build.sh OUT_DIR CORRALD_BIN: builds the power-loss test's guest (see tests/src/bin/corral-powerloss.rs).
#
#   OUT_DIR/vmlinuz     the Debian cloud kernel (apt-get download linux-image-*-cloud-amd64, dpkg-deb -x)
#   OUT_DIR/initrd.img  busybox-static, the virtio_pci/virtio_blk/virtio_net modules (ext4 and crc32c
#                       are built into this kernel; checked below), CORRALD_BIN (its symbols
#                       stripped, the code unchanged) with every shared library ldd lists, and an
#                       /init that brings up eth0 as 10.0.2.15/24 (QEMU user networking), mounts
#                       /dev/vda (ext4) at /data and runs corrald on 0.0.0.0:7001, logging to ttyS0.
#   OUT_DIR/disk.img    a 512 MiB ext4 image, made with mkfs.ext4 only when it does not exist yet.
#
# Kernel command line words the /init reads:
#   corral.fsync=true|false   passed on as `corrald --fsync ...` (default: corrald's own default, on)
#   corral.commit=SECONDS     ext4's journal commit interval for /data (default: ext4's own, 5 s)
#   corral.log=FILTER         RUST_LOG for corrald (default: info,openraft=warn)
#   corral.args=A,B,C         more corrald arguments, commas for spaces
# Serial console markers: CORRAL-PL-DATA (mounted), CORRAL-PL-START (corrald started),
# CORRAL-PL-EXIT rc=N (corrald exited; the guest then powers off), CORRAL-PL-FAIL (setup failed).
#
# Installs what it needs (qemu-system-x86, busybox-static, cpio, e2fsprogs) where missing, running
# apt-get update at most once. Skips the build when OUT_DIR is up to date (FORCE=1 rebuilds).
# The downloaded kernel package is kept in OUT_DIR/cache/ and used again.
set -euo pipefail

log() { echo "powerloss/build: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ $# -eq 2 ] || die "usage: $0 OUT_DIR CORRALD_BIN"
mkdir -p "$1"
out=$(cd "$1" && pwd)
corrald=$(readlink -f "$2")
[ -x "$corrald" ] || die "$2 is not an executable"

# ---- deps ---------------------------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
installed_version() { # the installed version of $1, or nothing
  dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null |
    awk '$1=="install" && $3=="installed" {print $4}' || true
}
updated=0
apt_update() { [ $updated = 1 ] || { log "apt-get update"; apt-get update -qq; updated=1; }; }
deps() {
  local need=() p sys_ver utils_ver rest
  for p in qemu-system-x86 busybox-static cpio e2fsprogs binutils; do
    [ -n "$(installed_version "$p")" ] || need+=("$p")
  done
  [ ${#need[@]} -gt 0 ] || return 0
  [ "$(id -u)" = 0 ] || die "missing packages (${need[*]}) and not root to install them"
  # As deploy/sandbox/deps.sh: the image may carry qemu-utils 10.x from backports, which Breaks
  # Debian 12's qemu-system-common 7.2, and installing qemu-system-x86 alone would remove it. So
  # qemu-utils goes in the same command, at the version of qemu-system-x86.
  sys_ver=$(installed_version qemu-system-x86)
  utils_ver=$(installed_version qemu-utils)
  if [ -z "$sys_ver" ] && [ -n "$utils_ver" ]; then
    [ -n "$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ && $2 != "(none)" {print $2}')" ] || apt_update
    sys_ver=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
    [ -n "$sys_ver" ] && [ "$sys_ver" != "(none)" ] || die "no installable qemu-system-x86 in the apt sources"
    rest=()
    for p in "${need[@]}"; do [ "$p" = qemu-system-x86 ] || rest+=("$p"); done
    need=("${rest[@]}" "qemu-system-x86=$sys_ver" "qemu-utils=$sys_ver")
  fi
  apt_update
  log "installing ${need[*]}"
  apt-get install -y -q --no-install-recommends --allow-downgrades "${need[@]}" >/dev/null ||
    die "apt-get install ${need[*]} failed"
}
deps
for c in qemu-system-x86_64 dpkg-deb cpio mkfs.ext4 strip ldd; do
  command -v "$c" >/dev/null || die "'$c' not found after installing the packages"
done
busybox=/bin/busybox
dpkg-query -S "$busybox" 2>/dev/null | grep -q '^busybox-static:' || die "$busybox is not from busybox-static"

# ---- the disk -----------------------------------------------------------------------------
if [ ! -e "$out/disk.img" ]; then
  log "creating $out/disk.img (512 MiB, ext4)"
  truncate -s 512M "$out/disk.img.tmp"
  # No lazy init: the guest must not be writing inode tables in the background.
  mkfs.ext4 -q -F -L corral-pl -E lazy_itable_init=0,lazy_journal_init=0 "$out/disk.img.tmp"
  mv "$out/disk.img.tmp" "$out/disk.img"
fi

# ---- kernel -------------------------------------------------------------------------------
kpkg_of() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
kpkg=$(kpkg_of)
if [ -z "$kpkg" ]; then apt_update; kpkg=$(kpkg_of); fi
[ -n "$kpkg" ] || die "cannot resolve the package linux-image-cloud-amd64 depends on"

corrald_id=$(stat -c '%s %Y' "$corrald")
stamp="$kpkg $(sha256sum "$0" | cut -c1-16) $(installed_version busybox-static) $corrald $corrald_id $(stat -c '%s %Y' "$(dirname "$corrald")/corral")"
if [ "${FORCE:-0}" != 1 ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] &&
   [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]; then
  log "up to date in $out ($kpkg)"; exit 0
fi

work=$(mktemp -d -t corral-powerloss-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out/cache"
deb=$(ls "$out/cache/${kpkg}_"*.deb 2>/dev/null | head -n1 || true)
[ -n "$deb" ] || deb=$(ls /var/cache/apt/archives/"${kpkg}_"*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
  log "downloading $kpkg"
  # apt drops privileges to _apt for downloads; let it write into the work dir.
  chmod 0777 "$work"
  (cd "$work" && apt-get download -q "$kpkg" >/dev/null 2>"$work/apt.err") ||
    { cat "$work/apt.err" >&2; die "apt-get download $kpkg failed"; }
  deb=$(ls "$work/${kpkg}_"*.deb)
  cp "$deb" "$out/cache/"
  deb=$out/cache/$(basename "$deb")
else
  log "using the cached $deb"
fi
dpkg-deb -x "$deb" "$work/k"
kver=$(ls "$work/k/lib/modules")
kmods=$work/k/lib/modules/$kver
kconfig=$work/k/boot/config-$kver
for opt in CONFIG_EXT4_FS CONFIG_CRYPTO_CRC32C CONFIG_DEVTMPFS CONFIG_BLK_DEV_INITRD; do
  grep -q "^$opt=y" "$kconfig" || die "$kpkg: $opt is not built in; this script would have to load it"
done

# ---- initramfs tree -----------------------------------------------------------------------
root=$work/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,data,root,run,var/log,var/lib,etc/libvirt,lib/modules,usr}
mkdir -p "$root"/var/run "$root"/run/libvirt "$root"/var/lib/libvirt "$root"/var/cache/libvirt "$root"/var/log/libvirt
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for a in $("$busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
ln -s ../bin "$root/usr/bin"
ln -s ../sbin "$root/usr/sbin"

load_order=()
add_module() { # add_module NAME: its dependencies first
  local name=$1 f dep
  for dep in "${load_order[@]}"; do [ "$dep" = "$name" ] && return 0; done
  if grep -qE "/${name}\.ko\$|/${name//_/-}\.ko\$" "$kmods/modules.builtin"; then return 0; fi
  f=$(find "$kmods/kernel" -name "$name.ko" -print -quit)
  [ -n "$f" ] || f=$(find "$kmods/kernel" -name "${name//_/-}.ko" -print -quit)
  [ -n "$f" ] || die "module $name not found in $kpkg"
  for dep in $(grep -ao 'depends=[a-zA-Z0-9_,-]*' "$f" | head -n1 | cut -d= -f2 | tr ',' ' '); do
    add_module "$dep"
  done
  cp "$f" "$root/lib/modules/$name.ko"
  load_order+=("$name")
}
for m in virtio_pci virtio_blk virtio_net virtio_rng; do add_module "$m"; done

# corrald and its libraries, at the paths ldd resolves them to (and /lib64 for the loader); the
# CLI beside it bootstraps the guest over corrald's local socket (bootstrap takes no TCP).
strip -o "$root/bin/corrald" "$corrald"
strip -o "$root/bin/corral" "$(dirname "$corrald")/corral"
ldd "$corrald" | awk '/=> \// {print $3} /^[ \t]*\// {print $1}' | sort -u >"$work/libs"
[ -s "$work/libs" ] || die "ldd found no libraries for $corrald"
while read -r lib; do
  real=$(readlink -f "$lib")
  # Debian 12 is merged-/usr: keep the /lib/... paths as ldd prints them, as real directories.
  mkdir -p "$root$(dirname "$lib")"
  cp "$real" "$root$lib"
done <"$work/libs"
grep -q libvirt "$work/libs" || log "warning: ldd lists no libvirt for $corrald"

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
EOF
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1 localhost
10.0.2.15 pl1
EOF
echo "hosts: files" >"$root/etc/nsswitch.conf"
: >"$root/etc/resolv.conf"

{
  echo '#!/bin/sh'
  echo "# /init of the Corral power-loss guest (kernel $kver)"
  echo "MODULES=\"${load_order[*]}\""
  cat <<'EOF'
export PATH=/bin:/sbin HOME=/root LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
exec </dev/console >/dev/console 2>&1
fail() { echo "CORRAL-PL-FAIL $*"; sleep 2; poweroff -f; while true; do sleep 60; done; }

fsync= commit= rustlog=info,openraft=warn extra= bootstrap=
for w in $(cat /proc/cmdline); do
  case $w in
    corral.fsync=*) fsync=${w#corral.fsync=} ;;
    corral.commit=*) commit=${w#corral.commit=} ;;
    corral.log=*) rustlog=${w#corral.log=} ;;
    corral.args=*) extra=$(echo "${w#corral.args=}" | tr ',' ' ') ;;
    corral.bootstrap=*) bootstrap=${w#corral.bootstrap=} ;;
  esac
done

for m in $MODULES; do insmod /lib/modules/$m.ko || echo "CORRAL-PL-WARN insmod $m failed"; done

ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
ip link set eth0 up || fail "no eth0"
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2

n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
[ -b /dev/vda ] || fail "no /dev/vda"
opts=
[ -z "$commit" ] || opts="-o commit=$commit"
mount -t ext4 $opts /dev/vda /data || fail "cannot mount /dev/vda"
read -r up _ </proc/uptime
echo "CORRAL-PL-DATA uptime=${up}s $(grep ' /data ' /proc/mounts)"

args="--name pl1 --listen 0.0.0.0:7001 --advertise 10.0.2.15:7001 --data-dir /data/corral --libvirt-uri test:///default"
[ -z "$fsync" ] || args="$args --fsync $fsync"
# A fresh data disk: bootstrap a one-node cluster (level 1, plaintext: the host's CLI has no
# credentials) once corrald's socket is there.
if [ -n "$bootstrap" ] && [ ! -e /data/corral/identity ]; then
  ( n=0
    while [ ! -S /data/corral/corrald.sock ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
    if /bin/corral --socket /data/corral/corrald.sock cluster bootstrap --name "$bootstrap" --level 1 >/dev/null; then
      echo "CORRAL-PL-BOOTSTRAPPED $bootstrap"
    else
      echo "CORRAL-PL-WARN bootstrap failed"
    fi ) &
fi
echo "CORRAL-PL-START corrald $args $extra"
RUST_LOG=$rustlog /bin/corrald $args $extra
rc=$?
echo "CORRAL-PL-EXIT rc=$rc"
sleep 1
poweroff -f
while true; do sleep 60; done
EOF
} >"$root/init"
chmod +x "$root/init"

# Uncompressed: under TCG, inflating ~100 MB of gzip in the guest would cost seconds per boot.
cp "$work/k/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) >"$out/initrd.img.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "$stamp" >"$out/.stamp"
log "built $out/vmlinuz ($kver), $out/initrd.img ($(du -h "$out/initrd.img" | cut -f1)), modules: ${load_order[*]}"
