#!/usr/bin/env bash
# Prepare a local Odoo 17 for the stock_sync_bridge tests, reproducibly.
#
#   ODOO_SRC=/work/odoo17 scripts/odoo-prepare.sh [VENV]
#
# - ODOO_SRC      extracted Odoo 17.0 source tree (required; never inside this repo)
# - VENV          virtualenv for Odoo (default: $ODOO_VENV or $ODOO_SRC/../odoo-venv);
#                 created with python3.11 and Odoo's requirements.txt when missing
# - ODOO_TEMPLATE_DB  template database name (default: stock_sync_tmpl); created once with
#                 sale_stock installed and no demo data, reused on later runs (seconds)
# - PostgreSQL must be running and reachable by the current user through the default
#   socket (PGHOST/PGPORT/PGUSER are honoured by psql and by Odoo via --db_* flags).
#
# Prints the interpreter path on the last line so callers can export ODOO_PYTHON.
set -euo pipefail

: "${ODOO_SRC:?set ODOO_SRC to an extracted Odoo 17.0 source tree}"
ODOO_SRC="$(cd "$ODOO_SRC" && pwd)"
VENV="${1:-${ODOO_VENV:-$(dirname "$ODOO_SRC")/odoo-venv}}"
TEMPLATE_DB="${ODOO_TEMPLATE_DB:-stock_sync_tmpl}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"

[ -f "$ODOO_SRC/odoo-bin" ] || { echo "no odoo-bin in $ODOO_SRC" >&2; exit 2; }

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtualenv $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q wheel
    "$VENV/bin/pip" install -q -r "$ODOO_SRC/requirements.txt" odoorpc pytest
else
    # cheap check that the venv is usable; install only the test client if missing
    "$VENV/bin/python" -c "import odoorpc, pytest" 2>/dev/null \
        || "$VENV/bin/pip" install -q odoorpc pytest
fi

db_exists() {
    psql -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$1'" | grep -q 1
}

# The template is only reused when its install finished: a marker row written last.
template_ready() {
    db_exists "$TEMPLATE_DB" && psql -d "$TEMPLATE_DB" -Atc \
        "SELECT 1 FROM ir_module_module WHERE name = 'sale_stock' AND state = 'installed'" \
        2>/dev/null | grep -q 1
}

if template_ready; then
    echo "template database $TEMPLATE_DB is ready (reused)"
else
    db_exists "$TEMPLATE_DB" && dropdb "$TEMPLATE_DB"
    echo "creating template database $TEMPLATE_DB (sale_stock, no demo; about a minute)"
    "$VENV/bin/python" "$ODOO_SRC/odoo-bin" \
        --addons-path="$ODOO_SRC/addons,$ODOO_SRC/odoo/addons,$HERE/odoo_addon" \
        -d "$TEMPLATE_DB" -i sale_stock --without-demo=all --stop-after-init \
        --http-interface=127.0.0.1 --log-level=warn
    template_ready || { echo "template install failed" >&2; exit 1; }
fi
echo "$VENV/bin/python"
