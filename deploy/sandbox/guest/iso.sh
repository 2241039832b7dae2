#!/usr/bin/env bash
# iso.sh OUT.iso [KERNEL_ARG...]: puts the tiny guest of build.sh (vmlinuz and initrd.img) on a
# BIOS-bootable El Torito ISO (isolinux; volume label CORRAL-GUEST) that boots it at once, with no
# prompt, and the kernel command line "console=ttyS0 KERNEL_ARG..." (isolinux adds
# BOOT_IMAGE=/isolinux/vmlinuz in front and initrd=/isolinux/initrd.img at the end). For a VM that
# boots from a CD rather than from a kernel and initrd given to QEMU, e.g.
#   iso.sh /tmp/guest.iso corral.tickdisk=vda
#   qemu-system-x86_64 -accel tcg -m 256 -cdrom /tmp/guest.iso -boot d -nographic
# The guest comes from OUTDIR (default deploy/sandbox/guest/out); when it is not there build.sh
# makes it first. Needs isolinux, syslinux-common and genisoimage (deploy/sandbox/deps.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
log() { echo "guest/iso: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ $# -ge 1 ] && [ -n "$1" ] || die "usage: iso.sh OUT.iso [KERNEL_ARG...]"
iso=$1
shift
out=${OUTDIR:-$here/out}
cmdline="console=ttyS0${*:+ $*}"
case $cmdline in *$'\n'* | *$'\r'*) die "a kernel argument holds a line break" ;; esac
# The x86 kernel takes 2047 bytes; isolinux's BOOT_IMAGE= and initrd= need about 60 of them.
[ ${#cmdline} -le 1980 ] || die "kernel command line too long (${#cmdline} bytes)"

isolinux=/usr/lib/ISOLINUX/isolinux.bin
ldlinux=/usr/lib/syslinux/modules/bios/ldlinux.c32
[ -f "$isolinux" ] || die "$isolinux missing (package isolinux); run deploy/sandbox/deps.sh"
[ -f "$ldlinux" ] || die "$ldlinux missing (package syslinux-common); run deploy/sandbox/deps.sh"
command -v genisoimage >/dev/null || die "genisoimage not found; run deploy/sandbox/deps.sh"

if [ ! -s "$out/vmlinuz" ] || [ ! -s "$out/initrd.img" ]; then
  log "no guest in $out: building it"
  bash "$here/build.sh" "$out"
fi

work=$(mktemp -d -t corral-guest-iso-XXXXXX)
trap 'rm -rf "$work"' EXIT
# 8.3 names only: isolinux reads plain ISO9660 names.
mkdir -p "$work/iso/isolinux"
cp "$isolinux" "$ldlinux" "$out/vmlinuz" "$out/initrd.img" "$work/iso/isolinux/"
# PROMPT 0 and TIMEOUT 0: boot the default entry at once (unless Shift or Alt is held).
cat >"$work/iso/isolinux/isolinux.cfg" <<EOF
DEFAULT corral
PROMPT 0
TIMEOUT 0
LABEL corral
  KERNEL /isolinux/vmlinuz
  INITRD /isolinux/initrd.img
  APPEND $cmdline
EOF
# -boot-info-table patches the copy of isolinux.bin with where it lies on the ISO.
genisoimage -quiet -o "$work/out.iso" -V CORRAL-GUEST -J -R \
  -b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table \
  "$work/iso" || die "genisoimage failed"
mv "$work/out.iso" "$iso"
log "wrote $iso ($(du -h "$iso" | cut -f1)): boots $out/vmlinuz with '$cmdline'"
