#!/usr/bin/env bash
# Installs, only where missing, the Debian packages the namespace sandbox (up.sh & co) and the
# tiny guest build (guest/build.sh, guest/iso.sh) need: libvirtd + QEMU driver, QEMU, iproute2, tini,
# busybox-static, cpio, socat, genisoimage, isolinux + syslinux-common (the guest's bootable ISO).
# Also creates the libvirt-qemu user/group. Run as root; idempotent.
set -euo pipefail

log() { echo "sandbox/deps: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (it installs Debian packages)"
export DEBIAN_FRONTEND=noninteractive

pkgs=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
      iproute2 tini busybox-static cpio socat util-linux procps genisoimage isolinux syslinux-common)
# The console test drives `corral vm console` through a terminal.
pkgs+=(tmux)

installed_version() { # prints the installed version of $1, or nothing
  dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null |
    awk '$1=="install" && $3=="installed" {print $4}' || true
}

updated=0
apt_update() { [ $updated = 1 ] || { log "apt-get update"; apt-get update -qq; updated=1; }; }

need=()
for p in "${pkgs[@]}"; do [ -n "$(installed_version "$p")" ] || need+=("$p"); done

# The image may carry qemu-utils from backports (10.x), which Breaks Debian 12's
# qemu-system-common (7.2): installing qemu-system-x86 alone then fails. Install qemu-utils in the
# same command at exactly the version of qemu-system-x86 (installed, else its candidate), with
# --allow-downgrades.
sys_ver=$(installed_version qemu-system-x86)
utils_ver=$(installed_version qemu-utils)
if [ -z "$sys_ver" ] || [ "$utils_ver" != "$sys_ver" ]; then
  apt_update
  [ -n "$sys_ver" ] || sys_ver=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  [ -n "$sys_ver" ] && [ "$sys_ver" != "(none)" ] || die "no installable qemu-system-x86 in the apt sources"
  apt-cache madison qemu-utils | awk -F'|' '{gsub(/ /,"",$2); print $2}' | grep -qxF "$sys_ver" ||
    die "qemu-utils $sys_ver (the version of qemu-system-x86) is not in the apt sources"
  # replace the unpinned names with pinned ones
  rest=()
  for p in "${need[@]}"; do case $p in qemu-system-x86|qemu-utils) ;; *) rest+=("$p") ;; esac; done
  need=("${rest[@]}" "qemu-system-x86=$sys_ver" "qemu-utils=$sys_ver")
  [ -z "$utils_ver" ] || log "qemu-utils $utils_ver installed; aligning it with qemu-system-x86 $sys_ver"
fi

if [ ${#need[@]} -gt 0 ]; then
  apt_update
  log "installing ${need[*]}"
  apt-get install -y -q --no-install-recommends --allow-downgrades "${need[@]}" >/dev/null ||
    die "apt-get install failed"
else
  log "all packages present"
fi

# The QEMU driver refuses to start without this user/group ("Failed to parse user 'libvirt-qemu'"),
# even though the sandbox's qemu.conf runs QEMU as root.
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null ||
  useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu

for cmd in "qemu-img --version" "qemu-system-x86_64 --version" "virsh --version" \
           "libvirtd --version" "virtlogd --version"; do
  out=$($cmd 2>&1 | head -n1) || die "'$cmd' does not work: $out"
  log "ok: $out"
done
[ -x /bin/busybox ] || die "/bin/busybox missing after install"
