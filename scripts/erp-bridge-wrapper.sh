#!/bin/sh
# /usr/local/bin/erp-bridge, installed by scripts/install-service.sh: the command on the installed
# service's configuration unless ERP_BRIDGE_CONFIG or --config says otherwise.
: "${ERP_BRIDGE_CONFIG:=/etc/erp-bridge/config.yaml}"
export ERP_BRIDGE_CONFIG
exec /opt/erp-bridge/venv/bin/erp-bridge "$@"
