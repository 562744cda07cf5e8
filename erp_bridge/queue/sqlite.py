"""The queue on SQLite (standard library), the embedded default.

Durability: WAL. The commit that stores new work (``enqueue``) runs at ``synchronous=FULL``: it
fsyncs the WAL before it returns, so an entry whose enqueue returned survives a power cut, not
only a process crash (the bridge answers a webhook 2xx as soon as ``enqueue`` returns). The
commits of ``lease`` and ``ack``, the hot path's other two, run at ``synchronous=NORMAL``: safe
against a process crash (kill -9) like every commit, and a power cut can lose only the last of
them, never an enqueue. Why that is enough:

- the WAL is one log, written and synced in order: the next FULL commit (any enqueue, fail,
  replay, a ledger claim on the same file) makes every earlier frame durable too, so what a power
  cut leaves is always a prefix of the committed history, never a hole;
- a lost lease leaves the entry pending: it is leased again, as after a crash before the lease;
- a lost ack leaves the entry leased by a worker that is gone: its lease expires (or is
  reclaimed at start) and it is delivered again, as after a kill -9 between delivery and ack,
  which the targets' own idempotency already covers (DESIGN.md: idempotency keys, the ledger,
  compare-and-set); until then its quantity still counts as pending, which understates
  availability, never overstates it.

Everything else (fail, release, reclaim, replay, discard, purge) stays FULL: rare, and
operator-visible decisions (a dead letter) should not silently come undone. For the same reason
a lease that dead-letters an entry whose lease ran out too often is rolled back and done again at
FULL (its usual commit is relaxed). A busy worker acks a batch and leases the next in one
transaction (``ack_and_lease``): two commits per cycle, the enqueue's and this one.

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
from decimal import Decimal
from itertools import groupby
from pathlib import Path
from typing import Any

from . import sqlite_batch, sums
from .base import SALE_KINDS, Attempt, Entry, NewEntry, Outcome, RetryPolicy, State, TargetStats
from .sqlite_rows import ENTRY_COLUMNS
from .sqlite_rows import at as _at
from .sqlite_rows import dumps as _dumps
from .sqlite_rows import entries as _entries
from .sqlite_rows import entry as _entry
from .sqlite_rows import new_entry as _new_entry

log = logging.getLogger(__name__)

Clock = Callable[[], float]
OPEN = ("pending", "leased")
#: per-commit durability, see above (scripts/bench_queue.py runs its ceilings at the same)
ENQUEUE_SYNCHRONOUS = "FULL"
LEASE_SYNCHRONOUS = "NORMAL"
_LEVELS = ("OFF", "NORMAL", "FULL")
#: page size of a new file (an existing one keeps its own: SQLite changes it only by VACUUM, never
#: in WAL mode). Every commit appends each page it dirtied to the WAL, and the FULL one fsyncs them:
#: a batch-1 cycle dirties about 12 pages (entries, its five indexes, the sums) for a few hundred
#: bytes of change, so 2 KiB pages write and sync half the bytes of 4 KiB ones (batch 1: about 8 %
#: more events/s; batch 64 unchanged; 1 KiB was no better at batch 1 and slower at 64, issue 15)
PAGE_SIZE = 2048

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL, kind TEXT NOT NULL, item TEXT NOT NULL, location TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, payload TEXT NOT NULL, quantity TEXT,
    coalescing INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL, head INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    leased_at REAL, lease_owner TEXT, lease_until REAL, last_error TEXT, superseded_by INTEGER,
    delivered_by TEXT, delivered_s REAL,
    UNIQUE (target, idempotency_key)
);
CREATE INDEX IF NOT EXISTS entries_open ON entries (target, item, location, id)
    WHERE state IN ('pending', 'leased');
CREATE INDEX IF NOT EXISTS entries_due ON entries (available_at)
    WHERE head = 1 AND state = 'pending';
CREATE INDEX IF NOT EXISTS entries_lease ON entries (lease_until) WHERE state = 'leased';
-- done entries by key (pending_quantity's done_since; stats and purge read the whole index:
-- with state a column, stats' count per target reads the index alone)
CREATE INDEX IF NOT EXISTS entries_done_key ON entries (target, item, location, updated_at, state)
    WHERE state = 'done';
CREATE INDEX IF NOT EXISTS entries_dead ON entries (state, target, id) WHERE state IN ('dead', 'discarded');
-- every attempt but the one that delivered: that one is the done entry's delivered_by (worker) and
-- delivered_s (duration; it started at updated_at - delivered_s), so an ack writes no attempt row
-- and no attempts_entry key (DELIVERED_ATTEMPT reads it back).
-- attempts.id: no AUTOINCREMENT (nothing refers to it; ordered per entry all the same), so an
-- attempt does not write sqlite_sequence too (a file created before keeps its AUTOINCREMENT)
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    entry_id INTEGER NOT NULL REFERENCES entries (id), number INTEGER NOT NULL,
    worker TEXT NOT NULL, outcome TEXT NOT NULL, started_at REAL NOT NULL,
    duration_s REAL NOT NULL, error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_entry ON attempts (entry_id, id);
"""


