#!/usr/bin/env bash
# Run the stock_sync_bridge module tests (TransactionCase and the browser tours, HttpCase) in a
# real Odoo on a fresh database copied from the template made by scripts/odoo-prepare.sh.
#
#   scripts/odoo-test.sh [VERSION]        # 17.0 (default), 18.0, 19.0
#
# Env: everything scripts/odoo-prepare.sh reads (ODOO_SHARED, ODOO_CACHE, ODOO_SRC, ODOO_PYTHON,
#      ODOO_TEMPLATE_DB), ODOO_TEST_DB (default: a new name), KEEP_DB=1 keeps the test database,
#      ODOO_TEST_TAGS (default /stock_sync_bridge).
# Prints "stock_sync_bridge on Odoo <ver>: N passed, N failed" and exits non-zero on any failure.
set -euo pipefail

VERSION="${1:-${ODOO_VERSION:-17.0}}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
eval "$("$HERE/scripts/odoo-prepare.sh" "$VERSION" | grep '^export ')"
DB="${ODOO_TEST_DB:-stock_sync_test_${VERSION%%.*}_$$}"
LOG="$(mktemp /tmp/stock_sync_test.XXXXXX.log)"

cleanup() { [ "${KEEP_DB:-0}" = 1 ] || dropdb --if-exists "$DB"; }
trap cleanup EXIT

dropdb --if-exists "$DB" 2>/dev/null
createdb -T "$ODOO_TEMPLATE_DB" "$DB"
port="$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")"
set +e
"$ODOO_PYTHON" "$ODOO_SRC/odoo-bin" \
    --addons-path="$ODOO_SRC/addons,$ODOO_SRC/odoo/addons,$HERE/odoo_addon" \
    -d "$DB" --db-filter="^$DB\$" -i stock_sync_bridge --test-enable \
    --test-tags "${ODOO_TEST_TAGS:-/stock_sync_bridge}" --without-demo=all \
    --stop-after-init --http-interface=127.0.0.1 --http-port="$port" --log-level=test \
    >"$LOG" 2>&1
status=$?
set -e
# Odoo's exit code is not reliable across versions for test failures: the log is authoritative.
grep -E "(ERROR|CRITICAL|FAIL)" "$LOG" | grep -v "^$" | head -n 200 || true
tests="$(grep -oE "[0-9]+ tests" "$LOG" | tail -n 1 | grep -oE "[0-9]+" || echo 0)"
# every test that ran, by name (the log is kept: full log below)
grep -oE "Starting [A-Za-z0-9_]+\.test_[A-Za-z0-9_]+" "$LOG" | sed "s/^Starting /ran: /" || true
grep -E "odoo.tests.(result|stats)" "$LOG" | sed 's/^.*INFO [^ ]* //' || true
failed="$(grep -cE " (ERROR|CRITICAL) " "$LOG" || true)"
# a skipped module test hides a missing browser or library: that is a failure here
skipped="$(grep -E "stock_sync_bridge\.tests\.[a-z_]+: skipped " "$LOG" || true)"
if [ -n "$skipped" ]; then echo "$skipped"; failed=$((failed + $(echo "$skipped" | wc -l))); fi
echo "full log: $LOG"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$tests" -eq 0 ]; then
    echo "stock_sync_bridge on Odoo $VERSION: $tests ran, $failed error lines, exit $status: FAILED"
    exit 1
fi
echo "stock_sync_bridge on Odoo $VERSION: $tests passed, 0 failed"
