"""A channel's inbox, in the queue's own storage (like the ledger): what the channel sent or what a
poller read, made durable and exactly once, for the channels whose webhooks are not facts alone.
It moves with the queue: the same SQLite file, or the same PostgreSQL database (then one inbox per
system for every process on every host).

Three parts, each used by the pollers in ``sync/``:

- **references** (``add`` / ``due`` / ``done`` / ``retry``): a verified delivery that still has to be
  turned into stock changes (BigCommerce sends only an order id; WooCommerce's order is resolved
  the same way), committed before the delivery is answered 2xx, resolved later by a worker
  (sync/inbox.InboxPoller), so a slow or failing vendor API neither holds the delivery open nor
  loses it. Keyed by the delivery's own id: a redelivery is stored once. A reference is ``done``
  only after the changes it became were stored in the queue; a crash in between resolves it again
  and the changes' keys make that a no-op.
- **keys** (``record`` / ``seen`` / ``known`` / ``forget``), by kind: a notification's event id
  (Square), a history entry's id, or a change key already stored in the queue (``counted``:
  platforms repeat an order's lines in status updates weeks later, long after the queue forgot
  the keys it delivered). A key is recorded only after what it stands for was stored.
- **cursors** (``cursor`` / ``advance``): how far a poller has read a channel's history
  (sync/channel_poll.ChannelPoller), so nothing between two polls, or during a downtime, is missed.
  ``exclusive(name)`` holds a lock of that name for every process on the storage, around a read,
  a vendor call and a write that must not interleave (a rotating refresh token, runtime/tokens.py).

Several processes (serve and worker, or two hosts on PostgreSQL) may run the same channel's
pollers on one inbox. ``record`` is one transaction that returns only the keys this call stored,
so of two processes recording the same key at once exactly one sees it as new (SQLite: the write
lock of ``BEGIN IMMEDIATE``; PostgreSQL: ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, which
waits for the other transaction's row and then skips it). ``due(lease_s=...)`` leases what it
hands out (see ``Inbox.due``), so two workers do not fetch the same order from the vendor at the
same time; a lease that runs out before the work is done (a crash, a very slow vendor) hands the
reference out again, and the counted keys and the queue's idempotency keys make that a no-op.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import errors as pg_errors

from ...dispatch.ratelimit import Limits, LocalLimits
from ...errors import RetryableError
from ...storage import POSTGRES, engine, sqlite_path
from ...storage import postgres as pg
from ...storage import sqlite as sqlite_store
from ...storage.limits import SharedLimits

#: done references are forgotten after this long; platforms stop redelivering well before (BigCommerce: 48 h)
KEEP_DONE_S = 7 * 86400.0
#: how long a reference handed out by ``due(lease_s=LEASE_S)`` is not handed out again: longer than
#: resolving a batch normally takes (vendor reads at the platform's rate), short enough that a
#: crashed worker's references are picked up again within minutes
LEASE_S = 120.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox_keys (
    system TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (system, kind, key)
);
CREATE TABLE IF NOT EXISTS inbox_cursors (
    system TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (system, name)
);
CREATE TABLE IF NOT EXISTS inbox_references (
    system TEXT NOT NULL,
    ref TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT,
    done_at REAL,
    PRIMARY KEY (system, ref)
);
CREATE INDEX IF NOT EXISTS inbox_references_due ON inbox_references(system, done_at, next_at);
"""


@dataclass(frozen=True)
class Reference:
    ref: str
    payload: dict[str, Any]
    attempts: int
    received_at: float