#: a new non-coalescing entry: head unless its key has an unfinished entry (ON CONFLICT: duplicate)
PLAIN_INSERT = (
    "INSERT INTO entries (target, kind, item, location, idempotency_key, payload, quantity, coalescing,"
    " state, available_at, created_at, updated_at, head)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 'pending', ?8, ?8, ?8, NOT EXISTS (SELECT 1 FROM entries"
    " WHERE target = ?1 AND item = ?3 AND location = ?4 AND state IN ('pending', 'leased')))"
    " ON CONFLICT (target, idempotency_key) DO NOTHING")


#: in-place upgrade of a file an older version created (SCHEMA adds what is new): the wide
#: (target, state) index was written by every state change, three times per delivered entry; the
#: partial entries_done_key and entries_dead answer what it served (stats, dead letters, purge).
#: Two indexes of done entries (by target; by key with a quantity) became one (entries_done_key):
#: every ack wrote both.
UPGRADE = ("DROP INDEX IF EXISTS entries_state; DROP INDEX IF EXISTS entries_done;"
           " DROP INDEX IF EXISTS entries_done_quantity;")
#: columns a file of an older version lacks (ALTER TABLE ADD COLUMN: no copy of the table); SCHEMA
#: lists them last too, so ``SELECT *`` has the same columns in the same order either way
NEW_COLUMNS = {"delivered_by": "TEXT", "delivered_s": "REAL"}

#: an entry's attempts: the attempts rows (retries, expired leases, releases, dead letters,
#: discards; a file of an older version also has its delivered attempts there), then the delivered
#: attempt its row keeps (ack, since issue 15's third round), in the order they happened
ATTEMPTS_SQL = (
    "SELECT 0 AS part, id, entry_id, number, worker, outcome, started_at, duration_s, error FROM attempts"
    " WHERE entry_id = ?1 UNION ALL SELECT 1, id, id, attempts, delivered_by, 'delivered',"
    " updated_at - delivered_s, delivered_s, NULL FROM entries WHERE id = ?1 AND delivered_by IS NOT NULL"
    " ORDER BY part, id")


def _add_columns(db: sqlite3.Connection) -> None:
    """Add NEW_COLUMNS to a file an older version created (in place; a new file has them)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(entries)")}
    for name, kind in NEW_COLUMNS.items():
        if name not in have:
            db.execute(f"ALTER TABLE entries ADD COLUMN {name} {kind}")


#: depth per target and state, each part on the partial index whose predicate it repeats
STATS_SQL = (
    "SELECT target, state, count(*) AS n FROM entries WHERE state IN ('pending', 'leased') GROUP BY target, state"
    " UNION ALL SELECT target, 'done', count(*) FROM entries WHERE state = 'done' GROUP BY target"
    " UNION ALL SELECT target, state, count(*) FROM entries WHERE state IN ('dead', 'discarded')"
    " GROUP BY target, state")


def _sequence(db: sqlite3.Connection) -> int:
    """The last id AUTOINCREMENT gave: every new row's id is above it, each above the one before
    (n rows stored by n inserts and the sequence moved by n: their ids are consecutive)."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
    return row[0] if row else 0


