#!/usr/bin/env bash
# Make sure a PostgreSQL server runs on this machine and the current user can create databases
# through the default socket. As root on Debian: installs `postgresql` with apt when missing,
# creates/starts the cluster with pg_ctlcluster, and creates a superuser role named after the
# current user (Odoo refuses to connect as `postgres`). Idempotent; prints what it did.
set -euo pipefail

if psql -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
    echo "postgresql: reachable as $(id -un)"; exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "PostgreSQL is not reachable as $(id -un) and this is not root: install and start it" \
         "(sudo apt-get install -y postgresql), then run: sudo -u postgres createuser -s $(id -un)" >&2
    exit 1
fi
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    echo "postgresql: installing the Debian package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq postgresql >/dev/null
fi
ver="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if ! pg_lsclusters -h | grep -q .; then
    pg_createcluster "$ver" main >/dev/null
fi
read -r cver cname _ < <(pg_lsclusters -h | head -n 1)
if ! pg_lsclusters -h | head -n 1 | grep -q online; then
    echo "postgresql: starting cluster $cver/$cname"
    pg_ctlcluster "$cver" "$cname" start
fi
for _ in $(seq 1 30); do
    su postgres -c "psql -Atc 'SELECT 1'" >/dev/null 2>&1 && break
    sleep 1
done
me="$(id -un)"
if ! su postgres -c "psql -Atc \"SELECT 1 FROM pg_roles WHERE rolname = '$me'\"" | grep -q 1; then
    su postgres -c "createuser -s '$me'"
fi
psql -d postgres -Atc 'SELECT 1' >/dev/null
echo "postgresql: $cver/$cname running, role $me"
