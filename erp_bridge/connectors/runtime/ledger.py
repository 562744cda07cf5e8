"""The idempotency ledger for targets without an idempotency key of their own (SAP Business One,
Zoho Inventory, ...), kept in the queue's own storage so that it moves with the queue: the same
SQLite file, or the same PostgreSQL database (then one ledger for every process on every host).

Before a document goes out, ``claim`` records an intent: the document key (a hash of the sorted
event keys, also written into the target's reference field) and every event key it carries. After
the target answered, ``done`` records the target's id for it, or ``drop`` forgets it when the target
certainly created nothing. An intent without an id is the unknown case (timeout, lost response,
crash): the writer searches the target for the document key before posting those events again,
whatever grouping they come back in. One event key belongs to at most one intent per system
(primary key), so two workers, or two processes on the same storage, cannot both claim it.
"""
from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psycopg

from ...storage import POSTGRES, SQLITE, engine, sqlite_path
from ...storage import postgres as pg
from ...storage import sqlite as sqlite_store

#: a single event's key is used as it is (readable in the target) when it is at most this long
MAX_PLAIN_KEY = 100
SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_intents (
    system TEXT NOT NULL,
    document_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    doc_entry TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (system, document_key)
);
CREATE TABLE IF NOT EXISTS ledger_moves (
    system TEXT NOT NULL,
    move_key TEXT NOT NULL,
    document_key TEXT NOT NULL,
    PRIMARY KEY (system, move_key),
    FOREIGN KEY (system, document_key) REFERENCES ledger_intents(system, document_key) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ledger_moves_document ON ledger_moves(system, document_key);
"""


def document_key(keys: Iterable[str]) -> str:
    """Deterministic for a set of event keys: the same events give the same key in any order."""
    unique = sorted(set(keys))
    if len(unique) == 1 and len(unique[0]) <= MAX_PLAIN_KEY:
        return unique[0]
    digest = hashlib.sha256("\n".join(unique).encode()).hexdigest()[:40]
    return f"bridge-doc:{digest}"  # 51 chars: fits SAP's alphanumeric UDF (254) and Zoho's reference (50+)


@dataclass(frozen=True)
class Intent:
    document_key: str
    kind: str
    keys: tuple[str, ...]
    doc_entry: str | None
    created_at: float


class Ledger:
    """A system's ledger in the queue's storage: the SQLite file, or the PostgreSQL database every
    process and host shares (so a claim made on one host holds for all)."""

    def __init__(self, storage_url: str, system: str, clock: Callable[[], float] = time.time):
        self.storage_url, self.system, self._clock = storage_url, system, clock
        self._store: _Store = _PgStore(storage_url) if engine(storage_url) == POSTGRES \
            else _SQLiteStore(sqlite_path(storage_url))

    def intents_for(self, move_keys: Sequence[str]) -> list[Intent]:
        """Every recorded intent that carries one of ``move_keys`` (with all of its keys)."""
        return self._store.intents_for(self.system, list(move_keys))

    def claim(self, doc_key: str, kind: str, move_keys: Sequence[str]) -> bool:
        """Record the intent durably (before the POST); False if another attempt holds a key."""
        return self._store.claim(self.system, doc_key, kind, sorted(set(move_keys)), self._clock())

    def done(self, doc_key: str, doc_entry: str | int | None) -> None:
        """The target has the document (``doc_entry`` is its id, '?' when it did not say)."""
        self._store.done(self.system, doc_key, "?" if doc_entry is None else str(doc_entry))

    def drop(self, doc_key: str) -> None:
        """The target certainly has no such document: its events are free to be posted again."""
        self._store.drop(self.system, doc_key)

    def recent(self, since: float, limit: int) -> list[Intent]:
        """Documents the target confirmed (an id recorded), created at or after ``since``, oldest
        first: what reconciliation checks the target still holds exactly once."""
        return self._store.recent(self.system, since, limit)

    def close(self) -> None:
        self._store.close()


class _Store(Protocol):
    def intents_for(self, system: str, move_keys: list[str]) -> list[Intent]: ...
    def claim(self, system: str, doc_key: str, kind: str, move_keys: list[str], now: float) -> bool: ...
    def done(self, system: str, doc_key: str, doc_entry: str) -> None: ...
    def drop(self, system: str, doc_key: str) -> None: ...
    def prune(self, cutoff: float) -> int: ...
    def recent(self, system: str, since: float, limit: int) -> list[Intent]: ...
    def close(self) -> None: ...


class _SQLiteStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one connection shared by the dispatcher's threads
        self._db = sqlite_store.connect(path)
        for pragma in ("synchronous=FULL", "foreign_keys=ON"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(SCHEMA)

    def intents_for(self, system: str, move_keys: list[str]) -> list[Intent]:
        with self._lock:
            return [self._intent(system, doc) for doc in self._documents_of(system, move_keys)]

    def claim(self, system: str, doc_key: str, kind: str, move_keys: list[str], now: float) -> bool:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")  # also serialises other processes on this file
                self._db.execute("INSERT INTO ledger_intents(system, document_key, kind, created_at) "
                                 "VALUES (?, ?, ?, ?)", (system, doc_key, kind, now))
                self._db.executemany("INSERT INTO ledger_moves(system, move_key, document_key) VALUES (?, ?, ?)",
                                     [(system, k, doc_key) for k in move_keys])
                self._db.execute("COMMIT")
                return True
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                return False

    def done(self, system: str, doc_key: str, doc_entry: str) -> None:
        with self._lock:
            self._db.execute("UPDATE ledger_intents SET doc_entry = ? WHERE system = ? AND document_key = ?",
                             (doc_entry, system, doc_key))

    def drop(self, system: str, doc_key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM ledger_intents WHERE system = ? AND document_key = ?", (system, doc_key))

    def prune(self, cutoff: float) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM ledger_intents WHERE doc_entry IS NOT NULL AND created_at < ?",
                                    (cutoff,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def recent(self, system: str, since: float, limit: int) -> list[Intent]:
        with self._lock:
            docs = [r[0] for r in self._db.execute(
                "SELECT document_key FROM ledger_intents WHERE system = ? AND doc_entry IS NOT NULL AND created_at >= ?"
                " ORDER BY created_at, document_key LIMIT ?", (system, since, limit))]
            return [self._intent(system, doc) for doc in docs]

    def _documents_of(self, system: str, move_keys: list[str]) -> list[str]:
        found: list[str] = []
        for start in range(0, len(move_keys), 500):  # stay under SQLite's bound-parameter limit
            chunk = move_keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT DISTINCT document_key FROM ledger_moves WHERE system = ? "
                                    f"AND move_key IN ({marks})", [system, *chunk]).fetchall()
            found.extend(r[0] for r in rows if r[0] not in found)
        return found

    def _intent(self, system: str, doc_key: str) -> Intent:
        kind, entry, created = self._db.execute(
            "SELECT kind, doc_entry, created_at FROM ledger_intents WHERE system = ? AND document_key = ?",
            (system, doc_key)).fetchone()
        keys = tuple(r[0] for r in self._db.execute(
            "SELECT move_key FROM ledger_moves WHERE system = ? AND document_key = ? ORDER BY move_key",
            (system, doc_key)))
        return Intent(doc_key, kind, keys, entry, created)


class _PgStore:
    """The ledger in the shared PostgreSQL database (tables of storage/schema.py)."""

    def __init__(self, url: str):
        self._url, self._pool = url, pg.acquire(url)

    def intents_for(self, system: str, move_keys: list[str]) -> list[Intent]:
        with pg.reading(self._pool) as conn:
            rows = conn.execute(
                "SELECT i.document_key, i.kind, i.doc_entry, i.created_at, array_agg(m.move_key ORDER BY m.move_key)"
                " AS keys FROM bridge_ledger_intents i JOIN bridge_ledger_moves m USING (system, document_key)"
                " WHERE i.system = %(s)s AND i.document_key IN (SELECT document_key FROM bridge_ledger_moves"
                " WHERE system = %(s)s AND move_key = ANY(%(k)s)) GROUP BY i.document_key, i.kind, i.doc_entry,"
                " i.created_at ORDER BY i.created_at, i.document_key", {"s": system, "k": move_keys}).fetchall()
        return [Intent(r["document_key"], r["kind"], tuple(r["keys"]), r["doc_entry"], r["created_at"]) for r in rows]

    def claim(self, system: str, doc_key: str, kind: str, move_keys: list[str], now: float) -> bool:
        def work(conn: pg.Conn) -> bool:
            try:
                with conn.transaction():  # a savepoint: a key held by another intent undoes only this
                    conn.execute("INSERT INTO bridge_ledger_intents (system, document_key, kind, created_at)"
                                 " VALUES (%s, %s, %s, %s)", (system, doc_key, kind, now))
                    with conn.cursor() as cur:
                        cur.executemany("INSERT INTO bridge_ledger_moves (system, move_key, document_key)"
                                        " VALUES (%s, %s, %s)", [(system, k, doc_key) for k in move_keys])
                return True
            except psycopg.errors.UniqueViolation:
                return False
        return bool(pg.run(self._pool, work))

    def done(self, system: str, doc_key: str, doc_entry: str) -> None:
        pg.run(self._pool, lambda conn: conn.execute(
            "UPDATE bridge_ledger_intents SET doc_entry = %s WHERE system = %s AND document_key = %s",
            (doc_entry, system, doc_key)))

    def drop(self, system: str, doc_key: str) -> None:
        pg.run(self._pool, lambda conn: conn.execute(
            "DELETE FROM bridge_ledger_intents WHERE system = %s AND document_key = %s", (system, doc_key)))

    def recent(self, system: str, since: float, limit: int) -> list[Intent]:
        with pg.reading(self._pool) as conn:
            rows = conn.execute(
                "SELECT i.document_key, i.kind, i.doc_entry, i.created_at, array_agg(m.move_key ORDER BY m.move_key)"
                " AS keys FROM bridge_ledger_intents i JOIN bridge_ledger_moves m USING (system, document_key)"
                " WHERE i.system = %s AND i.doc_entry IS NOT NULL AND i.created_at >= %s GROUP BY i.document_key,"
                " i.kind, i.doc_entry, i.created_at ORDER BY i.created_at, i.document_key LIMIT %s",
                (system, since, limit)).fetchall()
        return [Intent(r["document_key"], r["kind"], tuple(r["keys"]), r["doc_entry"], r["created_at"]) for r in rows]

    def prune(self, cutoff: float) -> int:
        return int(pg.run(self._pool, lambda conn: conn.execute(
            "DELETE FROM bridge_ledger_intents WHERE doc_entry IS NOT NULL AND created_at < %s", (cutoff,)).rowcount))

    def close(self) -> None:
        pg.release(self._url)


def prune(storage_url: str, older_than_s: float, clock: Callable[[], float] = time.time) -> int:
    """Forget finished documents of every system older than this (the queue's retention); their
    events never come back after it. Unfinished intents are kept: they still settle a lost answer."""
    if engine(storage_url) == SQLITE and not sqlite_path(storage_url).exists():
        return 0
    store: _Store = _PgStore(storage_url) if engine(storage_url) == POSTGRES else _SQLiteStore(sqlite_path(storage_url))
    try:
        return store.prune(clock() - older_than_s)
    finally:
        store.close()
