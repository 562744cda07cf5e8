"""PostgreSQL storage: one connection pool per database and process, versioned migrations that
run once per database, and LISTEN/NOTIFY wake-ups.

Every process (``serve`` or ``worker``, on any host) opens the same database. The schema is
created by numbered migrations recorded in ``bridge_schema``; the first process to open a
database applies what is missing under an advisory lock, every other one finds it done.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import Buffer, Loader
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import ConfigError
from . import json_loads, redacted
from .schema import MIGRATIONS

log = logging.getLogger(__name__)
T = TypeVar("T")
#: any constant: the advisory lock that serialises migrations across processes
MIGRATION_LOCK = 0x6272_6964_6765  # "bridge"
#: NOTIFY channel: work was queued (idle workers lease instead of waiting for their poll)
CHANNEL = "bridge_queue"
#: NOTIFY channel: changes were applied to a system of record and acked; the payload is a JSON
#: array of their [item, location] keys, or "*" (too many for one payload: any key). Every
#: process's pull cache forgets those keys' figures (postgres_sql.ACK_ANNOUNCING sends it at the ack's commit)
APPLIED = "bridge_applied"
#: the longest payload PostgreSQL takes is 8,000 bytes; a longer key list is sent as "*"
APPLIED_MAX = 7_900
Conn = psycopg.Connection[DictRow]
Cursor = psycopg.Cursor[DictRow]

_pools: dict[str, tuple[ConnectionPool[Conn], int]] = {}
_pools_lock = threading.Lock()


class StorageUnavailable(ConfigError):
    """The database cannot be reached or refused the connection (the message says why)."""


def acquire(url: str, max_size: int = 16, connect_timeout_s: float = 10.0) -> ConnectionPool[Conn]:
    """The process's pool for ``url`` (shared by the queue, figures and ledgers); migrated.
    Pair every call with ``release(url)``."""
    with _pools_lock:
        pool, users = _pools.get(url, (None, 0))
        if pool is None:
            pool = _open(url, max_size, connect_timeout_s)
        _pools[url] = (pool, users + 1)
        return pool


def release(url: str) -> None:
    with _pools_lock:
        pool, users = _pools.get(url, (None, 0))
        if pool is None:
            return
        if users > 1:
            _pools[url] = (pool, users - 1)
            return
        del _pools[url]
    pool.close()


#: how a bridge process names its sessions: APP_NAME + "<host>:<pid>"
APP_NAME = "erp-bridge "


def named(url: str) -> dict[str, Any]:
    """Connection arguments that name this process in ``pg_stat_activity.application_name``:
    ``erp-bridge <host>:<pid>``, the name its worker leases carry, so an operator sees which
    process holds a connection, a lock or a transaction. A name set in ``url`` is kept."""
    try:
        if "application_name" in conninfo_to_dict(url):
            return {}
    except psycopg.ProgrammingError:  # a malformed URL: libpq says what is wrong when it connects
        return {}
    return {"application_name": f"{APP_NAME}{socket.gethostname()}:{os.getpid()}"[:63]}


#: the bridge processes on this database (their sessions named by ``named``), the caller's own left out
PROCESSES = ("SELECT substr(application_name, length(%(prefix)s) + 1) AS process, count(*) AS sessions,"
             " to_char(min(backend_start) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS since"
             " FROM pg_stat_activity WHERE datname = current_database() AND starts_with(application_name, %(prefix)s)"
             " AND application_name <> current_setting('application_name') GROUP BY application_name ORDER BY 1")


def processes(pool: ConnectionPool[Conn]) -> list[dict[str, Any]]:
    """``Queue.processes`` on PostgreSQL."""
    with reading(pool) as conn:
        return [dict(row) for row in conn.execute(PROCESSES, {"prefix": APP_NAME})]


def _open(url: str, max_size: int, connect_timeout_s: float) -> ConnectionPool[Conn]:
    timeout = max(1, int(connect_timeout_s))
    try:  # one direct connection first: a refused or misspelt URL fails now, in libpq's words
        with psycopg.connect(url, row_factory=dict_row, connect_timeout=timeout, **named(url)) as conn:
            migrate(conn)
    except psycopg.OperationalError as exc:
        raise StorageUnavailable(_why(url, exc)) from None
    pool: ConnectionPool[Conn] = ConnectionPool(
        url, min_size=1, max_size=max_size, timeout=30.0, open=False, name="erp-bridge", configure=_configure,
        # autocommit: a read is one round trip, and a transaction is what ``run`` opens explicitly
        kwargs={"row_factory": dict_row, "connect_timeout": timeout, "autocommit": True, **named(url)})
    pool.open()
    try:
        pool.wait(timeout=connect_timeout_s)
    except PoolTimeout as exc:
        pool.close()
        raise StorageUnavailable(_why(url, exc)) from None
    return pool


class _JsonbLoader(Loader):
    """jsonb columns (a queue entry's payload, read for every leased entry): ``json_loads``, the
    SQLite queue's reader too. psycopg's own loader goes through json.loads on bytes (encoding
    detection, a copy): 7.7 us for a typical payload, the stdlib's scan alone 2.3 us. Only jsonb:
    a json value keeps its input's text, whitespace around it included."""

    def load(self, data: Buffer) -> Any:
        return json_loads(bytes(data))


def _configure(conn: Conn) -> None:
    conn.adapters.register_loader("jsonb", _JsonbLoader)


def _why(url: str, exc: BaseException) -> str:
    reason = str(exc).strip() or type(exc).__name__
    return (f"queue url {redacted(url)}: PostgreSQL cannot be reached: {reason} (start the server, or "
            "fix host, port, database, user or password in queue.url)")


def _one(conn: Conn, sql: str) -> dict[str, Any]:
    row = conn.execute(sql).fetchone()
    assert row is not None  # these statements always answer one row
    return row


def migrate(conn: Conn) -> list[int]:
    """Apply the migrations this database lacks, once, in order; returns the versions applied."""
    if _one(conn, "SELECT current_schema() AS s")["s"] is None:
        path = _one(conn, "SHOW search_path")["search_path"]
        raise ConfigError(f"queue url: no schema of search_path {path!r} exists in this database: create it "
                          "(CREATE SCHEMA ...) or drop the search_path option from queue.url")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS bridge_schema (version integer PRIMARY KEY,"
                     " description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r["version"] for r in conn.execute("SELECT version FROM bridge_schema")}
        applied = []
        for version, description, sql in MIGRATIONS:
            if version not in done:
                conn.execute(sql)
                conn.execute("INSERT INTO bridge_schema (version, description) VALUES (%s, %s)",
                             (version, description))
                applied.append(version)
    if applied:
        log.info("storage: applied migrations %s", applied)
    return applied


def versions(conn: Conn) -> list[int]:
    return [r["version"] for r in conn.execute("SELECT version FROM bridge_schema ORDER BY version")]


#: errors after which the whole transaction may simply run again
RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


def run(pool: ConnectionPool[Conn], work: Callable[[Conn], T], attempts: int = 5, pipeline: bool = False) -> T:
    """``work(conn)`` in one transaction, committed before this returns; run again after a
    deadlock or serialization failure (both leave nothing behind).

    ``pipeline``: the statements go to the server together and run as one transaction (one round
    trip when ``work`` reads no result before the end; a cursor it returns is read after the
    commit, from the results already received). On the pool's autocommit connections psycopg sends
    no Sync between them, only at the pipeline's end, and the server runs everything before a
    Sync as one implicit transaction, committed at the Sync (rolled back, with nothing after the
    failing statement run, on an error): BEGIN and COMMIT would be two more statements to send
    and execute, and psycopg's transaction() would sync after each."""
    for attempt in range(1, attempts + 1):
        try:
            with pool.connection() as conn:
                if not pipeline:
                    with conn.transaction():
                        return work(conn)
                assert conn.autocommit  # else psycopg would open a transaction of its own and sync
                with conn.pipeline():
                    result = _pipelined(conn, work)
                return result
        except RETRYABLE:
            if attempt == attempts:
                raise
            time.sleep(0.005 * attempt)
    raise AssertionError("unreachable")


def _pipelined(conn: Conn, work: Callable[[Conn], T]) -> T:
    try:
        return work(conn)
    except BaseException:
        # leaving the pipeline sends the Sync, which would commit what was queued so far: a
        # ROLLBACK queued first ends the implicit transaction with nothing of it kept
        with suppress(psycopg.Error):  # a pipeline aborted by a server error keeps nothing anyway
            conn.execute("ROLLBACK")
        raise


@contextmanager
def reading(pool: ConnectionPool[Conn], timeout_s: float | None = None) -> Iterator[Conn]:
    with pool.connection(timeout=timeout_s) as conn:
        yield conn


class Listener:
    """Calls the subscribers of a channel when a NOTIFY arrives on it (from any process), on a
    daemon thread with its own connection; reconnects after a failure. A lost notification only
    costs a worker its next poll (``CHANNEL``) or a pull cache its freshness: ``APPLIED``'s
    subscribers hear ``None`` (any key may be stale) at every (re)connection, since what was sent
    while the connection was down is lost."""

    def __init__(self, url: str):
        self._url = url
        self._callbacks: dict[str, list[Callable[..., Any]]] = {CHANNEL: [], APPLIED: []}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)
        self.ready = threading.Event()

    def subscribe(self, callback: Callable[[], Any]) -> None:
        """``callback()`` when work was queued or given back."""
        self._add(CHANNEL, callback)

    def subscribe_applied(self, callback: Callable[[list[tuple[str, str]] | None], Any]) -> None:
        """``callback(keys)`` when changes of these (item, location) keys were applied and acked by
        any process; ``None``: any key's (the list was too long, or notifications may be lost)."""
        self._add(APPLIED, callback)

    def _add(self, channel: str, callback: Callable[..., Any]) -> None:
        self._callbacks[channel].append(callback)
        if not self._thread.is_alive():
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(3)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=10, **named(self._url)) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    conn.execute(f"LISTEN {APPLIED}")
                    self._fire(APPLIED, None)  # what was sent before this connection listened is lost
                    self.ready.set()
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=0.5, stop_after=1):
                            if notice.channel == APPLIED:
                                self._fire(APPLIED, applied_keys(notice.payload))
                            else:
                                self._fire(CHANNEL)
            except psycopg.Error as exc:
                log.warning("storage: LISTEN lost (%s); workers poll and pull caches age out until it is back", exc)
                self._stop.wait(1.0)

    def _fire(self, channel: str, *args: Any) -> None:
        for callback in list(self._callbacks[channel]):
            try:
                callback(*args)
            except Exception:  # one subscriber's failure must not silence the others or the listener
                log.exception("storage: a %s subscriber failed", channel)


def applied_keys(payload: str) -> list[tuple[str, str]] | None:
    """An ``APPLIED`` payload's keys; None for "*" or anything unreadable (then any key may be stale)."""
    try:
        keys = json.loads(payload)
        return [(str(item), str(location)) for item, location in keys]
    except (ValueError, TypeError):
        return None
