#!/usr/bin/env bash
# Installs corrald and corral from a release build onto this host, with the systemd unit and
# an example config (kept if one exists). Run as root from the project directory after
# `make release`.
set -euo pipefail
cd "$(dirname "$0")/.."
install -m 0755 target/release/corrald target/release/corral /usr/local/bin/
install -d /etc/corral /var/lib/corral
[ -e /etc/corral/corrald.toml ] || install -m 0644 deploy/corrald.toml /etc/corral/corrald.toml
install -m 0644 deploy/systemd/corrald.service /etc/systemd/system/corrald.service
systemctl daemon-reload 2>/dev/null || echo "install: no systemd here; start corrald by hand"
echo "installed; edit /etc/corral/corrald.toml, then: systemctl enable --now corrald"
