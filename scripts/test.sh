#!/usr/bin/env bash
# Command 2 of the README: install the test dependencies into .venv and run the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -q).
# Tests that need a real Odoo run when ODOO_SRC points at an Odoo 17 source tree
# (see docs/odoo-module.md); otherwise they are skipped and the skip says why.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
ensure_venv "[dev]"
exec .venv/bin/python -m pytest "$@"
