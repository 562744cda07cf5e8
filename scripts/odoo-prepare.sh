#!/usr/bin/env bash
# Prepare a local Odoo (17.0, 18.0 or 19.0) for the stock_sync_bridge tests, reproducibly.
#
#   scripts/odoo-prepare.sh [VERSION]          # VERSION: 17.0 (default), 18.0, 19.0
#
# Prints `export NAME=value` lines (ODOO_VERSION, ODOO_SRC, ODOO_PYTHON, ODOO_TEMPLATE_DB) at the
# end, so callers can `eval "$(scripts/odoo-prepare.sh 18.0 | grep '^export ')"`.
#
# - ODOO_SHARED   folder with the trimmed trees odoo-<ver>-trimmed.tar.gz and their pin files
#                 (default: ../shared/odoo beside this checkout)
# - ODOO_CACHE    where trees and venvs are kept between runs, never inside this repo
#                 (default: /var/cache/erp-bridge-odoo when writable, else ~/.cache/erp-bridge-odoo)
# - ODOO_SRC      use this extracted tree instead of unpacking one (its version must match)
# - ODOO_PYTHON   use this interpreter instead of the cached venv
# - ODOO_TEMPLATE_DB  template database (default: stock_sync_tmpl_<major>_<tree hash>); created
#                 once with sale_stock installed and no demo data, then copied with createdb -T
# The venv is keyed by a hash of requirements.txt, the extra pins, the build constraints and the
# Python version: it is rebuilt only when one of them changes. It gets the extra pins from
# ../shared/odoo (zope.interface/zope.event: without them multi-worker Odoo crash-loops with
# DistributionNotFound) and, for 18/19, is built with PIP_CONSTRAINT=the build constraints.
# PostgreSQL is installed/started by scripts/odoo-postgres.sh.
set -euo pipefail

VERSION="${1:-${ODOO_VERSION:-17.0}}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${ODOO_SHARED:-$HERE/../shared/odoo}"
if [ -z "${ODOO_CACHE:-}" ]; then
    if mkdir -p /var/cache/erp-bridge-odoo 2>/dev/null && [ -w /var/cache/erp-bridge-odoo ]; then
        ODOO_CACHE=/var/cache/erp-bridge-odoo
    else
        ODOO_CACHE="$HOME/.cache/erp-bridge-odoo"
    fi
fi
mkdir -p "$ODOO_CACHE"
major="${VERSION%%.*}"
say() { echo "odoo-prepare[$VERSION]: $*" >&2; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-12; }

"$HERE/scripts/odoo-postgres.sh" >&2

# 1. the source tree
tarball="$SHARED/odoo-$VERSION-trimmed.tar.gz"
if [ -z "${ODOO_SRC:-}" ]; then
    [ -f "$tarball" ] || { say "no $tarball (set ODOO_SHARED or ODOO_SRC)"; exit 3; }
    tree_key="$(sha256sum "$tarball" | cut -c1-12)"
    dest="$ODOO_CACHE/src-$VERSION-$tree_key"
    if [ ! -f "$dest/.complete" ]; then
        say "unpacking $tarball into $dest"
        rm -rf "$dest" && mkdir -p "$dest"
        tar -xzf "$tarball" -C "$dest"
        touch "$dest/.complete"
    fi
    ODOO_SRC="$dest/odoo-$VERSION"
else
    ODOO_SRC="$(cd "$ODOO_SRC" && pwd)"
    tree_key="$(echo "$ODOO_SRC" | sha256sum | cut -c1-12)"
fi
[ -f "$ODOO_SRC/odoo-bin" ] || { say "no odoo-bin in $ODOO_SRC"; exit 2; }

# 2. the venv (plus what tests need: odoorpc for benchmarks, websocket-client for the browser
# tours, which Odoo otherwise skips). python-ldap and psycopg2 come as sources only: they need these headers.
BUILD_DEPS=(gcc libldap2-dev libsasl2-dev libpq-dev)
TEST_PKGS="odoorpc websocket-client"
ensure_build_deps() {
    local missing=() pkg
    for pkg in "${BUILD_DEPS[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    # Debian's own python3 keeps its C headers in python3-dev (a pyenv build has them)
    python3 -c 'import os, sysconfig; os.stat(sysconfig.get_paths()["include"] + "/Python.h")' \
        2>/dev/null || missing+=(python3-dev)
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        say "missing build packages: sudo apt-get install -y ${missing[*]}"; exit 1
    fi
    say "installing build packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
extra="$SHARED/odoo-$VERSION.requirements-extra.txt"
constraints="$SHARED/odoo-$VERSION.build-constraints.txt"
if [ -z "${ODOO_PYTHON:-}" ]; then
    venv_key="$( (python3 --version; cat "$ODOO_SRC/requirements.txt" "$extra" "$constraints" 2>/dev/null; \
                  echo "$TEST_PKGS") | sha256sum | cut -c1-12)"
    VENV="${ODOO_VENV:-$ODOO_CACHE/venv-$VERSION-$venv_key}"
    if [ ! -f "$VENV/.complete" ]; then
        ensure_build_deps
        say "building venv $VENV (a minute or two)"
        rm -rf "$VENV"
        python3 -m venv "$VENV"
        pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
        "${pip[@]}" wheel
        if [ -f "$constraints" ]; then
            PIP_CONSTRAINT="$constraints" "${pip[@]}" -r "$ODOO_SRC/requirements.txt"
        else
            "${pip[@]}" -r "$ODOO_SRC/requirements.txt"
        fi
        if [ -f "$extra" ]; then "${pip[@]}" -r "$extra"; fi
        # shellcheck disable=SC2086
        "${pip[@]}" $TEST_PKGS
        touch "$VENV/.complete"
    fi
    ODOO_PYTHON="$VENV/bin/python"
fi

# 3. Chromium for the browser tours (HttpCase.start_tour), from Debian's packages
if ! command -v chromium >/dev/null 2>&1 && ! command -v google-chrome >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        say "installing chromium (browser tours)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        say "no chromium: the browser tours will fail; sudo apt-get install -y chromium"
    fi
fi

# 4. the template database
TEMPLATE_DB="${ODOO_TEMPLATE_DB:-stock_sync_tmpl_${major}_$tree_key}"
db_exists() { psql -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$1'" | grep -q 1; }
# reused only when its install finished: sale_stock installed is written last
template_ready() {
    db_exists "$TEMPLATE_DB" && psql -d "$TEMPLATE_DB" -Atc \
        "SELECT 1 FROM ir_module_module WHERE name = 'sale_stock' AND state = 'installed'" \
        2>/dev/null | grep -q 1
}
if template_ready; then
    say "template database $TEMPLATE_DB is ready (reused)"
else
    if db_exists "$TEMPLATE_DB"; then dropdb "$TEMPLATE_DB"; fi
    say "creating template database $TEMPLATE_DB (sale_stock, no demo; about a minute)"
    "$ODOO_PYTHON" "$ODOO_SRC/odoo-bin" \
        --addons-path="$ODOO_SRC/addons,$ODOO_SRC/odoo/addons" \
        -d "$TEMPLATE_DB" -i sale_stock --without-demo=all --stop-after-init \
        --http-interface=127.0.0.1 --http-port=0 --log-level=warn >&2
    template_ready || { say "template install failed"; exit 1; }
fi
echo "export ODOO_VERSION=$VERSION"
echo "export ODOO_SRC=$ODOO_SRC"
echo "export ODOO_PYTHON=$ODOO_PYTHON"
echo "export ODOO_TEMPLATE_DB=$TEMPLATE_DB"
