#!/usr/bin/env bash
# build.sh [OUTDIR]: builds a tiny Linux guest for sandbox tests from Debian packages only (apt):
# OUTDIR/vmlinuz (Debian cloud kernel) and OUTDIR/initrd.img (busybox-static + /init that prints
# CORRAL-GUEST-UP, then CORRAL-TICK n every second, and powers off on an ACPI power-button press).
# For hot-plug tests the guest also prints what hardware it sees, once about 1 s after
# CORRAL-GUEST-UP and then again whenever it changes (it looks every 0.2 s), as one line:
#   CORRAL-GUEST-SEES disks=vda,vdb nics=eth0 macs=52:54:00:12:34:56 cpus=2 mem_mib=481 cd=LABEL
# disks: /sys/block minus loop*, ram*, sr*; nics: /sys/class/net minus lo; macs: in the order of nics
# (each list sorted, comma-joined, "-" when empty); cpus: online CPUs; mem_mib: MemTotal in MiB;
# cd: none (no sr0), empty (no medium), the ISO9660 volume label, or present (a medium without one).
# It onlines hot-added CPUs and memory blocks itself (memory as online_movable when it can).
# CPU hot-plug under TCG needs more than 8 possible CPUs (e.g. possible_cpus=16 on the kernel
# command line); /init prints a CORRAL-GUEST-WARN line when that is missing.
# Opt-in, for snapshot tests: with corral.tickdisk=NAME (e.g. vda) on the kernel command line the
# guest prints, once at boot, what the start of /dev/NAME holds, as CORRAL-DISK-HOLDS n (the tick
# counter found there, or none), and each tick writes CORRAL-TICK-DISK n there (a 512-byte sector:
# the line, then zeros) before it prints CORRAL-TICK n: a tick on the console is on the disk too.
# Opt-in, for cloud-init tests: with corral.cidata=KEY on the kernel command line the guest looks,
# once its CD-ROM drivers are loaded, for a CD labelled cidata (a NoCloud seed; the cluster attaches
# it as the second IDE CD-ROM, hdd, which is sr1 next to a CD in hdc, sr0 alone) on sr0 and sr1
# for up to 20 s, mounts it read-only and prints, once, as one write:
#   CORRAL-CIDATA KEY=VALUE                      (KEY's top-level `KEY: value` line in user-data,
#   CORRAL-CIDATA-META local-hostname=H           quotes stripped, or <missing>; the second line
#                                                 only when meta-data has a local-hostname: line)
# or a CORRAL-GUEST-WARN line when it finds no such CD in time or cannot mount it.
# Always, for console tests: the guest reads lines from its serial console /dev/ttyS0 in the
# background and answers each non-empty one with CORRAL-ECHO <line> on it. The tty does not echo
# the input (a half-typed line would end up in front of the next CORRAL- line) and XON/XOFF is off
# (a ^S would stop the ticks).
# guest/iso.sh puts this kernel and initrd on a bootable ISO (isolinux).
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

# Initramfs tree: busybox applets, the ACPI button + evdev modules, and the disk, NIC and CD-ROM
# drivers (with what they depend on).
root=$work/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,var/log,var/run,etc/acpi/PWRF,lib/modules}
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
is_builtin() { grep -q "/${1}.ko\$\|/${1//_/-}.ko\$" "$kmods/modules.builtin" 2>/dev/null; }
builtin=()
# Loaded before CORRAL-GUEST-UP: the power button.
for m in evdev button; do
  if is_builtin "$m"; then builtin+=("$m"); else add_module "$m"; fi
