"""A durable inbox for channel webhooks: the verified delivery (an order, or for BigCommerce only its
id: ``{"data": {"type": "order", "id": 250}}``) is stored here, committed, before it is answered
2xx; turning it into stock changes happens later, in a worker (sync/inbox.InboxPoller), so a slow
or failing vendor API neither holds the platform's delivery open nor loses it.

It also remembers which change keys were stored in the queue (``counted``), for a year: platforms
repeat an order's lines in every status update, weeks later too (shipped, completed), long after
the queue has forgotten the keys it delivered (``queue.retention_days``). A key is recorded only
after its entry was stored, so a crash in between can never suppress a change that was not stored.

Kept in the queue's own storage (like the ledger), keyed by the delivery's own id: a redelivery of
the same event is stored once. A row is ``done`` only after the stock changes it became were
stored in the queue; a crash in between fetches it again, and the changes' keys make that a no-op.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .ledger import sqlite_path

#: done references are forgotten after this long; platforms stop redelivering well before (BigCommerce: 48 h)
KEEP_DONE_S = 7 * 86400.0
#: change keys stay counted this long: an order updated later than that is counted again
KEEP_COUNTED_S = 400 * 86400.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_inbox (
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
CREATE INDEX IF NOT EXISTS webhook_inbox_due ON webhook_inbox(system, done_at, next_at);
CREATE TABLE IF NOT EXISTS channel_counted (
    system TEXT NOT NULL,
    key TEXT NOT NULL,
    counted_at REAL NOT NULL,
    PRIMARY KEY (system, key)
);
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

    def add(self, ref: str, payload: dict[str, Any]) -> bool:
        """Store a verified reference durably; False when it was already there (a redelivery)."""
        now = self._clock()
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO webhook_inbox(system, ref, payload, received_at, next_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (self.system, ref, json.dumps(payload, sort_keys=True), now, now))
            return cursor.rowcount == 1

    def due(self, limit: int = 50) -> list[Reference]:
        """Pending references whose next attempt is due, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ref, payload, attempts, received_at FROM webhook_inbox WHERE system = ? AND done_at IS NULL "
                "AND next_at <= ? ORDER BY received_at LIMIT ?", (self.system, self._clock(), limit)).fetchall()
        return [Reference(ref, json.loads(payload), attempts, received) for ref, payload, attempts, received in rows]

    def done(self, ref: str) -> None:
        now = self._clock()
        with self._lock:
            self._db.execute("UPDATE webhook_inbox SET done_at = ?, last_error = NULL WHERE system = ? AND ref = ?",
                             (now, self.system, ref))
            self._db.execute("DELETE FROM webhook_inbox WHERE system = ? AND done_at < ?",
                             (self.system, now - KEEP_DONE_S))

    def retry(self, ref: str, error: str, after_s: float) -> None:
        """The fetch failed: count it, keep the reason (for status and logs), try again later."""
        with self._lock:
            self._db.execute("UPDATE webhook_inbox SET attempts = attempts + 1, last_error = ?, next_at = ? "
                             "WHERE system = ? AND ref = ?", (error, self._clock() + after_s, self.system, ref))

    def counted(self, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` were stored in the queue before (by an earlier delivery)."""
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in self._db.execute(
                    f"SELECT key FROM channel_counted WHERE system = ? AND key IN ({marks})", [self.system, *chunk]))
        return found

    def record(self, keys: Sequence[str]) -> None:
        """``keys`` are stored in the queue now: a later delivery repeating them changes nothing."""
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO channel_counted(system, key, counted_at) "
                                     "VALUES (?, ?, ?)", [(self.system, key, now) for key in keys])
                self._db.execute("DELETE FROM channel_counted WHERE system = ? AND counted_at < ?",
                                 (self.system, now - KEEP_COUNTED_S))
            except sqlite3.Error:
                self._db.execute("ROLLBACK")  # not recorded: a repeat is then dropped by the queue's key
                raise
            self._db.execute("COMMIT")

    def pending(self) -> list[tuple[str, int, str | None]]:
        """(ref, attempts, last error) of every reference not yet done (status, tests)."""
        with self._lock:
            return self._db.execute("SELECT ref, attempts, last_error FROM webhook_inbox WHERE system = ? AND "
                                    "done_at IS NULL ORDER BY received_at", (self.system,)).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
