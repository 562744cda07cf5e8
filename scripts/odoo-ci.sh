#!/usr/bin/env bash
# The real-Odoo part of the test suite, one Odoo version after the other:
# PostgreSQL (installed and started if missing), the trimmed tree from ../shared/odoo, a cached
# venv and a template database per version, then the module's in-Odoo tests (scripts/odoo-test.sh)
# and the Odoo integration and end-to-end tests (pytest tests/integration/odoo in .venv).
#
#   scripts/odoo-ci.sh [VERSION...]     # default: every odoo-<ver>-trimmed.tar.gz in ODOO_SHARED
#
# Env: ODOO_SHARED (default ../shared/odoo), ODOO_CACHE, PYTEST (default .venv/bin/python -m pytest).
# Prints each phase's duration and a closing "odoo: N passed, N failed" line; exits 1 on a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
SHARED="${ODOO_SHARED:-$PWD/../shared/odoo}"
export ODOO_SHARED="$SHARED"
versions=("$@")
if [ "${#versions[@]}" -eq 0 ]; then
    for tarball in "$SHARED"/odoo-*-trimmed.tar.gz; do
        [ -f "$tarball" ] || continue
        v="${tarball##*/odoo-}"; versions+=("${v%-trimmed.tar.gz}")
    done
fi
if [ "${#versions[@]}" -eq 0 ]; then
    echo "odoo: SKIPPED: $SHARED has no odoo-<ver>-trimmed.tar.gz, so no real Odoo can run here"
    exit 0
fi
read -r -a pytest_cmd <<< "${PYTEST:-.venv/bin/python -m pytest}"

passed=0; failed=0; summary=()
phase() {  # phase NAME COMMAND...: run, time, and count "N passed"/"N failed" from its last lines
    local name=$1; shift
    local t0=$SECONDS out rc p f
    out="$(mktemp)"
    "$@" 2>&1 | tee "$out"; rc=${PIPESTATUS[0]}
    p="$(tail -n 5 "$out" | grep -oE "[0-9]+ passed" | tail -n 1 | grep -oE "[0-9]+" || echo 0)"
    f="$(tail -n 5 "$out" | grep -oE "[0-9]+ (failed|errors?)" | awk '{s += $1} END {print s + 0}')"
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    summary+=("$(printf '%-44s %5ss  rc=%s  %s passed, %s failed' "$name" $((SECONDS - t0)) "$rc" "$p" "$f")")
    rm -f "$out"
}

for v in "${versions[@]}"; do
    echo "=== Odoo $v ==="
    t_ver=$SECONDS
    prep="$(mktemp)"
    phase "odoo $v: prepare (tree, venv, template db)" bash -c "scripts/odoo-prepare.sh $v > $prep"
    if ! grep -q '^export ODOO_PYTHON=' "$prep"; then
        echo "odoo $v: prepare failed, its tests cannot run"; rm -f "$prep"; continue
    fi
    eval "$(grep '^export ' "$prep")"; rm -f "$prep"
    phase "odoo $v: module tests (in Odoo)" scripts/odoo-test.sh "$v"
    phase "odoo $v: integration + end-to-end (pytest)" "${pytest_cmd[@]}" -q -rfEsxp tests/integration/odoo -p no:cacheprovider
    summary+=("$(printf '%-44s %5ss' "odoo $v: total" $((SECONDS - t_ver)))")
    unset ODOO_SRC ODOO_PYTHON ODOO_TEMPLATE_DB ODOO_VERSION
done
echo "=== Odoo summary ==="
printf '%s\n' "${summary[@]}"
echo "odoo: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
