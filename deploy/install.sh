#!/usr/bin/env bash
# Installs corrald and corral from a release build onto this host, with the systemd unit and
# the default config (kept if one exists). Run as root from the project directory after
# `make release`. On Debian, prefer the package: `make deb`, then apt-get install ./target/debian/corral_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
install -m 0755 target/release/corrald target/release/corral /usr/local/bin/
install -d /etc/corral
install -d -m 0711 /var/lib/corral
[ -e /etc/corral/corrald.toml ] || install -m 0644 deploy/corrald.toml /etc/corral/corrald.toml
sed 's|/usr/bin/corrald|/usr/local/bin/corrald|' deploy/systemd/corrald.service >/etc/systemd/system/corrald.service
systemctl daemon-reload 2>/dev/null || echo "install: no systemd here; start corrald by hand"
echo "installed; edit /etc/corral/corrald.toml, then: systemctl enable --now corrald"
