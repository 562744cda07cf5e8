#!/usr/bin/env bash
# Command 1 of the README: install the bridge into .venv and start it on its embedded defaults
# (SQLite queue in ./var, config/example.yaml, the example mappings), on http://127.0.0.1:8470.
# Extra arguments go to `erp-bridge serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
ensure_venv ""
exec .venv/bin/erp-bridge --config config/example.yaml serve "$@"
