#!/usr/bin/env bash
# Command 2 of the README: install the test dependencies into .venv and run the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -q).
#
# Without test paths in the arguments this is the whole suite: pytest on everything but
# tests/integration/odoo, then scripts/odoo-ci.sh, which runs the real Odoo of every tree in
# ../shared/odoo (17.0, 18.0, 19.0 in sequence: PostgreSQL, tree, venv, template database, the
# module's in-Odoo tests, the integration and end-to-end tests). Where ../shared/odoo has no tree,
# tests/integration/odoo stays in the pytest run and its skip says why.
# ODOO_VERSIONS="17.0 18.0" picks versions; ODOO_VERSIONS=none leaves the real Odoo out.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
ensure_venv "[dev]"
# A real PostgreSQL for the tests that run on both storage engines (tests/pg.py): installed and
# started when missing (as root, e.g. CI); once it answers, its tests must run, not skip.
if pg_out="$(scripts/odoo-postgres.sh 2>&1)"; then
    echo "$pg_out"; export ERP_BRIDGE_REQUIRE_PG="${ERP_BRIDGE_REQUIRE_PG:-1}"
else
    echo "$pg_out"; echo "postgresql: unavailable, the PostgreSQL tests will skip and say why" >&2
fi
set +e

paths=0
for arg in "$@"; do
    case "$arg" in -*) ;; *) paths=1 ;; esac
done
shared="${ODOO_SHARED:-$PWD/../shared/odoo}"
odoo=0
if [ "$paths" -eq 0 ] && [ "${ODOO_VERSIONS:-}" != none ] && ls "$shared"/odoo-*-trimmed.tar.gz >/dev/null 2>&1; then
    odoo=1
fi

t0=$SECONDS
lint=0
if [ "$paths" -eq 0 ]; then  # the whole suite: the code is linted and type-checked first
    .venv/bin/ruff check erp_bridge tests scripts && .venv/bin/mypy || lint=1
    echo "phase lint (ruff check, mypy on erp_bridge): $((SECONDS - t0)) s, exit $lint"
fi
if [ "$odoo" -eq 1 ]; then  # the whole suite: its slowest tests are listed, to keep CI's time in view
    .venv/bin/python -m pytest "$@" --ignore=tests/integration/odoo --durations=15
else
    .venv/bin/python -m pytest "$@"
fi
rc=$?
[ "$lint" -eq 0 ] || rc=1
echo "phase pytest (without the real Odoo): $((SECONDS - t0)) s, exit $rc"
[ "$odoo" -eq 1 ] || exit "$rc"

t1=$SECONDS
# shellcheck disable=SC2086
ODOO_SHARED="$shared" scripts/odoo-ci.sh ${ODOO_VERSIONS:-}
orc=$?
echo "phase real Odoo: $((SECONDS - t1)) s, exit $orc; whole run: $((SECONDS - t0)) s"
[ "$rc" -eq 0 ] && [ "$orc" -eq 0 ]
