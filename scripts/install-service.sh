#!/usr/bin/env bash
# Install erp-bridge as a systemd service (run as root from a checkout of this repository).
#   sudo scripts/install-service.sh            # install or upgrade, then start
#   sudo scripts/install-service.sh worker     # a worker-only host (no HTTP; docs/scaling.md)
# Code goes to /opt/erp-bridge, config to /etc/erp-bridge (kept on upgrade), data to
# /var/lib/erp-bridge (systemd StateDirectory), secrets to /etc/erp-bridge/credentials (0600).
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "install-service.sh: run as root (sudo)" >&2; exit 1; }
src=$(cd "$(dirname "$0")/.." && pwd)
prefix=/opt/erp-bridge
unit=erp-bridge.service
[ "${1:-}" = worker ] && unit=erp-bridge-worker.service

id erp-bridge >/dev/null 2>&1 || useradd --system --home-dir /var/lib/erp-bridge --shell /usr/sbin/nologin erp-bridge
# `python3 -m venv --help` succeeds on Debian without python3-venv; creating one then fails for
# want of ensurepip. Check what venv creation needs.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt-get install -y python3-venv
mkdir -p "$prefix"
cp -a "$src/README.md" "$prefix/"
python3 -m venv "$prefix/venv"
"$prefix/venv/bin/pip" install --quiet --upgrade "$src"

install -d -m 0750 -o root -g erp-bridge /etc/erp-bridge /etc/erp-bridge/mappings
install -d -m 0700 -o root -g root /etc/erp-bridge/credentials
if [ ! -f /etc/erp-bridge/config.yaml ]; then
  sed -e 's|^data_dir: .*|data_dir: /var/lib/erp-bridge|' \
      -e 's|^mappings_dir: .*|mappings_dir: /etc/erp-bridge/mappings|' \
      "$src/config/example.yaml" > /etc/erp-bridge/config.yaml
  cp -n "$src"/mappings/*.yaml "$src"/mappings/*.csv "$src"/mappings/schema.json /etc/erp-bridge/mappings/ 2>/dev/null || true
fi
chgrp -R erp-bridge /etc/erp-bridge/config.yaml /etc/erp-bridge/mappings
install -m 0644 "$src/scripts/systemd/$unit" "/etc/systemd/system/$unit"
# The command on PATH, on the service's config unless told otherwise (status, dlq, config check)
install -m 0755 "$src/scripts/erp-bridge-wrapper.sh" /usr/local/bin/erp-bridge

"$prefix/venv/bin/erp-bridge" --config /etc/erp-bridge/config.yaml config check >/dev/null
systemctl daemon-reload
systemctl enable --now "$unit"
systemctl --no-pager status "$unit" || true
echo "Secrets: one file per secret in /etc/erp-bridge/credentials (e.g. admin_token), then: systemctl restart ${unit%.service}"
echo "Command: /usr/local/bin/erp-bridge (uses /etc/erp-bridge/config.yaml), e.g.: sudo -u erp-bridge erp-bridge status"