class Inbox:
    """One system's inbox in the queue's storage: the SQLite file, or the PostgreSQL database
    every process and host shares."""

    def __init__(self, storage_url: str, system: str, clock: Callable[[], float] = time.time):
        self.storage_url, self.system, self._clock = storage_url, system, clock
        self._store: _Store = _PgStore(storage_url) if engine(storage_url) == POSTGRES \
            else _SQLiteStore(sqlite_path(storage_url))

    # --- references -------------------------------------------------------------------------
    def add(self, ref: str, payload: dict[str, Any]) -> bool:
        """Store a verified reference durably; False when it was already there (a redelivery)."""
        return self._store.add(self.system, ref, json.dumps(payload, sort_keys=True), self._clock())

    def due(self, limit: int = 50, lease_s: float = 0.0) -> list[Reference]:
        """Pending references whose next attempt is due, oldest first.

        ``lease_s`` > 0 leases them to this caller (one transaction): none of them is due again,
        in any process, for ``lease_s`` unless ``retry`` sets another time first; ``done`` ends it.
        PostgreSQL takes them ``FOR UPDATE SKIP LOCKED``, so two workers polling at the same moment
        get different references instead of waiting for each other. Without a lease (the default)
        the same references are handed out until they are done or retried."""
        rows = self._store.due(self.system, limit, self._clock(), lease_s)
        return [Reference(ref, json.loads(payload), attempts, received) for ref, payload, attempts, received in rows]

    def done(self, ref: str) -> None:
        self._store.done(self.system, ref, self._clock())

    def retry(self, ref: str, error: str, after_s: float) -> None:
        """Resolving failed: count it, keep the reason (for status and logs), try again later."""
        self._store.retry(self.system, ref, error, self._clock() + after_s)

    def pending(self) -> list[tuple[str, int, str | None]]:
        """(ref, attempts, last error) of every reference not yet done (status, tests)."""
        return self._store.pending(self.system)

    # --- keys ---------------------------------------------------------------------------------
    def record(self, kind: str, keys: Sequence[str]) -> list[str]:
        """Store ``keys`` durably (one transaction); returns those that were new, in their order.
        Of two processes recording the same key at the same time, exactly one gets it back."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return []
        new = self._store.record(self.system, kind, unique, self._clock())
        return [k for k in unique if k in new]

    def seen(self, kind: str, key: str) -> bool:
        return bool(self.known(kind, [key]))

    def known(self, kind: str, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` were recorded before."""
        return self._store.known(self.system, kind, list(keys)) if keys else set()

    def forget(self, kind: str, older_than_s: float) -> int:
        """Drop keys older than this: once a cursor is past them, or a platform stops repeating
        them, they cannot come back."""
        return self._store.forget(self.system, kind, self._clock() - older_than_s)

    # --- cursors ------------------------------------------------------------------------------
    def cursor(self, name: str) -> str | None:
        return self._store.cursors(self.system, name).get((self.system, name))

    def advance(self, name: str, value: str) -> None:
        self._store.advance(self.system, name, value)

    def cursors(self, system: str | None = None) -> dict[tuple[str, str], str]:
        """Every stored cursor (of ``system``, or of all systems): status reads pollers' progress."""
        return self._store.cursors(system, None)

    def exclusive(self, name: str, wait_s: float = 60.0) -> AbstractContextManager[object]:
        """Held by one thread of one process on this storage at a time (SQLite: an ``flock`` on a
        file beside the database; PostgreSQL: a session advisory lock). A holder that dies takes
        its lock with it (the kernel closes its file; the server its connection); one that hangs
        (stopped, or cut off while its session stays open) makes the others wait ``wait_s``, then
        raise ``LockBusy``, a RetryableError: their work is tried again later, not stuck."""
        return self._store.exclusive(self.system, name, wait_s)

    def limits(self) -> Limits:
        """Makes rate buckets as every process on this storage shares them (a connector's own
        pacing of a vendor's limits beyond its mapping's, e.g. Amazon's per operation)."""
        return self._store.limits()

    def close(self) -> None:
        self._store.close()


#: (ref, payload as JSON text, attempts, received_at)
Row = tuple[str, str, int, float]


class LockBusy(RetryableError):
    """Another process held ``Inbox.exclusive``'s lock longer than the caller would wait."""

    def __init__(self, system: str, name: str, wait_s: float):
        super().__init__(f"{system}: another bridge process has held the lock on {name} for over {wait_s:g} s"
                         " (stopped, or its host cut off?); tried again later", after=wait_s)


