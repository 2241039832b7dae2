#!/usr/bin/env bash
# Builds the Debian package from built binaries: deploy/deb/build.sh BINDIR OUTDIR
# (BINDIR holds corral and corrald, e.g. target/release; the web console comes from web/dist when
# `make web` has built it). Lays out the package tree in a temp dir, generates the shell
# completions and man pages with the binaries themselves (from their clap grammar), and runs
# dpkg-deb. Prints the path of the .deb it made.
# CORRAL_DEB_COMPRESSION: dpkg-deb's -Z (default xz).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BINDIR OUTDIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
deploy=$(dirname "$here")
bindir=$(cd "$1" && pwd)
mkdir -p "$2"
outdir=$(cd "$2" && pwd)
for b in corral corrald; do
  [ -x "$bindir/$b" ] || { echo "build.sh: $bindir/$b is missing: build the binaries first" >&2; exit 1; }
done

# "corral 0.2.0" -> 0.2.0: the binaries say which version they are.
version=$("$bindir/corral" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
umask 022

# Stripped, as Debian ships binaries (the symbols stay in the build tree for a core dump).
install -D -m 0755 -s "$bindir/corral" "$root/usr/bin/corral"
install -D -m 0755 -s "$bindir/corrald" "$root/usr/bin/corrald"
install -D -m 0644 "$deploy/systemd/corrald.service" "$root/lib/systemd/system/corrald.service"
install -D -m 0644 "$deploy/corrald.toml" "$root/etc/corral/corrald.toml"
install -d -m 0711 "$root/var/lib/corral"

# The web console, built by `make web` (npm): corrald serves it from here by default.
web="$(dirname "$deploy")/web/dist"
if [ -f "$web/index.html" ]; then
  install -d "$root/usr/share/corral"
  cp -r "$web" "$root/usr/share/corral/web"
  chmod -R u=rwX,go=rX "$root/usr/share/corral/web"
else
  echo "build.sh: no web/dist (make web): the package has no web console" >&2
fi

install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d"
"$bindir/corral" completion bash >"$root/usr/share/bash-completion/completions/corral"
"$bindir/corral" completion zsh >"$root/usr/share/zsh/vendor-completions/_corral"
"$bindir/corral" completion fish >"$root/usr/share/fish/vendor_completions.d/corral.fish"

install -d "$root/usr/share/man/man1" "$root/usr/share/man/man8"
"$bindir/corral" man --dir "$root/usr/share/man/man1"
"$bindir/corrald" --man-dir "$root/usr/share/man/man8"
# Debian's policy: compressed at the highest level, without a timestamp (reproducible).
gzip -9n "$root"/usr/share/man/man1/*.1 "$root"/usr/share/man/man8/*.8

install -d -m 0755 "$root/usr/share/doc/corral"
printf 'Corral %s\nLicense: Apache-2.0\n' "$version" >"$root/usr/share/doc/corral/copyright"

install -d "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" "$here/control.in" >"$root/DEBIAN/control"
install -m 0644 "$here/conffiles" "$root/DEBIAN/conffiles"
install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$root/DEBIAN/"

deb="$outdir/corral_${version}_${arch}.deb"
# xz as Debian's own packages; the tests ask for gzip, which is several times faster.
dpkg-deb --root-owner-group -Z"${CORRAL_DEB_COMPRESSION:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