class _MustSync(Exception):
    """A relaxed transaction found it must commit at full durability: it is rolled back, redone."""


def _target_filter(targets: Collection[str] | None) -> tuple[str | None, list[str]]:
    """SQL restricting a lease to ``targets`` (None: all) and its arguments; None: nothing to lease.
    The unary ``+`` keeps SQLite from answering by the unique (target, idempotency_key) index,
    which walks every entry of the targets, done ones too, at every lease: the lease's partial
    indexes (entries_due, entries_lease) hold only the heads and the leased entries."""
    if targets is None:
        return "", []
    scope = list(targets)
    return (f" AND +target IN ({', '.join('?' * len(scope))})" if scope else None), scope


def _add_sums(db: sqlite3.Connection, rows: list[tuple], sign: int) -> None:
    """The running sums (sums.py) of PLAIN_INSERT's argument rows: target, item, location, kind,
    quantity of each."""
    sums.sqlite_add(db, [(r[0], r[2], r[3], r[1], r[6]) for r in rows], sign)


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class SQLiteQueue:
    """``Queue`` on one SQLite file. ``clock`` returns epoch seconds (inject a fake in tests)."""

    quick_reads = True  # pending_quantity reads on its own connection: WAL readers never wait

    def __init__(self, path: str | Path, policy: RetryPolicy | None = None,
                 clock: Clock = time.time, busy_timeout_s: float = 30.0,
                 synchronous: str = ENQUEUE_SYNCHRONOUS):
        if synchronous not in _LEVELS:  # below FULL: benchmarks only, see above
            raise ValueError(f"synchronous must be FULL, NORMAL or OFF, not {synchronous!r}")
        self.path = str(path)
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before WAL writes a new file's header
        self._db.execute("PRAGMA journal_mode=WAL")
        self._durable = self._sync = synchronous
        self._relaxed = min(synchronous, LEASE_SYNCHRONOUS, key=_LEVELS.index)
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(SCHEMA + UPGRADE)  # idempotent; runs in its own transaction
        _add_columns(self._db)
        sums.sqlite_install(self._db)  # running sums for pending_quantity (an older file: backfilled)
        # pending_quantity's own connection: it never waits behind this one's commits (an fsync)
        self._reads_lock = threading.Lock()
        self._reader = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)

    @contextmanager
    def _tx(self, relaxed: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``relaxed``: its commit may be lost on power loss (see above)."""
        # IMMEDIATE takes the write lock up front: two processes leasing at once must not both
        # read the same heads and then fail to upgrade their read lock.
        with self._lock:
            self._commit_at(self._relaxed if relaxed else self._durable)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _commit_at(self, level: str) -> None:
        if level != self._sync:  # the pragma applies to this connection's next commits
            self._db.execute(f"PRAGMA synchronous={level}")
            self._sync = level

    def _read(self, sql: str, args: Sequence = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- enqueue ------------------------------------------------------------------------------

    def enqueue(self, entries: Sequence[NewEntry]) -> list[Entry]:
        with self._tx() as db:
            now = self._clock()
            # Markers among several entries (the intake's sales and refreshes): a few statements for
            # the whole batch (sqlite_batch.py) instead of about five per marker. Plain entries
            # only: one executemany, 10.5 against the batch path's 15.4 us per entry (64 keys).
            if len(entries) > 1 and any(new.coalesce for new in entries):
                return self._enqueue_batch(db, list(entries), now)
            out: list[Entry] = []
            for coalesce, run in groupby(entries, key=lambda new: new.coalesce):
                if coalesce:  # each may replace an entry, maybe one stored just before it
                    out += [self._enqueue_one(db, new, now) for new in run]
                else:
                    out += self._enqueue_plain(db, list(run), now)
            return out

    def _enqueue_batch(self, db: sqlite3.Connection, entries: list[NewEntry], now: float) -> list[Entry]:
        """What entry-by-entry enqueues would store, in four or five statements whatever the batch."""
        plan = sqlite_batch.plan(entries, now, _at(now), self._before(db, entries))
        for chunk in _chunks(plan.rows, 500):  # 15 parameters a row, under SQLite's bound
            db.execute(sqlite_batch.INSERT + ", ".join([sqlite_batch.ROW] * len(chunk)),
                       [v for row in chunk for v in sqlite_batch.values(row, now)])
        if not plan.rows or plan.rows[-1].id < plan.last_id:  # it ended with duplicates: their ids are taken
            db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'entries'", (plan.last_id,))
        for chunk in _chunks(plan.replaced, 500):
            db.execute("UPDATE entries SET state = 'done', head = 0, superseded_by = v.column2, updated_at = ?"
                       f" FROM (VALUES {', '.join(['(?, ?)'] * len(chunk))}) AS v WHERE entries.id = v.column1",
                       [now, *(v for r in chunk for v in (r.id, r.by))])
        # a row superseded within the batch added and took away its quantity: neither is written
        sums.sqlite_add(db, [(r.new.target, r.new.item, r.new.location, r.new.kind,
                              sqlite_batch.text(r.new.quantity)) for r in plan.rows if r.superseded_by is None], 1)
        sums.sqlite_add(db, [(r.new.target, r.new.item, r.new.location, r.new.kind, r.quantity)
                             for r in plan.replaced], -1)
        self._promote_keys(db, plan.promote)
        return plan.out

    def _before(self, db: sqlite3.Connection, entries: list[NewEntry]) -> sqlite_batch.Stored:
        """What ``sqlite_batch.plan`` needs from the file: one statement per 1,000 entries, and one
        more when some of their idempotency keys are stored already (duplicates are rare)."""
        found, stored_ids, last = [], [], 0
        for chunk in _chunks(entries, 1000):  # 6 parameters an entry at most, under SQLite's bound
            pairs = list(dict.fromkeys((n.target, n.idempotency_key) for n in chunk))
            keys = list(dict.fromkeys((n.target, n.item, n.location, n.kind if n.coalesce else None) for n in chunk))
            got, ids, last = db.execute(
                sqlite_batch.KEYS_SQL.format(pairs=", ".join(["(?, ?)"] * len(pairs)), keys=", ".join(["(?, ?, ?, ?)"] * len(keys))),
                [*(v for p in pairs for v in p), *(v for k in keys for v in k)]).fetchone()
            found += json.loads(got)
            stored_ids += json.loads(ids)
        return sqlite_batch.Stored(
            entries={(e.target, e.idempotency_key): e for e in self._entries_by_id(db, stored_ids)},
            open={tuple(f[:3]) for f in found if f[4]}, last_id=last,
            markers={(tuple(f[:3]), f[3]): sqlite_batch.Marker(f[5], float(f[6]), f[7], bool(f[8]), bool(f[9]))
                     for f in found if f[5] is not None})

    def _entries_by_id(self, db: sqlite3.Connection, ids: list[int]) -> list[Entry]:
        out: list[Entry] = []
        for chunk in _chunks(sorted(set(ids)), 500):
            cursor = db.cursor()
            cursor.row_factory = None  # tuples in ENTRY_COLUMNS order, for _entries
            out += _entries(cursor.execute(f"SELECT {ENTRY_COLUMNS} FROM entries WHERE id IN"
                                           f" ({', '.join('?' * len(chunk))})", chunk).fetchall())
        return out

    def _enqueue_plain(self, db: sqlite3.Connection, run: list[NewEntry], now: float) -> list[Entry]:
        """Non-coalescing entries: one executemany; the head is decided row by row as before (each
        row's NOT EXISTS sees the rows of the run inserted before it), duplicates are skipped."""
        rows = [(n.target, n.kind, n.item, n.location, n.idempotency_key, _dumps(n.payload),
                 None if n.quantity is None else str(n.quantity), now) for n in run]
        if len(rows) == 1:  # one statement rather than three
            got = db.execute(PLAIN_INSERT + " RETURNING id", rows[0]).fetchone()
            if got is None:
                return [self._duplicate(db, run[0])]
            _add_sums(db, rows, 1)
            return [_new_entry(got[0], run[0], _at(now))]
        last = _sequence(db)
        stored = db.executemany(PLAIN_INSERT, rows).rowcount  # a duplicate is not, yet takes an id
        stamp = _at(now)
        if stored == len(rows) == _sequence(db) - last:  # all stored: ids last + 1, ... in order
            _add_sums(db, rows, 1)
            return [_new_entry(last + i, n, stamp) for i, n in enumerate(run, 1)]
        # some were duplicates; ids only grow and the write lock is ours: above ``last`` is new
        ids = {(r[1], r[2]): r[0] for r in db.execute(
            "SELECT id, target, idempotency_key FROM entries WHERE id > ?", (last,))}
        out, seen, new = [], set(), []
        for n, row in zip(run, rows):
            key = (n.target, n.idempotency_key)
            entry_id = ids.get(key) if key not in seen else None
            seen.add(key)
            out.append(self._duplicate(db, n) if entry_id is None else _new_entry(entry_id, n, stamp))
            new += [] if entry_id is None else [row]
        _add_sums(db, new, 1)
        return out

    def _duplicate(self, db: sqlite3.Connection, new: NewEntry) -> Entry:
        """The stored entry, unchanged (its own payload)."""
        return _entry(db.execute("SELECT * FROM entries WHERE target = ? AND idempotency_key = ?",
                                 (new.target, new.idempotency_key)).fetchone())

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
        if row is None:  # a duplicate
            return self._duplicate(db, new)
        sums.sqlite_add(db, [(new.target, new.item, new.location, new.kind, row["quantity"])], 1)
        if replaced:
            db.execute("UPDATE entries SET state = 'done', head = 0, superseded_by = ?, updated_at = ?"
                       " WHERE id = ?", (row["id"], now, replaced["id"]))
            sums.sqlite_add(db, [(new.target, new.item, new.location, new.kind, replaced["quantity"])], -1)
            self._promote(db, new.target, new.item, new.location)  # head is not in an Entry: no re-read
        return _entry(row, new.payload)  # just stored from this dict: no need to parse it back

    def _coalescable(self, db: sqlite3.Connection, new: NewEntry) -> sqlite3.Row | None:
        # ``state IN (...)`` repeats entries_open's predicate so SQLite uses that partial index (the
        # key's few open entries); without it the lookup walked every entry of the target, done
        # ones too, once per webhook (intake fell from 1,025 to 410/s, scripts/bench_webhooks.py)
        return db.execute(
            "SELECT id, available_at, quantity FROM entries WHERE target = ? AND item = ? AND location = ?"
            " AND state IN ('pending', 'leased') AND state = 'pending' AND kind = ? AND coalescing = 1"
            " ORDER BY id DESC LIMIT 1",
            (new.target, new.item, new.location, new.kind)).fetchone()

    def _promote_keys(self, db: sqlite3.Connection, keys: Collection[tuple[str, str, str]]) -> None:
        if len(keys) == 1:  # a lone key: the simpler statement (3 us less, a batch-1 ack's case)
            self._promote(db, *next(iter(keys)))
            return
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
        if targets is not None and not targets:
            return []
        return self.ack_and_lease((), worker, 0.0, limit, lease_s, targets)

    def ack_and_lease(self, entry_ids: Sequence[int], worker: str, duration_s: float, limit: int,
                      lease_s: float, targets: Collection[str] | None = None) -> list[Entry]:
        """``ack`` then ``lease`` in one transaction: a busy worker's cycle commits twice (enqueue,
        this), not three times. Relaxed like both (see above), unless the lease dead-letters an
        entry whose lease ran out too often: that is a decision an operator must find after a power
        cut, so the transaction is rolled back and done again at the enqueue's durability."""
        where, scope = _target_filter(targets)
        try:
            with self._tx(relaxed=True) as db:
                return self._ack_and_lease(db, entry_ids, worker, duration_s, limit, lease_s, where, scope,
                                           durable=False)
        except _MustSync:
            with self._tx() as db:
                return self._ack_and_lease(db, entry_ids, worker, duration_s, limit, lease_s, where, scope,
                                           durable=True)

    def _ack_and_lease(self, db: sqlite3.Connection, entry_ids: Sequence[int], worker: str, duration_s: float,
                       limit: int, lease_s: float, where: str | None, scope: list[str], *,
                       durable: bool) -> list[Entry]:
        now = self._clock()
        if entry_ids:
            self._ack(db, entry_ids, worker, duration_s, now)
        return [] if where is None or limit <= 0 else self._lease(db, worker, limit, lease_s, where, scope, now,
                                                                   durable)

    def _lease(self, db: sqlite3.Connection, worker: str, limit: int, lease_s: float, where: str,
               scope: list[str], now: float, durable: bool) -> list[Entry]:
        if db.execute(f"SELECT 1 FROM entries WHERE state = 'leased' AND lease_until <= ?{where} LIMIT 1",
                      (now, *scope)).fetchone():  # a lease ran out: count its lost attempt first
            due = self._due(db, now, limit, where, scope)
            if not durable and any(r["state"] == "leased" and self._dies(r) for r in due):
                raise _MustSync
            ids = [row["id"] for row in due if row["state"] == "pending" or self._expire(db, row, now)]
            return self._take(db, worker, now, lease_s, ", ".join("?" * len(ids)), ids)
        # the usual case: the due heads are picked inside the update, one statement
        return self._take(db, worker, now, lease_s, "SELECT id FROM entries WHERE head = 1 AND state ="
                          f" 'pending' AND available_at <= ?{where} ORDER BY available_at, id LIMIT ?",
                          [now, *scope, limit])

    def _take(self, db: sqlite3.Connection, worker: str, now: float, lease_s: float, pick: str,
              args: Sequence) -> list[Entry]:
        """Lease the entries ``pick`` (SQL giving ids) selects, oldest first."""
        cursor = db.cursor()
        cursor.row_factory = None  # plain tuples in ENTRY_COLUMNS order, for _entries
        rows = cursor.execute(
            f"UPDATE entries SET state = 'leased', lease_owner = ?, lease_until = ?, leased_at = ?,"
            f" updated_at = ? WHERE id IN ({pick}) RETURNING {ENTRY_COLUMNS}",
            (worker, now + lease_s, now, now, *args)).fetchall()
        rows.sort(key=lambda r: (r[10], r[0]))  # (available_at, id), as picked
        return _entries(rows)

    def _due(self, db: sqlite3.Connection, now: float, limit: int, where: str,
             scope: list[str]) -> list[sqlite3.Row]:
        sql = (f"SELECT * FROM entries WHERE head = 1 AND state = 'pending' AND available_at <= ?{where}"
               f" UNION ALL SELECT * FROM entries WHERE state = 'leased' AND lease_until <= ?{where}"
               " ORDER BY available_at, id LIMIT ?")
        return db.execute(sql, [now, *scope, now, *scope, limit]).fetchall()

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

    def _dies(self, row: sqlite3.Row) -> bool:
        """Whether an expired lease's lost attempt exhausts the entry (``_expire`` dead-letters it)."""
        return self.policy.exhausted(row["attempts"] + 1, row["kind"])

    def _expire(self, db: sqlite3.Connection, row: sqlite3.Row, now: float) -> bool:
        """A lease ran out (its worker died or hung): count the lost attempt, so an entry that
        kills every worker that touches it ends in the dead letters. True if it may be leased."""
        attempts = row["attempts"] + 1
        error = f"lease expired: worker {row['lease_owner']} did not finish"
        dead = self._dies(row)
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
        with self._tx(relaxed=True) as db:
            self._ack(db, entry_ids, worker, duration_s, self._clock())

    def _ack(self, db: sqlite3.Connection, entry_ids: Sequence[int], worker: str, duration_s: float,
             now: float) -> None:
        cursor = db.cursor()
        cursor.row_factory = None  # plain tuples: sqlite3.Row looks each name up, per row
        # the delivered attempt stays in the row (delivered_by, delivered_s): no attempts row
        rows = cursor.execute(
            f"UPDATE entries SET state = 'done', head = 0, attempts = attempts + 1, updated_at = ?1,"
            f" lease_owner = NULL, lease_until = NULL, delivered_by = ?2, delivered_s = ?3"
            f" WHERE id IN ({', '.join('?' * len(entry_ids))}) AND state = 'leased' AND lease_owner = ?2"
            f" RETURNING target, item, location, kind, quantity, id",
            (now, worker, duration_s, *entry_ids)).fetchall()
        if len(rows) < len(entry_ids):
            lost = set(entry_ids) - {r[5] for r in rows}
            log.warning("entries %s are not leased by %s; ack ignored", sorted(lost), worker)
        sums.sqlite_add(db, [r[:5] for r in rows], -1)  # delivered: no longer pending
        self._promote_keys(db, {r[:3] for r in rows})

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
        rows = self._read(ATTEMPTS_SQL, (entry_id,))
        return [Attempt(entry_id=r["entry_id"], number=r["number"], worker=r["worker"],
                        outcome=Outcome(r["outcome"]), started_at=_at(r["started_at"]),
                        duration_s=r["duration_s"], error=r["error"]) for r in rows]

    def dead_letters(self, target: str | None = None, limit: int = 100, offset: int = 0) -> list[Entry]:
        where, args = ("AND target = ?", [target]) if target is not None else ("", [])
        rows = self._read(f"SELECT * FROM entries WHERE state IN ('dead', 'discarded') AND state = 'dead'"
                          f" {where} ORDER BY id"  # the IN: entries_dead's predicate
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
            sums.sqlite_add(db, [(row["target"], row["item"], row["location"], row["kind"], row["quantity"])], -1)
            return self._entry_now(db, entry_id)

    def stats(self) -> list[TargetStats]:
        now = self._clock()
        depth: dict[str, dict[State, int]] = {}
        for r in self._read(STATS_SQL):
            depth.setdefault(r["target"], {s: 0 for s in State})[State(r["state"])] = r["n"]
        oldest = {r["target"]: r["t"] for r in self._read(
            "SELECT target, min(created_at) AS t FROM entries WHERE state IN ('pending', 'leased')"
            " AND state = 'pending' GROUP BY target")}  # the IN: entries_open's predicate
        return [TargetStats(target=t, depth=d,
                            oldest_pending_age_s=max(0.0, now - oldest[t]) if t in oldest else None)
                for t, d in sorted(depth.items())]

    def pending_quantity(self, target: str, item: str, location: str,
                         kinds: Collection[str] | None = None, done_since: float | None = None) -> Decimal:
        with self._reads_lock:  # O(1) in the key's backlog: the running sums the queue keeps (sums.py)
            return sums.sqlite_pending(self._reader, (target, item, location), kinds, done_since)

    def purge_done(self, older_than_s: float) -> int:
        with self._tx() as db:
            cutoff = self._clock() - older_than_s
            db.execute("DELETE FROM attempts WHERE entry_id IN (SELECT id FROM entries"
                       " WHERE state = 'done' AND updated_at < ?)", (cutoff,))
            return db.execute("DELETE FROM entries WHERE state = 'done' AND updated_at < ?", (cutoff,)).rowcount

    def ping(self) -> None:
        self._read("SELECT 1")

    def close(self) -> None:
        with self._lock, self._reads_lock:
            self._db.close()
            self._reader.close()
