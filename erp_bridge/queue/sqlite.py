"""The queue on SQLite (standard library), the embedded default.

Durability: WAL with ``synchronous=FULL``. Every commit fsyncs the WAL before it returns, so an
entry whose enqueue returned survives a power cut, not only a process crash (``NORMAL`` in WAL
mode may lose the last commits on power loss, and the bridge answers a webhook 2xx as soon as
``enqueue`` returns).

Ordering: the oldest unfinished entry of each ordering key carries ``head = 1`` and only heads are
leased. Every transition that finishes an entry promotes the next one in the same transaction, so
leasing never scans entries queued behind a busy or backing-off key.

Threads share one connection behind a lock; other processes (a CLI, a second worker) wait for the
write lock through ``busy_timeout``.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from . import sums
from .base import SALE_KINDS, Attempt, Entry, NewEntry, Outcome, RetryPolicy, State, TargetStats

log = logging.getLogger(__name__)

Clock = Callable[[], float]
OPEN = ("pending", "leased")

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL, kind TEXT NOT NULL, item TEXT NOT NULL, location TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, payload TEXT NOT NULL, quantity TEXT,
    coalescing INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL, head INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    leased_at REAL, lease_owner TEXT, lease_until REAL, last_error TEXT, superseded_by INTEGER,
    UNIQUE (target, idempotency_key)
);
CREATE INDEX IF NOT EXISTS entries_open ON entries (target, item, location, id)
    WHERE state IN ('pending', 'leased');
CREATE INDEX IF NOT EXISTS entries_due ON entries (available_at)
    WHERE head = 1 AND state = 'pending';
CREATE INDEX IF NOT EXISTS entries_lease ON entries (lease_until) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS entries_state ON entries (target, state);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id INTEGER NOT NULL REFERENCES entries (id), number INTEGER NOT NULL,
    worker TEXT NOT NULL, outcome TEXT NOT NULL, started_at REAL NOT NULL,
    duration_s REAL NOT NULL, error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_entry ON attempts (entry_id, id);
"""


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _at(epoch: float) -> datetime:
    """A timestamp column that is never NULL."""
    return datetime.fromtimestamp(epoch, UTC)


