"""A small durable ledger of documents a connector is about to post, for targets without an
idempotency header (SAP Business One Service Layer).

Before a document goes out, ``claim`` records an intent: the document key (a hash of the sorted
event keys, also written into the target's reference field) and every event key it carries. After
the target answered, ``done`` records the target's id for it, or ``drop`` forgets it when the target
certainly created nothing. An intent without an id is the unknown case (timeout, lost response,
crash): the connector searches the target for the document key before posting those events again,
whatever grouping they come back in. One event key belongs to at most one intent (primary key),
so two workers cannot both claim the same event.
"""
from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

#: a single event's key is used as it is (readable in the target) when it is at most this long
MAX_PLAIN_KEY = 100
SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (
    document_key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    doc_entry TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS intent_moves (
    move_key TEXT PRIMARY KEY,
    document_key TEXT NOT NULL REFERENCES intents(document_key) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS intent_moves_document ON intent_moves(document_key);
"""


def document_key(keys: Iterable[str]) -> str:
    """Deterministic for a set of event keys: the same events give the same key in any order."""
    unique = sorted(set(keys))
    if len(unique) == 1 and len(unique[0]) <= MAX_PLAIN_KEY:
        return unique[0]
    digest = hashlib.sha256("\n".join(unique).encode()).hexdigest()[:40]
    return f"bridge-doc:{digest}"  # 51 chars: fits an alphanumeric UDF (max 254)


@dataclass(frozen=True)
class Intent:
    document_key: str
    kind: str
    keys: tuple[str, ...]
    doc_entry: str | None
    created_at: float


class Ledger:
    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()  # one connection shared by the dispatcher's threads
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(SCHEMA)

    def intents_for(self, move_keys: Sequence[str]) -> list[Intent]:
        """Every recorded intent that carries one of ``move_keys`` (with all of its keys)."""
        with self._lock:
            docs = self._documents_of(move_keys)
            return [self._intent(doc) for doc in docs]

    def claim(self, doc_key: str, kind: str, move_keys: Sequence[str]) -> bool:
        """Record the intent durably (before the POST); False if another attempt holds a key."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")  # also serialises other processes on this file
                self._db.execute("INSERT INTO intents(document_key, kind, created_at) VALUES (?, ?, ?)",
                                 (doc_key, kind, self._clock()))
                self._db.executemany("INSERT INTO intent_moves(move_key, document_key) VALUES (?, ?)",
                                     [(k, doc_key) for k in dict.fromkeys(move_keys)])
                self._db.execute("COMMIT")
                return True
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                return False

    def done(self, doc_key: str, doc_entry: str | int | None) -> None:
        """The target has the document (``doc_entry`` is its id, '?' when it did not say)."""
        entry = "?" if doc_entry is None else str(doc_entry)
        with self._lock:
            self._db.execute("UPDATE intents SET doc_entry = ? WHERE document_key = ?", (entry, doc_key))

    def drop(self, doc_key: str) -> None:
        """The target certainly has no such document: its events are free to be posted again."""
        with self._lock:
            self._db.execute("DELETE FROM intents WHERE document_key = ?", (doc_key,))

    def prune(self, older_than_s: float) -> int:
        """Forget finished documents older than this; their events must never come back after."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM intents WHERE doc_entry IS NOT NULL AND created_at < ?",
                                      (self._clock() - older_than_s,))
            return cursor.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _documents_of(self, move_keys: Sequence[str]) -> list[str]:
        found: list[str] = []
        for start in range(0, len(move_keys), 500):  # stay under SQLite's bound-parameter limit
            chunk = list(move_keys[start:start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT DISTINCT document_key FROM intent_moves WHERE move_key IN ({marks})",
                                    chunk).fetchall()
            found.extend(r[0] for r in rows if r[0] not in found)
        return found

    def _intent(self, doc_key: str) -> Intent:
        kind, entry, created = self._db.execute(
            "SELECT kind, doc_entry, created_at FROM intents WHERE document_key = ?", (doc_key,)).fetchone()
        keys = tuple(r[0] for r in self._db.execute(
            "SELECT move_key FROM intent_moves WHERE document_key = ? ORDER BY move_key", (doc_key,)))
        return Intent(doc_key, kind, keys, entry, created)
