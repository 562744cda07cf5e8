"""The idempotency ledger for targets without an idempotency key of their own (SAP Business One,
Zoho Inventory, ...), kept in the queue's own storage so that it moves with the queue.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ...errors import ConfigError

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


def sqlite_path(storage_url: str) -> Path:
    """The file a ``sqlite:///path`` storage URL names (the queue's own database)."""
    path = storage_url.removeprefix("sqlite:///")
    if not path or path == storage_url:
        raise ConfigError(f"ledger storage {storage_url!r}: only the SQLite queue (sqlite:///<path>) "
                          "keeps ledgers in this version")
    return Path(path)


class Ledger:
    def __init__(self, storage_url: str, system: str, clock: Callable[[], float] = time.time):
        self.path, self.system = sqlite_path(storage_url), system
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
                self._db.execute("INSERT INTO ledger_intents(system, document_key, kind, created_at) "
                                 "VALUES (?, ?, ?, ?)", (self.system, doc_key, kind, self._clock()))
                self._db.executemany("INSERT INTO ledger_moves(system, move_key, document_key) VALUES (?, ?, ?)",
                                     [(self.system, k, doc_key) for k in dict.fromkeys(move_keys)])
                self._db.execute("COMMIT")
                return True
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                return False

    def done(self, doc_key: str, doc_entry: str | int | None) -> None:
        """The target has the document (``doc_entry`` is its id, '?' when it did not say)."""
        entry = "?" if doc_entry is None else str(doc_entry)
        with self._lock:
            self._db.execute("UPDATE ledger_intents SET doc_entry = ? WHERE system = ? AND document_key = ?",
                             (entry, self.system, doc_key))

    def drop(self, doc_key: str) -> None:
        """The target certainly has no such document: its events are free to be posted again."""
        with self._lock:
            self._db.execute("DELETE FROM ledger_intents WHERE system = ? AND document_key = ?",
                             (self.system, doc_key))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _documents_of(self, move_keys: Sequence[str]) -> list[str]:
        found: list[str] = []
        for start in range(0, len(move_keys), 500):  # stay under SQLite's bound-parameter limit
            chunk = list(move_keys[start:start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT DISTINCT document_key FROM ledger_moves WHERE system = ? "
                                    f"AND move_key IN ({marks})", [self.system, *chunk]).fetchall()
            found.extend(r[0] for r in rows if r[0] not in found)
        return found

    def _intent(self, doc_key: str) -> Intent:
        kind, entry, created = self._db.execute(
            "SELECT kind, doc_entry, created_at FROM ledger_intents WHERE system = ? AND document_key = ?",
            (self.system, doc_key)).fetchone()
        keys = tuple(r[0] for r in self._db.execute(
            "SELECT move_key FROM ledger_moves WHERE system = ? AND document_key = ? ORDER BY move_key",
            (self.system, doc_key)))
        return Intent(doc_key, kind, keys, entry, created)


def prune(storage_url: str, older_than_s: float, clock: Callable[[], float] = time.time) -> int:
    """Forget finished documents of every system older than this (the queue's retention); their
    events never come back after it. Unfinished intents are kept: they still settle a lost answer."""
    path = sqlite_path(storage_url)
    if not path.exists():
        return 0
    with sqlite3.connect(path, isolation_level=None, timeout=30) as db:
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(SCHEMA)
        cursor = db.execute("DELETE FROM ledger_intents WHERE doc_entry IS NOT NULL AND created_at < ?",
                            (clock() - older_than_s,))
        count = cursor.rowcount
    db.close()
    return count