def _entry(row: sqlite3.Row, payload: dict | None = None) -> Entry:
    """An Entry from its row; ``payload``: the dict the row's JSON was just made from, if known."""
    quantity = row["quantity"]
    return Entry(
        id=row["id"], target=row["target"], kind=row["kind"], item=row["item"],
        location=row["location"], idempotency_key=row["idempotency_key"],
        payload=json.loads(row["payload"]) if payload is None else payload, quantity=None if quantity is None else Decimal(quantity),
        state=State(row["state"]), attempts=row["attempts"], available_at=_at(row["available_at"]),
        created_at=_at(row["created_at"]), updated_at=_at(row["updated_at"]),
        lease_owner=row["lease_owner"], lease_until=_dt(row["lease_until"]),
        last_error=row["last_error"], superseded_by=row["superseded_by"])


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class SQLiteQueue:
    """``Queue`` on one SQLite file. ``clock`` returns epoch seconds (inject a fake in tests)."""

    def __init__(self, path: str | Path, policy: RetryPolicy | None = None,
                 clock: Clock = time.time, busy_timeout_s: float = 30.0, synchronous: str = "FULL"):
        if synchronous not in ("FULL", "NORMAL", "OFF"):  # NORMAL/OFF: benchmarks only, see above
            raise ValueError(f"synchronous must be FULL, NORMAL or OFF, not {synchronous!r}")
        self.path = str(path)
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(SCHEMA)  # idempotent; runs in its own transaction
        sums.sqlite_install(self._db)  # running sums for pending_quantity (an older file: backfilled)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: two processes leasing at once must not both
        # read the same heads and then fail to upgrade their read lock.
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, args: Sequence = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- enqueue ------------------------------------------------------------------------------

    def enqueue(self, entries: Sequence[NewEntry]) -> list[Entry]:
        with self._tx() as db:
            now = self._clock()
            return [self._enqueue_one(db, new, now) for new in entries]

    def _enqueue_one(self, db: sqlite3.Connection, new: NewEntry, now: float) -> Entry:
        replaced = self._coalescable(db, new) if new.coalesce else None
        # a replacement keeps the older entry's backoff: a newer marker must not dodge Retry-After
        available_at = max(now, replaced["available_at"]) if replaced else now
        row = db.execute(
            "INSERT INTO entries (target, kind, item, location, idempotency_key, payload, quantity,"
            " coalescing, state, available_at, created_at, updated_at, head)"
            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?10, ?10, NOT EXISTS (SELECT 1"
            " FROM entries WHERE target = ?1 AND item = ?3 AND location = ?4"
            " AND state IN ('pending', 'leased'))) ON CONFLICT (target, idempotency_key) DO NOTHING"
            " RETURNING *",
            (new.target, new.kind, new.item, new.location, new.idempotency_key,
             json.dumps(new.payload, default=str), None if new.quantity is None else str(new.quantity),
             int(new.coalesce), available_at, now)).fetchone()
        if row is None:  # a duplicate: the stored entry, unchanged (its own payload)
            return _entry(db.execute("SELECT * FROM entries WHERE target = ? AND idempotency_key = ?",
                                     (new.target, new.idempotency_key)).fetchone())
        if replaced:
            db.execute("UPDATE entries SET state = 'done', head = 0, superseded_by = ?, updated_at = ?"
                       " WHERE id = ?", (row["id"], now, replaced["id"]))
            self._promote(db, new.target, new.item, new.location)
            row = self._row(db, row["id"])
        return _entry(row, new.payload)  # just stored from this dict: no need to parse it back

    def _coalescable(self, db: sqlite3.Connection, new: NewEntry) -> sqlite3.Row | None:
        return db.execute(
            "SELECT id, available_at FROM entries WHERE target = ? AND item = ? AND location = ?"
            " AND state = 'pending' AND kind = ? AND coalescing = 1 ORDER BY id DESC LIMIT 1",
            (new.target, new.item, new.location, new.kind)).fetchone()

    def _promote_keys(self, db: sqlite3.Connection, keys: Collection[tuple[str, str, str]]) -> None:
        for chunk in _chunks(list(keys), 200):  # stay under SQLite's bound-parameter limit
            db.execute(
                "UPDATE entries SET head = 1 WHERE id IN (SELECT (SELECT min(id) FROM entries e"
                " WHERE e.target = k.column1 AND e.item = k.column2 AND e.location = k.column3"
                " AND e.state IN ('pending', 'leased')) FROM"
                f" (VALUES {', '.join(['(?, ?, ?)'] * len(chunk))}) AS k)"
                " AND NOT EXISTS (SELECT 1 FROM entries h WHERE h.target = entries.target"
                " AND h.item = entries.item AND h.location = entries.location"
                " AND h.state IN ('pending', 'leased') AND h.head = 1)",
                [v for key in chunk for v in key])

    def _promote(self, db: sqlite3.Connection, target: str, item: str, location: str) -> None:
        """Make the oldest unfinished entry of the key its head, unless the key has one."""
        db.execute(
            "UPDATE entries SET head = 1 WHERE id = (SELECT min(id) FROM entries WHERE target = ?1"
            " AND item = ?2 AND location = ?3 AND state IN ('pending', 'leased'))"
            " AND NOT EXISTS (SELECT 1 FROM entries WHERE target = ?1 AND item = ?2"
            " AND location = ?3 AND state IN ('pending', 'leased') AND head = 1)",
            (target, item, location))

    def _row(self, db: sqlite3.Connection, entry_id: int) -> sqlite3.Row | None:
        return db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()

    def _entry_now(self, db: sqlite3.Connection, entry_id: int) -> Entry:
        """The entry as it is now, inside a transaction that just wrote it (so it exists)."""
        row = self._row(db, entry_id)
        assert row is not None, entry_id
        return _entry(row)

    # -- lease --------------------------------------------------------------------------------

    def lease(self, worker: str, limit: int, lease_s: float,
              targets: Collection[str] | None = None) -> list[Entry]:
        with self._tx() as db:
            now = self._clock()
            ids = [row["id"] for row in self._due(db, now, limit, targets)
                   if row["state"] == "pending" or self._expire(db, row, now)]
            rows = db.execute(
                f"UPDATE entries SET state = 'leased', lease_owner = ?, lease_until = ?, leased_at = ?,"
                f" updated_at = ? WHERE id IN ({', '.join('?' * len(ids))}) RETURNING *",
                (worker, now + lease_s, now, now, *ids)).fetchall() if ids else []
            return sorted((_entry(r) for r in rows), key=lambda e: (e.available_at, e.id))

    def _due(self, db: sqlite3.Connection, now: float, limit: int,
             targets: Collection[str] | None) -> list[sqlite3.Row]:
        where, args = "", []
        if targets is not None:
            targets = list(targets)
            if not targets:
                return []
            where = f" AND target IN ({', '.join('?' * len(targets))})"
        sql = (f"SELECT * FROM entries WHERE head = 1 AND state = 'pending' AND available_at <= ?{where}"
               f" UNION ALL SELECT * FROM entries WHERE state = 'leased' AND lease_until <= ?{where}"
               " ORDER BY available_at, id LIMIT ?")
        args = [now, *(targets or ()), now, *(targets or ()), limit]
        return db.execute(sql, args).fetchall()

    def lease_owners(self) -> list[str]:
        rows = self._read("SELECT DISTINCT lease_owner FROM entries WHERE state = 'leased' AND lease_until > ?"
                          " ORDER BY lease_owner", (self._clock(),))
        return [row["lease_owner"] for row in rows]

    def reclaim(self, owners: Collection[str]) -> int:
        owners = list(owners)
        if not owners:
            return 0
        with self._tx() as db:
            now = self._clock()
            rows = db.execute(f"SELECT * FROM entries WHERE state = 'leased' AND lease_owner IN"
                              f" ({', '.join('?' * len(owners))})", owners).fetchall()
            for row in rows:
                if self._expire(db, row, now):
                    db.execute("UPDATE entries SET state = 'pending', lease_owner = NULL, lease_until = NULL,"
                               " updated_at = ? WHERE id = ?", (now, row["id"]))
            return len(rows)

    def _expire(self, db: sqlite3.Connection, row: sqlite3.Row, now: float) -> bool:
        """A lease ran out (its worker died or hung): count the lost attempt, so an entry that
        kills every worker that touches it ends in the dead letters. True if it may be leased."""
        attempts = row["attempts"] + 1
        error = f"lease expired: worker {row['lease_owner']} did not finish"
        dead = self.policy.exhausted(attempts, row["kind"])
        self._record(db, row["id"], attempts, row["lease_owner"],
                     Outcome.DEAD if dead else Outcome.RETRY, row["leased_at"] or now,
                     now - (row["leased_at"] or now), error)
        db.execute("UPDATE entries SET attempts = ?, last_error = ? WHERE id = ?",
                   (attempts, error, row["id"]))
        if dead:
            self._finish(db, row, "dead", now)
        return not dead

    # -- outcomes -----------------------------------------------------------------------------

    def ack(self, entry_ids: Sequence[int], worker: str, duration_s: float = 0.0) -> None:
        if not entry_ids:
            return
        with self._tx() as db:
            now = self._clock()
            rows = db.execute(
                f"UPDATE entries SET state = 'done', head = 0, attempts = attempts + 1, updated_at = ?,"
                f" lease_owner = NULL, lease_until = NULL WHERE id IN ({', '.join('?' * len(entry_ids))})"
                f" AND state = 'leased' AND lease_owner = ? RETURNING id, attempts, target, item, location",
                (now, *entry_ids, worker)).fetchall()
            if len(rows) < len(entry_ids):
                lost = set(entry_ids) - {r["id"] for r in rows}
                log.warning("entries %s are not leased by %s; ack ignored", sorted(lost), worker)
            db.executemany(
                "INSERT INTO attempts (entry_id, number, worker, outcome, started_at, duration_s, error)"
                " VALUES (?, ?, ?, 'delivered', ?, ?, NULL)",
                [(r["id"], r["attempts"], worker, now - duration_s, duration_s) for r in rows])
            self._promote_keys(db, {(r["target"], r["item"], r["location"]) for r in rows})

    def fail(self, entry_id: int, worker: str, error: str, *, retryable: bool,
             retry_after: float | None = None, duration_s: float = 0.0) -> Entry:
        with self._tx() as db:
            now = self._clock()
            row = self._held(db, entry_id, worker)
            if row is None:
                return self._stored(db, entry_id)
            attempts = row["attempts"] + 1
            dead = not retryable or self.policy.exhausted(attempts, row["kind"])
            if not dead and row["kind"] in SALE_KINDS and self.policy.overdue(attempts):
                log.error("ALERT: %s %s to %s has failed %d attempts and is still retried (a sale "
                          "never dead-letters on a retryable failure): %s", row["kind"],
                          row["idempotency_key"], row["target"], attempts, error,
                          extra={"alert": "sale_overdue", "entry_id": entry_id, "target": row["target"],
                                 "attempt": attempts})
            self._record(db, entry_id, attempts, worker, Outcome.DEAD if dead else Outcome.RETRY,
                         now - duration_s, duration_s, error)
            db.execute("UPDATE entries SET attempts = ?, last_error = ? WHERE id = ?",
                       (attempts, error, entry_id))
            if dead:
                self._finish(db, row, "dead", now)
            else:
                due = now + self.policy.delay(attempts, retry_after)
                db.execute("UPDATE entries SET state = 'pending', available_at = ?, updated_at = ?,"
                           " lease_owner = NULL, lease_until = NULL WHERE id = ?", (due, now, entry_id))
            return self._entry_now(db, entry_id)

    def release(self, entry_ids: Sequence[int], worker: str, delay_s: float = 0.0) -> None:
        with self._tx() as db:
            now = self._clock()
            for entry_id in entry_ids:
                row = self._held(db, entry_id, worker)
                if row is None:
                    continue
                self._record(db, entry_id, row["attempts"] + 1, worker, Outcome.RELEASED,
                             row["leased_at"] or now, now - (row["leased_at"] or now), None)
                db.execute("UPDATE entries SET state = 'pending', updated_at = ?, lease_owner = NULL,"
                           " lease_until = NULL, available_at = max(available_at, ?) WHERE id = ?",
                           (now, now + delay_s, entry_id))

    def _held(self, db: sqlite3.Connection, entry_id: int, worker: str) -> sqlite3.Row | None:
        row = db.execute("SELECT * FROM entries WHERE id = ? AND state = 'leased' AND lease_owner = ?",
                         (entry_id, worker)).fetchone()
        if row is None:
            # the lease expired and someone else took the entry, or it was finished already
            log.warning("entry %s is not leased by %s; outcome ignored", entry_id, worker)
        return row

    def _stored(self, db: sqlite3.Connection, entry_id: int) -> Entry:
        row = self._row(db, entry_id)
        if row is None:
            raise KeyError(entry_id)
        return _entry(row)

    def _finish(self, db: sqlite3.Connection, row: sqlite3.Row, state: str, now: float) -> None:
        db.execute("UPDATE entries SET state = ?, head = 0, updated_at = ?, lease_owner = NULL,"
                   " lease_until = NULL WHERE id = ?", (state, now, row["id"]))
        self._promote(db, row["target"], row["item"], row["location"])

    def _record(self, db: sqlite3.Connection, entry_id: int, number: int, worker: str,
                outcome: Outcome, started_at: float, duration_s: float, error: str | None) -> None:
        db.execute("INSERT INTO attempts (entry_id, number, worker, outcome, started_at, duration_s,"
                   " error) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (entry_id, number, worker, outcome.value, started_at, duration_s, error))

    # -- inspection and dead letters ----------------------------------------------------------

    def get(self, entry_id: int) -> Entry | None:
        rows = self._read("SELECT * FROM entries WHERE id = ?", (entry_id,))
        return _entry(rows[0]) if rows else None

    def attempts(self, entry_id: int) -> list[Attempt]:
        rows = self._read("SELECT * FROM attempts WHERE entry_id = ? ORDER BY id", (entry_id,))
        return [Attempt(entry_id=r["entry_id"], number=r["number"], worker=r["worker"],
                        outcome=Outcome(r["outcome"]), started_at=_at(r["started_at"]),
                        duration_s=r["duration_s"], error=r["error"]) for r in rows]

    def dead_letters(self, target: str | None = None, limit: int = 100, offset: int = 0) -> list[Entry]:
        where, args = ("AND target = ?", [target]) if target is not None else ("", [])
        rows = self._read(f"SELECT * FROM entries WHERE state = 'dead' {where} ORDER BY id"
                          " LIMIT ? OFFSET ?", [*args, limit, offset])
        return [_entry(r) for r in rows]

    def subscribe(self, callback: Callable[[], Any]) -> None:
        """One process per SQLite file: its own enqueues wake its workers already."""

    def unfinished(self, target: str, limit: int = 100_000) -> list[Entry]:
        rows = self._read("SELECT * FROM entries WHERE state IN ('pending', 'leased') AND target = ? ORDER BY id"
                          " LIMIT ?", [target, limit])
        return [_entry(r) for r in rows]

    def replay(self, entry_id: int) -> Entry:
        with self._tx() as db:
            row = self._row(db, entry_id)
            if row is None:
                raise KeyError(entry_id)
            if row["state"] != "dead":
                raise ValueError(f"entry {entry_id} is {row['state']}, only dead entries are replayed")
            now = self._clock()
            db.execute("UPDATE entries SET state = 'pending', attempts = 0, available_at = ?,"
                       " updated_at = ? WHERE id = ?", (now, now, entry_id))
            self._promote(db, row["target"], row["item"], row["location"])
            return self._entry_now(db, entry_id)

    def discard(self, entry_id: int, reason: str, who: str = "operator") -> Entry:
        reason = (reason or "").strip()
        if not reason:
            raise ValueError("a discard needs a reason (it is recorded)")
        with self._tx() as db:
            row = self._row(db, entry_id)
            if row is None:
                raise KeyError(entry_id)
            if row["state"] != "dead":
                raise ValueError(f"entry {entry_id} is {row['state']}, only dead entries are discarded")
            now = self._clock()
            error = f"discarded by {who}: {reason}"
            self._record(db, entry_id, row["attempts"], who, Outcome.DISCARDED, now, 0.0, error)
            db.execute("UPDATE entries SET state = 'discarded', last_error = ?, updated_at = ? WHERE id = ?",
                       (error, now, entry_id))
            return self._entry_now(db, entry_id)

    def stats(self) -> list[TargetStats]:
        now = self._clock()
        depth: dict[str, dict[State, int]] = {}
        for r in self._read("SELECT target, state, count(*) AS n FROM entries GROUP BY target, state"):
            depth.setdefault(r["target"], {s: 0 for s in State})[State(r["state"])] = r["n"]
        oldest = {r["target"]: r["t"] for r in self._read(
            "SELECT target, min(created_at) AS t FROM entries WHERE state = 'pending' GROUP BY target")}
        return [TargetStats(target=t, depth=d,
                            oldest_pending_age_s=max(0.0, now - oldest[t]) if t in oldest else None)
                for t, d in sorted(depth.items())]

    def pending_quantity(self, target: str, item: str, location: str,
                         kinds: Collection[str] | None = None, done_since: float | None = None) -> Decimal:
        with self._lock:  # O(1) in the key's backlog: the sums the triggers keep (sums.py)
            return sums.sqlite_pending(self._db, (target, item, location), kinds, done_since)

    def purge_done(self, older_than_s: float) -> int:
        with self._tx() as db:
            cutoff = self._clock() - older_than_s
            db.execute("DELETE FROM attempts WHERE entry_id IN (SELECT id FROM entries"
                       " WHERE state = 'done' AND updated_at < ?)", (cutoff,))
            return db.execute("DELETE FROM entries WHERE state = 'done' AND updated_at < ?", (cutoff,)).rowcount

    def ping(self) -> None:
        self._read("SELECT 1")

    def close(self) -> None:
        with self._lock:
            self._db.close()