done
n_early=${#load_order[@]}
# Loaded after it, in the background (the ATA probe alone takes about 0.5 s under TCG), before the
# first CORRAL-GUEST-SEES line: virtio_pci binds the virtio PCI devices, hot-plugged ones too (PCI
# hot-plug on the pc machine is ACPI's, acpiphp); cdrom, sr_mod and ata_piix give the IDE CD-ROM
# of libvirt's default pc machine (hdc, sr0); virtio_scsi and sd_mod give sdX; isofs mounts the
# cloud-init seed (corral.cidata).
for m in cdrom sr_mod sd_mod virtio_pci virtio_blk virtio_net virtio_scsi ata_piix acpiphp isofs; do
  if is_builtin "$m"; then builtin+=("$m"); else add_module "$m"; fi
done
# CPU and memory hot-plug have no modules: they must be built in.
for opt in CONFIG_HOTPLUG_PCI_ACPI CONFIG_ACPI_HOTPLUG_CPU CONFIG_ACPI_HOTPLUG_MEMORY CONFIG_MEMORY_HOTPLUG; do
  grep -q "^$opt=y" "$work/k/boot/config-$kver" || die "$kpkg lacks $opt=y (needed for hot-plug)"
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

# corral-cd: what is in the CD drive sr0, for the reporter in /init.
cat >"$root/sbin/corral-cd" <<'EOF'
#!/bin/sh
# Writes "empty", the ISO9660 volume label, or "present" (a medium without one) to /run/corral-cd.
# /init runs it once at boot; `uevent` runs it for every kernel uevent, and it looks again only on
# sr0's add and medium-change events. (busybox-static has no blkid applet: the label is read from
# the primary volume descriptor, sector 16, itself.)
if [ -n "$ACTION" ]; then
  [ "$DEVNAME" = sr0 ] || exit 0
  case "$ACTION/$DISK_MEDIA_CHANGE" in add/* | change/1) ;; *) exit 0 ;; esac
fi
[ -e /sys/block/sr0 ] || exit 0
if [ ! -b /dev/sr0 ]; then
  read -r mm </sys/block/sr0/dev
  mknod /dev/sr0 b "${mm%:*}" "${mm#*:}"
fi
# The kernel polls a drive for a new medium only when told to (IDE ATAPI has no asynchronous
# notification). It then sends a uevent with DISK_MEDIA_CHANGE=1.
echo 200 >/sys/block/sr0/events_poll_msecs
t=/run/corral-cd.$$
state=present
# The first read after a change can fail with an I/O error (the drive's "medium may have changed"
# unit attention): try again.
for try in 1 2 3 4 5; do
  if dd if=/dev/sr0 of=$t.pvd bs=2048 skip=16 count=1 2>$t.err; then
    if [ "$(dd if=$t.pvd bs=1 skip=1 count=5 2>/dev/null)" = CD001 ]; then
      label=$(dd if=$t.pvd bs=1 skip=40 count=32 2>/dev/null | tr -d '\000' |
        sed 's/[[:space:]]*$//; s/[^A-Za-z0-9._-]/_/g')
      [ -z "$label" ] || state=$label
    fi
    break
  fi
  if grep -q 'No medium' $t.err; then state=empty; break; fi
  sleep 0.2
done
echo "$state" >$t && mv $t /run/corral-cd
rm -f $t.pvd $t.err
EOF
chmod +x "$root/sbin/corral-cd"

# corral-cidata: the cloud-init seed, for corral.cidata=KEY (see the top).
cat >"$root/sbin/corral-cidata" <<'EOF'
#!/bin/sh
# corral-cidata KEY: finds the CD labelled cidata on sr0 or sr1, mounts it read-only and prints
# KEY's value in its user-data and the local-hostname in its meta-data (one write, so a reader that
# sees the first line sees the second). Looks every 0.5 s for 20 s: under TCG the ATA probe is
# slow, and the first read after the drive appears can fail (a unit attention).
key=$1
mnt=/run/cidata
t=/run/corral-cidata.$$
mkdir -p $mnt
yaml_value() { # yaml_value FILE KEY sets v to FILE's first top-level "KEY: value"; fails without one
  local l
  [ -f "$1" ] || return 1
  while IFS= read -r l || [ -n "$l" ]; do
    case $l in "$2:"*) ;; *) continue ;; esac
    v=${l#"$2:"}
    while :; do case $v in [[:space:]]*) v=${v#?} ;; *) break ;; esac; done
    case $v in
      \"*) v=${v#?}; v=${v%%\"*} ;;
      \'*) v=${v#?}; v=${v%%\'*} ;;
      *) v=${v%%[[:space:]]#*}
         while :; do case $v in *[[:space:]]) v=${v%?} ;; *) break ;; esac; done ;;
    esac
    return 0
  done <"$1"
  return 1
}
read -r now _ </proc/uptime
deadline=$((${now%.*} + 20))
while true; do
  for d in sr0 sr1; do
    [ -e /sys/block/$d ] || continue
    if [ ! -b /dev/$d ]; then
      read -r mm </sys/block/$d/dev
      mknod /dev/$d b "${mm%:*}" "${mm#*:}" 2>/dev/null
    fi
    dd if=/dev/$d of=$t bs=2048 skip=16 count=1 2>/dev/null || continue
    [ "$(dd if=$t bs=1 skip=1 count=5 2>/dev/null)" = CD001 ] || continue
    label=$(dd if=$t bs=1 skip=40 count=32 2>/dev/null | tr -d '\000' | sed 's/[[:space:]]*$//')
    case $label in cidata | CIDATA) ;; *) continue ;; esac
    mount -t iso9660 -o ro /dev/$d $mnt 2>$t.err || { err=$(cat $t.err); continue; }
    v='<missing>'
    yaml_value $mnt/user-data "$key"
    out="CORRAL-CIDATA $key=$v"
    yaml_value $mnt/meta-data local-hostname && out="$out
CORRAL-CIDATA-META local-hostname=$v"
    umount $mnt
    rm -f $t $t.err
    echo "$out"
    exit 0
  done
  read -r now _ </proc/uptime
  if [ "${now%.*}" -ge $deadline ]; then
    rm -f $t $t.err
    echo "CORRAL-GUEST-WARN corral.cidata=$key: no CD labelled cidata on sr0 or sr1 could be mounted within 20 s${err:+ ($err)}"
    exit 1
  fi
  sleep 0.5
done
EOF
chmod +x "$root/sbin/corral-cidata"

# corral-echo: answers lines on the serial console (see the top).
cat >"$root/sbin/corral-echo" <<'EOF'
#!/bin/sh
# corral-echo: reads lines from the serial console and answers each non-empty one with
# "CORRAL-ECHO <line>" on it. The tty stays in canonical mode, so read gets whole lines. With
# nothing connected the read just blocks. The tty is not the controlling one of any process: ^C or
# ^Z from the host signal nobody (^C drops the line typed so far).
tty=/dev/ttyS0
if ! : 2>/dev/null <>$tty; then
  echo "CORRAL-GUEST-WARN cannot open $tty: no CORRAL-ECHO"
  exit 1
fi
# No echo: the tty echoes characters as they come, so a line typed slowly, or a ^S, would land in
# front of the next CORRAL- line; the answer says what was read. XON/XOFF off: a ^S from the host
# would stop all output, the ticks too, until a ^Q.
stty -F $tty -echo -ixon 2>/dev/null
cr=$(printf '\r')
while true; do
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%"$cr"}
    [ -z "$line" ] || echo "CORRAL-ECHO $line" >&0
  done 2>/dev/null <>$tty
  # An end of file (a ^D from the host) or a read error: open it again.
  sleep 1
done
EOF
chmod +x "$root/sbin/corral-echo"

{
  echo '#!/bin/sh'
  echo "# /init of the Corral sandbox guest (kernel $kver)"
  echo "MODULES=\"${load_order[*]:0:n_early}\""
  echo "DEVICE_MODULES=\"${load_order[*]:n_early}\""
  cat <<'EOF'
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $MODULES; do insmod /lib/modules/$m.ko || echo "CORRAL-GUEST-WARN insmod $m failed"; done
# Hot-plug makes the kernel print info messages, which would land in the middle of CORRAL- lines
# on the console: from here on only errors reach it (a lower level from the command line stays).
read -r lvl _ </proc/sys/kernel/printk
[ "$lvl" -le 4 ] || echo 4 >/proc/sys/kernel/printk
# The power button reaches acpid as an input event (evdev); acpid runs /etc/acpi/PWRF/00000080.
# (acpid needs /var/log and /var/run, or it exits at once.)
acpid -f -c /etc/acpi -a /etc/acpid.conf -l /var/log/acpid.log &
sleep 0.1
kill -0 $! 2>/dev/null || echo "CORRAL-GUEST-WARN acpid is not running: no ACPI shutdown"

# What the guest sees, for hot-plug tests. No forks here: the reporter runs it every 0.2 s (TCG).
count_ranges() { # count_ranges 0-1,3 sets ncpu=3
  local IFS=, r
  ncpu=0
  for r in $1; do ncpu=$((ncpu + ${r#*-} - ${r%-*} + 1)); done
}
sees() { # sets line
  local p x d= nics= macs= mac mem=0 cd=none k v
  for p in /sys/block/*; do
    x=${p##*/}
    case $x in loop* | ram* | sr* | '*') ;; *) d=${d:+$d,}$x ;; esac
  done
  for p in /sys/class/net/*; do
    x=${p##*/}
    case $x in lo | '*') continue ;; esac
    mac=-
    read -r mac 2>/dev/null <"$p/address"
    nics=${nics:+$nics,}$x
    macs=${macs:+$macs,}$mac
  done
  read -r x </sys/devices/system/cpu/online
  count_ranges "$x"
  while read -r k v _; do
    [ "$k" = MemTotal: ] && { mem=$((v / 1024)); break; }
  done </proc/meminfo
  if [ -e /sys/block/sr0 ]; then
    cd=present
    read -r cd 2>/dev/null </run/corral-cd
  fi
  line="CORRAL-GUEST-SEES disks=${d:--} nics=${nics:--} macs=${macs:--} cpus=$ncpu mem_mib=$mem cd=$cd"
}
online_new() { # onlines hot-added CPUs and memory blocks (memhp_default_state= may do the memory)
  local p v
  for p in /sys/devices/system/cpu/cpu[0-9]*/online; do
    read -r v 2>/dev/null <"$p" || continue
    [ "$v" != 0 ] || echo 1 2>/dev/null >"$p"
  done
  for p in /sys/devices/system/memory/memory[0-9]*/state; do
    read -r v 2>/dev/null <"$p" || continue
    [ "$v" != offline ] || echo online_movable 2>/dev/null >"$p" || echo online 2>/dev/null >"$p"
  done
}
# A 0.2 s sleep without a fork: read with a timeout from a FIFO nobody writes to.
if mkfifo /run/nap 2>/dev/null && [ -p /run/nap ]; then
  exec 3<>/run/nap
  nap() { read -t 0.2 _ <&3; }
