#!/usr/bin/env bash
# build.sh [OUTDIR]: builds a tiny Linux guest for sandbox tests from Debian packages only (apt):
# OUTDIR/vmlinuz (Debian cloud kernel) and OUTDIR/initrd.img (busybox-static + /init that prints
# CORRAL-GUEST-UP, then CORRAL-TICK n every second, and powers off on an ACPI power-button press).
# Default OUTDIR: deploy/sandbox/guest/out. Skips the build when OUTDIR is already up to date (FORCE=1 rebuilds).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out}
log() { echo "guest/build: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for c in apt-get apt-cache dpkg-deb cpio gzip; do
  command -v "$c" >/dev/null || die "'$c' not found; run deploy/sandbox/deps.sh first"
done
busybox=/bin/busybox
dpkg-query -S "$busybox" 2>/dev/null | grep -q '^busybox-static:' ||
  die "$busybox is not from busybox-static; run deploy/sandbox/deps.sh first"

# The kernel package linux-image-cloud-amd64 depends on (its version moves).
kpkg_of() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
kpkg=$(kpkg_of)
if [ -z "$kpkg" ]; then
  [ "$(id -u)" = 0 ] || die "apt lists know no linux-image-cloud-amd64 and updating them needs root"
  log "apt-get update"; apt-get update -qq; kpkg=$(kpkg_of)
fi
[ -n "$kpkg" ] || die "cannot resolve the package linux-image-cloud-amd64 depends on"

stamp="$kpkg $(sha256sum "$0" | cut -c1-16) $(dpkg-query -W -f='${Version}' busybox-static)"
if [ "${FORCE:-0}" != 1 ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] &&
   [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]; then
  log "up to date in $out ($kpkg)"; exit 0
fi

work=$(mktemp -d -t corral-guest-XXXXXX)
trap 'rm -rf "$work"' EXIT
log "downloading $kpkg"
# apt drops privileges to _apt for downloads; let it write into the work dir.
chmod 0777 "$work"
(cd "$work" && apt-get download -q "$kpkg" >/dev/null 2>"$work/apt.err") ||
  { cat "$work/apt.err" >&2; die "apt-get download $kpkg failed"; }
dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
kver=$(ls "$work/k/lib/modules")
kmods=$work/k/lib/modules/$kver

# Initramfs tree: busybox applets, the ACPI button + evdev modules (and what they depend on).
root=$work/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,var/log,var/run,etc/acpi/PWRF,lib/modules}
cp "$busybox" "$root/bin/busybox"
for a in $("$busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
ln -sf ../bin/busybox "$root/sbin/init"

load_order=()
add_module() { # add_module NAME: its dependencies first
  local name=$1 f dep
  for dep in "${load_order[@]}"; do [ "$dep" = "$name" ] && return 0; done
  f=$(find "$kmods/kernel" -name "$name.ko" -print -quit)
  [ -n "$f" ] || f=$(find "$kmods/kernel" -name "${name//_/-}.ko" -print -quit)
  [ -n "$f" ] || die "module $name not found in $kpkg"
  for dep in $(grep -ao 'depends=[a-zA-Z0-9_,-]*' "$f" | head -n1 | cut -d= -f2 | tr ',' ' '); do
    add_module "$dep"
  done
  cp "$f" "$root/lib/modules/$name.ko"
  load_order+=("$name")
}
for m in evdev button; do
  if grep -q "/$m.ko\$" "$kmods/modules.builtin" 2>/dev/null; then continue; fi
  add_module "$m"
done

cat >"$root/etc/acpid.conf" <<'EOF'
PWRF PWRF/00000080
EOF
cat >"$root/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "CORRAL-GUEST-POWEROFF" >/dev/console
sync
poweroff -f
EOF
chmod +x "$root/etc/acpi/PWRF/00000080"

{
  echo '#!/bin/sh'
  echo "# /init of the Corral sandbox guest (kernel $kver)"
  echo "MODULES=\"${load_order[*]}\""
  cat <<'EOF'
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $MODULES; do insmod /lib/modules/$m.ko || echo "CORRAL-GUEST-WARN insmod $m failed"; done
# The power button reaches acpid as an input event (evdev); acpid runs /etc/acpi/PWRF/00000080.
# (acpid needs /var/log and /var/run, or it exits at once.)
acpid -f -c /etc/acpi -a /etc/acpid.conf -l /var/log/acpid.log &
sleep 0.1
kill -0 $! 2>/dev/null || echo "CORRAL-GUEST-WARN acpid is not running: no ACPI shutdown"
read -r up _ </proc/uptime
echo "CORRAL-GUEST-UP uptime=${up}s kernel=$(uname -r)"
n=0
while true; do
  n=$((n + 1))
  echo "CORRAL-TICK $n"
  sleep 1
done
EOF
} >"$root/init"
chmod +x "$root/init"

mkdir -p "$out"
cp "$work/k/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet | gzip -9) >"$out/initrd.img.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "$stamp" >"$out/.stamp"
log "built $out/vmlinuz ($kver) and $out/initrd.img ($(du -h "$out/initrd.img" | cut -f1)), modules: ${load_order[*]}"
