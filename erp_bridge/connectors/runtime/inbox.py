"""A channel's inbox, in the queue's storage: what a poller has seen and how far it has read.

For platforms whose notifications are nudges rather than facts (Square's counts are absolute; its
order events carry no stock movement), the facts are read from the platform's own history by a
poller (sync/channel_poll.py). The inbox makes that exactly once and durable:

- ``record(kind, key)`` stores a key once and says whether it is new: a notification's event id
  (committed before the webhook is answered 2xx) or a history entry's id (after its queue entries
  are stored, so a crash in between reads it again and the queue's idempotency keys absorb it);
- ``cursor`` / ``advance``: how far the history has been read, so nothing between two polls, or
  during a downtime, is missed.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from typing import Callable, Sequence

from .ledger import sqlite_path

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
"""


class Inbox:
    def __init__(self, storage_url: str, system: str, clock: Callable[[], float] = time.time):
        self.path, self.system, self._clock = sqlite_path(storage_url), system, clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        for pragma in ("journal_mode=WAL", "synchronous=FULL"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(SCHEMA)

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
        with self._lock:
            return self._db.execute("SELECT 1 FROM inbox_keys WHERE system = ? AND kind = ? AND key = ?",
                                    (self.system, kind, key)).fetchone() is not None

    def cursor(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM inbox_cursors WHERE system = ? AND name = ?",
                                   (self.system, name)).fetchone()
            return row[0] if row else None

    def advance(self, name: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO inbox_cursors(system, name, value) VALUES (?, ?, ?) ON CONFLICT"
                             "(system, name) DO UPDATE SET value = excluded.value", (self.system, name, value))

    def forget(self, kind: str, older_than_s: float) -> int:
        """Drop keys older than this: once the cursor is past them they cannot come back."""
        with self._lock:
            return self._db.execute("DELETE FROM inbox_keys WHERE system = ? AND kind = ? AND created_at < ?",
                                    (self.system, kind, self._clock() - older_than_s)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _insert(self, kind: str, key: str) -> bool:
        return self._db.execute("INSERT OR IGNORE INTO inbox_keys(system, kind, key, created_at) VALUES (?, ?, ?, ?)",
                                (self.system, kind, key, self._clock())).rowcount == 1