else
  nap() { sleep 0.2; }
fi

read -r up _ </proc/uptime
echo "CORRAL-GUEST-UP uptime=${up}s kernel=$(uname -r)"
corral-echo &
# With at most 8 possible CPUs the kernel sends IPIs in logical APIC mode, and under TCG here
# (QEMU 7.2) they never reach a hot-added CPU: the guest stalls in anything that waits for it
# (memory offlining, CPU unplug, its interrupts). More than 8 switch it to physical mode.
read -r x </sys/devices/system/cpu/possible
count_ranges "$x"
possible=$ncpu
read -r x </sys/devices/system/cpu/present
count_ranges "$x"
if [ "$possible" -gt "$ncpu" ] && [ "$possible" -le 8 ]; then
  echo "CORRAL-GUEST-WARN $possible possible CPUs: logical APIC mode, a hot-added CPU gets no IPIs under TCG; boot with possible_cpus=16"
fi
# Opt-in parameters (see the top of build.sh).
tickdisk=
cidata=
read -r x </proc/cmdline
for a in $x; do
  case $a in
    corral.tickdisk=*) tickdisk=${a#*=} ;;
    corral.cidata=*) cidata=${a#*=} ;;
  esac
done
(
  for m in $DEVICE_MODULES; do insmod /lib/modules/$m.ko || echo "CORRAL-GUEST-WARN insmod $m failed"; done
  # The CD drive: `uevent` runs /sbin/corral-cd on kernel uevents; it writes what is in the drive
  # to /run/corral-cd. The kernel's polling reports only a new medium, so while there is one a
  # loop also opens the drive every 0.2 s: the open makes the kernel check it, and a medium taken
  # out with the tray left open comes as a uevent too. (Not while it is empty: a failing open costs
  # a libata error handling. A loop of its own: such an open can hang for the 30 s SCSI timeout.)
  # Opening must neither lock the tray (the host's eject would be refused) nor close an open one.
  if [ -d /proc/sys/dev/cdrom ]; then
    echo 0 >/proc/sys/dev/cdrom/lock
    echo 0 >/proc/sys/dev/cdrom/autoclose
  fi
  uevent /sbin/corral-cd &
  [ -z "$cidata" ] || /sbin/corral-cidata "$cidata" &
  /sbin/corral-cd
  while true; do
    nap
    [ -e /sys/block/sr0 ] || continue
    cd=empty
    read -r cd 2>/dev/null </run/corral-cd
    [ "$cd" = empty ] || true 2>/dev/null </dev/sr0
  done &
  # The reporter: one line at once, then one whenever something changed.
  online_new
  sees
  echo "$line"
  last=$line
  while true; do
    nap
    online_new
    sees
    [ "$line" = "$last" ] || { echo "$line"; last=$line; }
  done
) &
# corral.tickdisk=NAME. The disk driver loads in the background above: wait for the device node
# (devtmpfs makes it). Only the first sector is read: a blank disk has no newline for a line reader
# to stop at.
if [ -n "$tickdisk" ]; then
  i=0
  while [ ! -b "/dev/$tickdisk" ] && [ $i -lt 100 ]; do nap; i=$((i + 1)); done
  if [ -b "/dev/$tickdisk" ]; then
    x=$(dd if="/dev/$tickdisk" bs=512 count=1 2>/dev/null | tr -d '\000' | head -n 1)
    case $x in "CORRAL-TICK-DISK "[0-9]*) x=${x#CORRAL-TICK-DISK } ;; *) x=none ;; esac
    echo "CORRAL-DISK-HOLDS $x"
  else
    echo "CORRAL-GUEST-WARN no block device /dev/$tickdisk: no disk ticks"
    tickdisk=
  fi
fi
n=0
while true; do
  n=$((n + 1))
  # conv=fsync: the sector reaches the virtual disk (write and flush) before the tick is printed.
  if [ -n "$tickdisk" ]; then
    echo "CORRAL-TICK-DISK $n" | dd of="/dev/$tickdisk" bs=512 conv=sync,notrunc,fsync 2>/dev/null ||
      echo "CORRAL-GUEST-WARN writing tick $n to /dev/$tickdisk failed"
  fi
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
log "built $out/vmlinuz ($kver) and $out/initrd.img ($(du -h "$out/initrd.img" | cut -f1)), modules: ${load_order[*]}${builtin[*]:+ (builtin: ${builtin[*]})}"
