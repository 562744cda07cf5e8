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
write lock through ``busy_timeout``. The lock is a plain one, not reentrant: ``begin_enqueue`` takes
it on one thread (the event loop) and the commit releases it on another.

``begin_enqueue`` is the enqueue in two steps for the webhook intake (sync/intake.py): the
statements now, on the caller's thread, without ever waiting (None when the connection or the
file's write lock is taken), and the commit, the step that waits for the disk, later on another
thread. On the event loop that saved the GIL hand-over that each of the committer thread's
statements cost (issue 15).
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from ..dispatch.ratelimit import LocalLimits
from ..storage import sqlite as sqlite_store
from . import sqlite_enqueue, sums
from .base import SALE_KINDS, Attempt, Entry, NewEntry, Outcome, RetryPolicy, State, TargetStats
from .sqlite_rows import ENTRY_COLUMNS
from .sqlite_rows import at as _at
from .sqlite_rows import entries as _entries
from .sqlite_rows import entry as _entry
from .sqlite_sql import ATTEMPTS_SQL, PAGE_SIZE, SCHEMA, STATS_SQL, UPGRADE, add_columns, promote, promote_keys

log = logging.getLogger(__name__)

Clock = Callable[[], float]
#: per-commit durability, see above (scripts/bench_queue.py runs its ceilings at the same)
ENQUEUE_SYNCHRONOUS = "FULL"
LEASE_SYNCHRONOUS = "NORMAL"
_LEVELS = ("OFF", "NORMAL", "FULL")


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
        self._lock = threading.Lock()
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        # page_size before WAL writes a new file's header
        self._db = sqlite_store.connect(self.path, busy_timeout_s, before_wal=(f"page_size={PAGE_SIZE}",))
        self._db.row_factory = sqlite3.Row
        self._durable = self._sync = synchronous
        self._relaxed = min(synchronous, LEASE_SYNCHRONOUS, key=_LEVELS.index)
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(SCHEMA + UPGRADE)  # idempotent; runs in its own transaction
        add_columns(self._db)
        wrong = sums.sqlite_install(self._db)  # running sums for pending_quantity (an older file: backfilled)
        if wrong:
            log.warning("queue %s: the running sums of unapplied quantities were wrong for %d key(s) (a process of"
                        " an older version wrote to this file meanwhile?); rebuilt from the entries", self.path, wrong)
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
                if self._db.in_transaction:  # not after an error SQLite rolled back itself: that error stands
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
            return sqlite_enqueue.enqueue(db, entries, self._clock())

    def begin_enqueue(self, entries: Sequence[NewEntry]) -> Callable[[], list[Entry]] | None:
        """``enqueue``'s statements in a transaction left open, and the commit to call (on any
        thread: it waits for the disk) that returns what ``enqueue`` would have; or None at once
        if this queue's connection or the file's write lock is taken now (``enqueue`` would wait).
        Until the commit returns, the queue is locked: the caller must call it. A statement that
        fails rolls back and raises here, a commit that fails rolls back and raises there, as in
        ``enqueue``."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            self._commit_at(self._durable)
            self._db.execute("PRAGMA busy_timeout = 0")  # another process writing: do not wait
            try:
                self._db.execute("BEGIN IMMEDIATE")
                begun = True
            except sqlite3.OperationalError:  # SQLITE_BUSY: another process holds the write lock
                begun = False
            finally:
                self._db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        except BaseException:
            self._lock.release()
            raise
        if not begun:
            self._lock.release()
            return None
        try:
            stored = sqlite_enqueue.enqueue(self._db, entries, self._clock())
        except BaseException:
            self._end("ROLLBACK")
            raise
        return partial(self._commit_begun, stored)

    def _commit_begun(self, entries: list[Entry]) -> list[Entry]:
        self._end("COMMIT")
        return entries

    def _end(self, statement: str) -> None:
        """COMMIT or ROLLBACK ``begin_enqueue``'s transaction, then unlock: a COMMIT that fails is
        rolled back (nothing of it is stored) and raises. A ROLLBACK after an error SQLite rolled
        back itself (a full disk, an I/O error) has nothing to do, and the caller's error stands."""
        try:
            if statement == "COMMIT" or self._db.in_transaction:
                self._db.execute(statement)
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        finally:
            self._lock.release()



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
        promote_keys(db, {r[:3] for r in rows})

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

    def release(self, entry_ids: Sequence[int], worker: str, delay_s: float = 0.0,
                error: str | None = None) -> None:
        with self._tx() as db:
            now = self._clock()
            for entry_id in entry_ids:
                row = self._held(db, entry_id, worker)
                if row is None:
                    continue
                self._record(db, entry_id, row["attempts"] + 1, worker, Outcome.RELEASED,
                             row["leased_at"] or now, now - (row["leased_at"] or now), error)
                db.execute("UPDATE entries SET state = 'pending', updated_at = ?, lease_owner = NULL,"
                           " lease_until = NULL, available_at = max(available_at, ?),"
                           " last_error = coalesce(?, last_error) WHERE id = ?",
                           (now, now + delay_s, error, entry_id))

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
        promote(db, row["target"], row["item"], row["location"])

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

    def subscribe_applied(self, callback: Callable[[list[tuple[str, str]] | None], Any]) -> None:
        """One process per SQLite file: its dispatcher invalidates its own cache already."""

    def announce_applied(self) -> None:
        """One process per SQLite file: nobody else to tell."""

    def shared_limits(self) -> LocalLimits:
        """This process's own limits: one process uses a queue file."""
        return LocalLimits()

    def processes(self) -> list[dict[str, Any]]:
        return []  # one process per file, and SQLite does not say who has it open

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
            promote(db, row["target"], row["item"], row["location"])
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

    @property
    def clock(self) -> Callable[[], float]:
        """The queue's time, seconds since the epoch: ``available_at`` and every delay are in it."""
        return self._clock

    def close(self) -> None:
        with self._lock, self._reads_lock:
            self._db.close()
            self._reader.close()
