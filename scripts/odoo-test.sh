#!/usr/bin/env bash
# Run the stock_sync_bridge module tests in a real Odoo 17 on a fresh database
# copied from the template made by scripts/odoo-prepare.sh.
#
#   ODOO_SRC=/work/odoo17 scripts/odoo-test.sh
#
# Env: ODOO_SRC (required), ODOO_PYTHON (default: the venv odoo-prepare.sh made),
#      ODOO_TEMPLATE_DB (default stock_sync_tmpl), ODOO_TEST_DB (default: a new name),
#      KEEP_DB=1 keeps the test database afterwards.
set -euo pipefail

: "${ODOO_SRC:?set ODOO_SRC to an extracted Odoo 17.0 source tree}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PY="$("$HERE/scripts/odoo-prepare.sh" | tail -n 1)"
ODOO_PYTHON="${ODOO_PYTHON:-$PY}"
TEMPLATE_DB="${ODOO_TEMPLATE_DB:-stock_sync_tmpl}"
DB="${ODOO_TEST_DB:-stock_sync_test_$$}"
LOG="$(mktemp /tmp/stock_sync_test.XXXXXX.log)"

cleanup() { [ "${KEEP_DB:-0}" = 1 ] || dropdb --if-exists "$DB"; }
trap cleanup EXIT

dropdb --if-exists "$DB"
createdb -T "$TEMPLATE_DB" "$DB"
set +e
"$ODOO_PYTHON" "$ODOO_SRC/odoo-bin" \
    --addons-path="$ODOO_SRC/addons,$ODOO_SRC/odoo/addons,$HERE/odoo_addon" \
    -d "$DB" -i stock_sync_bridge --test-enable --test-tags /stock_sync_bridge \
    --stop-after-init --http-interface=127.0.0.1 --http-port="$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")" --log-level=test 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
# Odoo exits 0 even when tests fail in some versions; the log is authoritative.
if grep -Eq "(ERROR|CRITICAL) .*stock_sync_bridge|[1-9][0-9]* failed|[1-9][0-9]* error\(s\)" "$LOG"; then
    echo "stock_sync_bridge tests FAILED (log: $LOG)" >&2
    exit 1
fi
grep -E "odoo.tests.(result|stats):" "$LOG" | sort -u || true
exit "$status"
