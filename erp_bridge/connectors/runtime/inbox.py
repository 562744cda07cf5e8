"""A channel's inbox, in the queue's own storage (like the ledger): what the channel sent or what a
poller read, made durable and exactly once, for the channels whose webhooks are not facts alone.

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
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...storage import sqlite_path

#: done references are forgotten after this long; platforms stop redelivering well before (BigCommerce: 48 h)
KEEP_DONE_S = 7 * 86400.0
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
    def __init__(self, storage_url: str, system: str, clock: Callable[[], float] = time.time):
        self.path, self.system, self._clock = sqlite_path(storage_url), system, clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        for pragma in ("journal_mode=WAL", "synchronous=FULL"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(SCHEMA)

    # --- references -------------------------------------------------------------------------
    def add(self, ref: str, payload: dict[str, Any]) -> bool:
        """Store a verified reference durably; False when it was already there (a redelivery)."""
        now = self._clock()
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO inbox_references(system, ref, payload, received_at, next_at) "
                "VALUES (?, ?, ?, ?, ?)", (self.system, ref, json.dumps(payload, sort_keys=True), now, now))
            return cursor.rowcount == 1

    def due(self, limit: int = 50) -> list[Reference]:
        """Pending references whose next attempt is due, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ref, payload, attempts, received_at FROM inbox_references WHERE system = ? "
                "AND done_at IS NULL AND next_at <= ? ORDER BY received_at LIMIT ?",
                (self.system, self._clock(), limit)).fetchall()
        return [Reference(ref, json.loads(payload), attempts, received) for ref, payload, attempts, received in rows]

    def done(self, ref: str) -> None:
        now = self._clock()
        with self._lock:
            self._db.execute("UPDATE inbox_references SET done_at = ?, last_error = NULL WHERE system = ? AND ref = ?",
                             (now, self.system, ref))
            self._db.execute("DELETE FROM inbox_references WHERE system = ? AND done_at < ?",
                             (self.system, now - KEEP_DONE_S))

    def retry(self, ref: str, error: str, after_s: float) -> None:
        """Resolving failed: count it, keep the reason (for status and logs), try again later."""
        with self._lock:
            self._db.execute("UPDATE inbox_references SET attempts = attempts + 1, last_error = ?, next_at = ? "
                             "WHERE system = ? AND ref = ?", (error, self._clock() + after_s, self.system, ref))

    def pending(self) -> list[tuple[str, int, str | None]]:
        """(ref, attempts, last error) of every reference not yet done (status, tests)."""
        with self._lock:
            return self._db.execute("SELECT ref, attempts, last_error FROM inbox_references WHERE system = ? AND "
                                    "done_at IS NULL ORDER BY received_at", (self.system,)).fetchall()

    # --- keys ---------------------------------------------------------------------------------
    def record(self, kind: str, keys: Sequence[str]) -> list[str]:
        """Store ``keys`` durably (one transaction); returns those that were new."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                new = [k for k in dict.fromkeys(keys) if self._insert(kind, k)]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return new

    def seen(self, kind: str, key: str) -> bool:
        return bool(self.known(kind, [key]))

    def known(self, kind: str, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` were recorded before."""
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in self._db.execute(
                    f"SELECT key FROM inbox_keys WHERE system = ? AND kind = ? AND key IN ({marks})",
                    [self.system, kind, *chunk]))
        return found

    def forget(self, kind: str, older_than_s: float) -> int:
        """Drop keys older than this: once a cursor is past them, or a platform stops repeating
        them, they cannot come back."""
        with self._lock:
            return self._db.execute("DELETE FROM inbox_keys WHERE system = ? AND kind = ? AND created_at < ?",
                                    (self.system, kind, self._clock() - older_than_s)).rowcount

    # --- cursors ------------------------------------------------------------------------------
    def cursor(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM inbox_cursors WHERE system = ? AND name = ?",
                                   (self.system, name)).fetchone()
            return row[0] if row else None

    def advance(self, name: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO inbox_cursors(system, name, value) VALUES (?, ?, ?) ON CONFLICT"
                             "(system, name) DO UPDATE SET value = excluded.value", (self.system, name, value))

    def cursors(self, system: str | None = None) -> dict[tuple[str, str], str]:
        """Every stored cursor (of ``system``, or of all systems): status reads pollers' progress."""
        with self._lock:
            rows = self._db.execute("SELECT system, name, value FROM inbox_cursors WHERE ? IS NULL OR system = ? "
                                    "ORDER BY system, name", (system, system)).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _insert(self, kind: str, key: str) -> bool:
        return self._db.execute("INSERT OR IGNORE INTO inbox_keys(system, kind, key, created_at) VALUES (?, ?, ?, ?)",
                                (self.system, kind, key, self._clock())).rowcount == 1
