"""A real PostgreSQL for tests: each test gets its own schema in the database ``erp_bridge_test``
(created when missing) and a storage URL that selects it, so tests never see each other's rows.

The server is ``ERP_BRIDGE_TEST_PG`` (a libpq URL, default ``postgresql:///postgres``: the local
socket as the current user, which ``scripts/odoo-postgres.sh`` sets up). When none is reachable the
PostgreSQL tests skip and say why and how to get one; set ``ERP_BRIDGE_REQUIRE_PG=1`` (CI does)
to make that a failure instead.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from functools import lru_cache
from urllib.parse import quote

import psycopg
import pytest

ADMIN_URL = os.environ.get("ERP_BRIDGE_TEST_PG", "postgresql:///postgres")
DATABASE = "erp_bridge_test"


@lru_cache(maxsize=1)
def _base_url() -> str:
    """The test database's URL, or raises psycopg.Error with the server's reason."""
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            try:
                conn.execute(f"CREATE DATABASE {DATABASE}")
            except psycopg.errors.DuplicateDatabase:  # another test process won the race
                pass
    scheme, _, rest = ADMIN_URL.partition("://")
    netloc, _, tail = rest.partition("/")
    query = tail.partition("?")[2]
    return f"{scheme}://{netloc}/{DATABASE}" + (f"?{query}" if query else "")


def reachable() -> str | None:
    """None if a server is there; else why not (for the skip message)."""
    try:
        _base_url()
        return None
    except psycopg.Error as exc:
        _base_url.cache_clear()
        return (f"no PostgreSQL reachable at {ADMIN_URL} ({str(exc).strip() or type(exc).__name__}); "
                "run scripts/odoo-postgres.sh (installs and starts one) or set ERP_BRIDGE_TEST_PG")


def require() -> str:
    """The test database URL; skips (or fails under ERP_BRIDGE_REQUIRE_PG=1) without a server."""
    why = reachable()
    if why:
        if os.environ.get("ERP_BRIDGE_REQUIRE_PG") == "1":
            pytest.fail(f"ERP_BRIDGE_REQUIRE_PG=1 but {why}")
        pytest.skip(why)
    return _base_url()


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options={quote(f'-csearch_path={schema}', safe='')}"


def fresh_schema() -> Iterator[str]:
    """A storage URL on a new, empty schema; dropped afterwards."""
    base = require()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_schema()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage_url(request, tmp_path) -> Iterator[str]:
    """The queue's storage on each engine in turn: a SQLite file in ``tmp_path``, then a fresh
    PostgreSQL schema (skipped, or failed under ERP_BRIDGE_REQUIRE_PG=1, without a server)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/queue.sqlite3"
    else:
        yield from fresh_schema()


def other_host(storage: str) -> str:
    """The same storage as another process or host opens it: its own SQLite connection, or its
    own PostgreSQL connection pool (the pools are kept per URL)."""
    return storage if storage.startswith("sqlite") else storage + "&application_name=other-host"