class _Store(Protocol):
    def add(self, system: str, ref: str, payload: str, now: float) -> bool: ...
    def due(self, system: str, limit: int, now: float, lease_s: float) -> list[Row]: ...
    def done(self, system: str, ref: str, now: float) -> None: ...
    def retry(self, system: str, ref: str, error: str, next_at: float) -> None: ...
    def pending(self, system: str) -> list[tuple[str, int, str | None]]: ...
    def record(self, system: str, kind: str, keys: list[str], now: float) -> set[str]: ...
    def known(self, system: str, kind: str, keys: list[str]) -> set[str]: ...
    def forget(self, system: str, kind: str, cutoff: float) -> int: ...
    def cursors(self, system: str | None, name: str | None) -> dict[tuple[str, str], str]: ...
    def advance(self, system: str, name: str, value: str) -> None: ...
    def limits(self) -> Limits: ...
    def exclusive(self, system: str, name: str, wait_s: float) -> AbstractContextManager[object]: ...
    def close(self) -> None: ...


class _SQLiteStore:
    """The inbox tables in the queue's SQLite file (WAL, ``synchronous=FULL``, like the queue)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path.resolve()
        self._lock = threading.Lock()  # one connection shared by the pollers' threads
        self._db = sqlite_store.connect(path)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def add(self, system: str, ref: str, payload: str, now: float) -> bool:
        with self._lock:
            return self._db.execute("INSERT OR IGNORE INTO inbox_references(system, ref, payload, received_at, "
                                    "next_at) VALUES (?, ?, ?, ?, ?)", (system, ref, payload, now, now)).rowcount == 1

    def due(self, system: str, limit: int, now: float, lease_s: float) -> list[Row]:
        with self._lock:  # a lease writes: BEGIN IMMEDIATE, so another process cannot take the same rows
            if lease_s <= 0:
                return self._lease(system, limit, now, lease_s)
            return self._transaction(lambda: self._lease(system, limit, now, lease_s))

    def _lease(self, system: str, limit: int, now: float, lease_s: float) -> list[Row]:
        rows: list[Row] = self._db.execute(
            "SELECT ref, payload, attempts, received_at FROM inbox_references WHERE system = ? "
            "AND done_at IS NULL AND next_at <= ? ORDER BY received_at, ref LIMIT ?", (system, now, limit)).fetchall()
        if lease_s > 0:
            self._db.executemany("UPDATE inbox_references SET next_at = ? WHERE system = ? AND ref = ?",
                                 [(now + lease_s, system, r[0]) for r in rows])
        return rows

    def done(self, system: str, ref: str, now: float) -> None:
        with self._lock:
            self._db.execute("UPDATE inbox_references SET done_at = ?, last_error = NULL WHERE system = ? AND ref = ?",
                             (now, system, ref))
            self._db.execute("DELETE FROM inbox_references WHERE system = ? AND done_at < ?",
                             (system, now - KEEP_DONE_S))

    def retry(self, system: str, ref: str, error: str, next_at: float) -> None:
        with self._lock:
            self._db.execute("UPDATE inbox_references SET attempts = attempts + 1, last_error = ?, next_at = ? "
                             "WHERE system = ? AND ref = ?", (error, next_at, system, ref))

    def pending(self, system: str) -> list[tuple[str, int, str | None]]:
        with self._lock:
            return self._db.execute("SELECT ref, attempts, last_error FROM inbox_references WHERE system = ? AND "
                                    "done_at IS NULL ORDER BY received_at, ref", (system,)).fetchall()

    def record(self, system: str, kind: str, keys: list[str], now: float) -> set[str]:
        insert = "INSERT OR IGNORE INTO inbox_keys(system, kind, key, created_at) VALUES (?, ?, ?, ?)"
        with self._lock:  # BEGIN IMMEDIATE: also serialises other processes on this file
            return self._transaction(lambda: {k for k in keys if self._db.execute(
                insert, (system, kind, k, now)).rowcount == 1})

    def known(self, system: str, kind: str, keys: list[str]) -> set[str]:
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in self._db.execute(
                    f"SELECT key FROM inbox_keys WHERE system = ? AND kind = ? AND key IN ({marks})",
                    [system, kind, *chunk]))
        return found

    def forget(self, system: str, kind: str, cutoff: float) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM inbox_keys WHERE system = ? AND kind = ? AND created_at < ?",
                                    (system, kind, cutoff)).rowcount

    def cursors(self, system: str | None, name: str | None) -> dict[tuple[str, str], str]:
        with self._lock:
            rows = self._db.execute("SELECT system, name, value FROM inbox_cursors WHERE (? IS NULL OR system = ?) "
                                    "AND (? IS NULL OR name = ?) ORDER BY system, name",
                                    (system, system, name, name)).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def advance(self, system: str, name: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO inbox_cursors(system, name, value) VALUES (?, ?, ?) ON CONFLICT"
                             "(system, name) DO UPDATE SET value = excluded.value", (system, name, value))

    def limits(self) -> Limits:
        return LocalLimits()  # one process per file

    @contextmanager
    def exclusive(self, system: str, name: str, wait_s: float) -> Iterator[None]:
        # not SQLite's write lock: that would hold the whole queue through the holder's vendor call.
        # flock belongs to the open file, so two threads of one process exclude each other too, and
        # a CLI command (`erp-bridge reconcile`) the service running on the same file. Read-only:
        # a file created by another user (root running a command) still takes the lock
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{system}.{name}")
        fd = os.open(self._path.with_name(f"{self._path.name}.lock.{slug}"), os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            deadline, pause = time.monotonic() + wait_s, 0.005
            while True:  # flock cannot time out by itself; a renewal takes one token request
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockBusy(system, name, wait_s) from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.1)
            yield
        finally:
            os.close(fd)  # and with it the lock

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self, work: Callable[[], Any]) -> Any:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = work()
            self._db.execute("COMMIT")
            return result
        except BaseException:
            self._db.execute("ROLLBACK")
            raise


class _PgStore:
    """The inbox in the shared PostgreSQL database (tables of storage/schema.py, migration 4)."""

    def __init__(self, url: str):
        self._url, self._pool = url, pg.acquire(url)

    def add(self, system: str, ref: str, payload: str, now: float) -> bool:
        return bool(pg.run(self._pool, lambda conn: conn.execute(
            "INSERT INTO bridge_inbox_references (system, ref, payload, received_at, next_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", (system, ref, payload, now, now)).rowcount == 1))

    def due(self, system: str, limit: int, now: float, lease_s: float) -> list[Row]:
        args = {"s": system, "now": now, "n": limit, "until": now + lease_s}
        due = ("SELECT system, ref FROM bridge_inbox_references WHERE system = %(s)s AND done_at IS NULL"
               " AND next_at <= %(now)s ORDER BY received_at, ref LIMIT %(n)s")
        if lease_s <= 0:
            sql = f"SELECT ref, payload, attempts, received_at FROM bridge_inbox_references WHERE (system, ref) IN ({due})"
        else:  # rows another worker is leasing right now are skipped, not waited for
            sql = (f"UPDATE bridge_inbox_references r SET next_at = %(until)s FROM ({due} FOR UPDATE SKIP LOCKED) d"
                   " WHERE r.system = d.system AND r.ref = d.ref RETURNING r.ref, r.payload, r.attempts, r.received_at")
        rows = pg.run(self._pool, lambda conn: conn.execute(sql, args).fetchall())
        ordered = sorted(rows, key=lambda r: (r["received_at"], r["ref"]))
        return [(r["ref"], r["payload"], r["attempts"], r["received_at"]) for r in ordered]

    def done(self, system: str, ref: str, now: float) -> None:
        def work(conn: pg.Conn) -> None:
            conn.execute("UPDATE bridge_inbox_references SET done_at = %s, last_error = NULL"
                         " WHERE system = %s AND ref = %s", (now, system, ref))
            conn.execute("DELETE FROM bridge_inbox_references WHERE system = %s AND done_at < %s",
                         (system, now - KEEP_DONE_S))
        pg.run(self._pool, work)

    def retry(self, system: str, ref: str, error: str, next_at: float) -> None:
        pg.run(self._pool, lambda conn: conn.execute(
            "UPDATE bridge_inbox_references SET attempts = attempts + 1, last_error = %s, next_at = %s"
            " WHERE system = %s AND ref = %s", (error, next_at, system, ref)))

    def pending(self, system: str) -> list[tuple[str, int, str | None]]:
        with pg.reading(self._pool) as conn:
            rows = conn.execute("SELECT ref, attempts, last_error FROM bridge_inbox_references WHERE system = %s"
                                " AND done_at IS NULL ORDER BY received_at, ref", (system,)).fetchall()
        return [(r["ref"], r["attempts"], r["last_error"]) for r in rows]

    def record(self, system: str, kind: str, keys: list[str], now: float) -> set[str]:
        # sorted: concurrent transactions lock the keys in one order (no deadlock); a key another
        # transaction is inserting is waited for, then skipped if it committed
        rows = pg.run(self._pool, lambda conn: conn.execute(
            "INSERT INTO bridge_inbox_keys (system, kind, key, created_at) SELECT %s, %s, k, %s"
            " FROM unnest(%s::text[]) AS k ORDER BY k ON CONFLICT DO NOTHING RETURNING key",
            (system, kind, now, sorted(keys))).fetchall())
        return {r["key"] for r in rows}

    def known(self, system: str, kind: str, keys: list[str]) -> set[str]:
        with pg.reading(self._pool) as conn:
            rows = conn.execute("SELECT key FROM bridge_inbox_keys WHERE system = %s AND kind = %s AND key = ANY(%s)",
                                (system, kind, keys)).fetchall()
        return {r["key"] for r in rows}

    def forget(self, system: str, kind: str, cutoff: float) -> int:
        return int(pg.run(self._pool, lambda conn: conn.execute(
            "DELETE FROM bridge_inbox_keys WHERE system = %s AND kind = %s AND created_at < %s",
            (system, kind, cutoff)).rowcount))

    def cursors(self, system: str | None, name: str | None) -> dict[tuple[str, str], str]:
        with pg.reading(self._pool) as conn:
            rows = conn.execute("SELECT system, name, value FROM bridge_inbox_cursors WHERE (%(s)s::text IS NULL"
                                " OR system = %(s)s) AND (%(n)s::text IS NULL OR name = %(n)s) ORDER BY system, name",
                                {"s": system, "n": name}).fetchall()
        return {(r["system"], r["name"]): r["value"] for r in rows}

    def advance(self, system: str, name: str, value: str) -> None:
        pg.run(self._pool, lambda conn: conn.execute(
            "INSERT INTO bridge_inbox_cursors (system, name, value) VALUES (%s, %s, %s)"
            " ON CONFLICT (system, name) DO UPDATE SET value = excluded.value", (system, name, value)))

    def limits(self) -> Limits:
        return SharedLimits(self._pool)

    @contextmanager
    def exclusive(self, system: str, name: str, wait_s: float) -> Iterator[None]:
        key = {"space": "erp_bridge.inbox", "name": f"{system}:{name}", "wait": f"{max(1, int(wait_s * 1000))}ms"}
        with pg.reading(self._pool) as conn:  # autocommit: a session lock, held across the call
            try:  # lock_timeout bounds the wait; set and reset in one statement each (autocommit)
                conn.execute("SELECT set_config('lock_timeout', %(wait)s, false),"
                             " pg_advisory_lock(hashtext(%(space)s), hashtext(%(name)s))", key)
            except pg_errors.LockNotAvailable:
                raise LockBusy(system, name, wait_s) from None
            finally:
                with suppress(psycopg.Error):
                    conn.execute("RESET lock_timeout")
            try:
                yield
            finally:
                with suppress(psycopg.Error):  # a connection lost took its lock with it
                    conn.execute("SELECT pg_advisory_unlock(hashtext(%(space)s), hashtext(%(name)s))", key)

    def close(self) -> None:
        pg.release(self._url)
