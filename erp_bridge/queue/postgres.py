"""The queue on PostgreSQL: many worker and intake processes, on one or more hosts.

The rules are SQLite's (see sqlite.py: the oldest unfinished entry of each ordering key is its
``head``, only heads are leased, every transition that finishes an entry promotes the next one),
made safe for concurrent writers:

- Leasing takes due heads with ``FOR UPDATE SKIP LOCKED``: workers never wait for each other and
  never lease the same entry.
- Whatever sets or clears a key's head (enqueue, ack, fail, expiry, reclaim, replay) first takes
  a transaction-scoped advisory lock per ordering key, sorted, before any row lock, so heads are
  decided one transaction at a time per key and lock waits cannot form a cycle. A partial unique
  index (one head per key) makes the database refuse anything else.
- ``NOTIFY`` at commit wakes idle workers of every process (``subscribe``); they also poll, so a
  lost notification costs latency, never an entry.

Every method commits before it returns; a deadlock or serialization failure reruns the whole
transaction (storage.postgres.run).

Durability per commit, as on SQLite (sqlite.py: FULL and NORMAL): the enqueue commits at the
session's ``synchronous_commit`` (the server's default, ``on``: its WAL is flushed, and with
synchronous replication configured, acknowledged as that setting says, before ``enqueue``
returns and the webhook is answered). The lease and the ack, the hot path's other two commits,
run at ``off`` (postgres_sql.RELAXED): they return before their WAL flush, which the WAL writer
does within ``3 * wal_writer_delay`` (600 ms by default). A client or host crash loses nothing of
a returned commit (the server has it); only a crash of the database server itself can lose the
last of them, never an enqueue and never a hole:

- the WAL is one ordered log for every host: a commit that waits for its flush (any enqueue,
  fail, expiry, replay) makes every earlier commit durable, so a server crash leaves a prefix of
  the committed history; a standby receives the same log in order, so a failover does too;
- a lost lease leaves the entry pending: it is leased again;
- a lost ack leaves the entry leased by its worker: the lease expires (or is reclaimed when that
  worker restarts) and the entry is delivered again, as after a worker killed between delivery
  and ack, which the targets' idempotency covers; until then its quantity counts as pending
  (understated availability, never overstated).

Failures, expiries, releases, reclaims, replays and discards keep the session's setting: rare,
and operator-visible decisions (a dead letter) must not come undone.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from ..storage import postgres as pg
from ..storage.limits import SharedLimits
from . import sums
from .base import SALE_KINDS, Attempt, Entry, NewEntry, Outcome, RetryPolicy, State, TargetStats
from .postgres_sql import (
    ACK,
    ACK_ANNOUNCING,
    ATTEMPTS,
    EXPIRED,
    INSERT_MANY,
    LEASE,
    LEASE_OR_EXPIRED,
    LOCK_IDS_RELAXED,
    LOCK_KEYS_AND_WAKE,
    OPEN,
    PROMOTE_KEYS,
    Clock,
    Key,
    Row,
    at,
    batch_json,
    dumps,
    entry_of,
    id_array,
    lock_ids,
    lock_keys,
    new_entry,
)

log = logging.getLogger(__name__)

class _LeasesExpired(Exception):
    """Raised inside a lease transaction to roll it back and redo it expiring first."""


class PostgresQueue:
    """``Queue`` on a PostgreSQL database (``postgresql://user@host/db``), shared by processes."""

    quick_reads = False  # every read is a round trip to the server

    def __init__(self, url: str, policy: RetryPolicy | None = None, clock: Clock = time.time,
                 pool_size: int = 16):
        self.url = url
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._pool = pg.acquire(url, pool_size)
        self._listener: pg.Listener | None = None
        self._ack_sql = ACK

    def subscribe(self, callback: Callable[[], Any]) -> None:
        """Call ``callback`` whenever any process queued work or gave some back."""
        self._listening().subscribe(callback)

    def subscribe_applied(self, callback: Callable[[list[tuple[str, str]] | None], Any]) -> None:
        """Call ``callback(keys)`` whenever any process that ``announce_applied`` acked changes
        applied to a system of record; ``None``: any key."""
        self._listening().subscribe_applied(callback)

    def announce_applied(self) -> None:
        """From now on every ack NOTIFYs the keys it applied (ACK_ANNOUNCING), at its commit."""
        self._ack_sql = ACK_ANNOUNCING

    def shared_limits(self) -> SharedLimits:
        """Targets' token buckets (migration 7) and concurrency slots (migration 8), shared by
        every process on this database."""
        return SharedLimits(self._pool)

    def processes(self) -> list[dict[str, Any]]:
        return pg.processes(self._pool)

    def _listening(self) -> pg.Listener:
        if self._listener is None:
            self._listener = pg.Listener(self.url)
        return self._listener

    def _tx(self, work: Callable[[pg.Conn], Any], pipeline: bool = False) -> Any:
        return pg.run(self._pool, work, pipeline=pipeline)

    def _read(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        with pg.reading(self._pool) as conn:
            return conn.execute(sql, args).fetchall()

    # -- enqueue ------------------------------------------------------------------------------

    def enqueue(self, entries: Sequence[NewEntry]) -> list[Entry]:
        if not entries:
            return []
        if any(e.coalesce for e in entries):  # replacing depends on what came before: one by one
            return self._tx(lambda conn: self._enqueue_each(conn, entries))
        now = self._clock()
        rows = self._tx(lambda conn: self._insert_many(conn, entries, now), pipeline=True).fetchall()
        return self._settle_many(entries, rows, now)

    def _enqueue_each(self, conn: pg.Conn, entries: Sequence[NewEntry]) -> list[Entry]:
        lock_keys(conn, [(e.target, e.item, e.location) for e in entries])
        now = self._clock()
        stored = [self._enqueue_one(conn, new, now) for new in entries]
        conn.execute(f"NOTIFY {pg.CHANNEL}")
        return stored

    def _insert_many(self, conn: pg.Conn, entries: Sequence[NewEntry], now: float) -> pg.Cursor:
        """One INSERT for the batch, ids in batch order and heads decided in it: the same result as
        entry by entry, in one round trip of two statements (the key locks with the NOTIFY, then
        the insert)."""
        batch = batch_json(entries)
        conn.execute(LOCK_KEYS_AND_WAKE, (batch,))
        return conn.execute(INSERT_MANY, (now, now, now, batch))

    def _settle_many(self, entries: Sequence[NewEntry], rows: list[Row], now: float) -> list[Entry]:
        fresh = {(r["target"], r["idempotency_key"]): r["id"] for r in rows}
        self._heal_heads(entries, rows)
        stored = self._stored_by_key([e for e in entries if (e.target, e.idempotency_key) not in fresh])
        out = []
        for e in entries:
            key = (e.target, e.idempotency_key)
            entry_id = fresh.pop(key, None)  # a second copy in the batch is the first one, stored
            out.append(stored[key] if entry_id is None else new_entry(entry_id, e, now))
            stored.setdefault(key, out[-1])
        return out

    def _heal_heads(self, entries: Sequence[NewEntry], rows: list[Row]) -> None:
        """The INSERT made the first entry of each key in the batch its head candidate; where that
        one was a duplicate and a later one of the key was stored, promote now (rare). Until then
        the key only waits: it has no head, so nothing of it is leased."""
        stored = {(r["target"], r["idempotency_key"], r["item"], r["location"]) for r in rows}
        first: dict[Key, NewEntry] = {}
        for e in entries:
            first.setdefault((e.target, e.item, e.location), e)
        keys = {(t, i, l) for t, _, i, l in stored}
        headless = {k for k, e in first.items() if k in keys and (e.target, e.idempotency_key, *k[1:]) not in stored}
        if headless:
            def promote(conn: pg.Conn) -> None:
                lock_keys(conn, headless)
                self._promote(conn, headless)
            self._tx(promote)

    def _stored_by_key(self, entries: list[NewEntry]) -> dict[tuple[str, str], Entry]:
        if not entries:
            return {}
        rows = self._read("SELECT * FROM bridge_entries WHERE (target, idempotency_key) IN (SELECT * FROM"
                          " unnest(%s::text[], %s::text[]))",
                          ([e.target for e in entries], [e.idempotency_key for e in entries]))
        return {(r["target"], r["idempotency_key"]): entry_of(r) for r in rows}

    def _enqueue_one(self, conn: pg.Conn, new: NewEntry, now: float) -> Entry:
        replaced = self._coalescable(conn, new) if new.coalesce else None
        # a replacement keeps the older entry's backoff: a newer marker must not dodge Retry-After
        args = {"t": new.target, "k": new.kind, "i": new.item, "l": new.location, "key": new.idempotency_key,
                "p": Jsonb(new.payload, dumps=dumps), "q": new.quantity, "c": new.coalesce, "now": now,
                "av": max(now, replaced["available_at"]) if replaced else now}
        row = conn.execute(
            "INSERT INTO bridge_entries (target, kind, item, location, idempotency_key, payload, quantity,"
            " coalescing, state, available_at, created_at, updated_at, head) VALUES (%(t)s, %(k)s, %(i)s,"
            " %(l)s, %(key)s, %(p)s, %(q)s, %(c)s, 'pending', %(av)s, %(now)s, %(now)s, NOT EXISTS (SELECT 1"
            f" FROM bridge_entries WHERE target = %(t)s AND item = %(i)s AND location = %(l)s AND {OPEN}))"
            " ON CONFLICT (target, idempotency_key) DO NOTHING RETURNING *", args).fetchone()
        if row is None:  # a duplicate: the stored entry, unchanged (its own payload)
            stored = conn.execute("SELECT * FROM bridge_entries WHERE target = %s AND idempotency_key = %s",
                                  (new.target, new.idempotency_key)).fetchone()
            assert stored is not None  # the conflict that made the insert a no-op is this row
            return entry_of(stored)
        if replaced:
            conn.execute("UPDATE bridge_entries SET state = 'done', head = false, superseded_by = %s,"
                         " updated_at = %s WHERE id = %s", (row["id"], now, replaced["id"]))
            self._promote(conn, [(new.target, new.item, new.location)])
            row = self._row(conn, row["id"])
            assert row is not None  # written in this transaction
        return entry_of(row, new.payload)

    def _coalescable(self, conn: pg.Conn, new: NewEntry) -> Row | None:
        # FOR UPDATE: a worker leasing it now is waited for, and then it is no longer pending
        return conn.execute(
            "SELECT id, available_at FROM bridge_entries WHERE target = %s AND item = %s AND location = %s"
            " AND state = 'pending' AND kind = %s AND coalescing ORDER BY id DESC LIMIT 1 FOR UPDATE",
            (new.target, new.item, new.location, new.kind)).fetchone()

    def _promote(self, conn: pg.Conn, keys: Collection[Key]) -> None:
        """Heads for these keys where they have none (the caller holds the keys' locks)."""
        if keys:
            conn.execute(PROMOTE_KEYS, [list(column) for column in zip(*keys)])

    def _row(self, conn: pg.Conn, entry_id: int) -> Row | None:
        return conn.execute("SELECT * FROM bridge_entries WHERE id = %s", (entry_id,)).fetchone()

    # -- lease --------------------------------------------------------------------------------

    def lease(self, worker: str, limit: int, lease_s: float,
              targets: Collection[str] | None = None) -> list[Entry]:
        names = None if targets is None else list(targets)
        if names == []:
            return []
        now = self._clock()
        args = {"now": now, "targets": names, "limit": limit, "worker": worker, "until": now + lease_s}
        rows = self._tx(lambda conn: conn.execute(LEASE_OR_EXPIRED, args), pipeline=True).fetchall()
        entries = [entry_of(r) for r in rows if r["id"] is not None]
        if rows[0]["expired"]:  # their workers died or hung: count the lost attempts, then lease
            entries += self._tx(lambda conn: self._lease_expired(conn, worker, limit - len(entries), lease_s, names))
        return sorted(entries, key=lambda e: (e.available_at, e.id))

    def _lease_expired(self, conn: pg.Conn, worker: str, limit: int, lease_s: float,
                       targets: list[str] | None) -> list[Entry]:
        # its own transaction: expiry takes key locks, which must come before any row lock
        now = self._clock()
        args = {"now": now, "targets": targets, "limit": limit, "worker": worker, "until": now + lease_s}
        self._expire_due(conn, now, max(limit, 1), targets)
        return [entry_of(r) for r in conn.execute(LEASE, args).fetchall()]

    def _expire_due(self, conn: pg.Conn, now: float, limit: int, targets: list[str] | None) -> None:
        """Leases that ran out (a worker died or hung) come back as pending, their attempt counted."""
        ids = [r["id"] for r in conn.execute(EXPIRED, {"now": now, "targets": targets, "limit": limit}).fetchall()]
        if ids:
            self._take_back(conn, ids, "lease_until <= %s", (now,), now)

    def _take_back(self, conn: pg.Conn, ids: list[int], held: str, args: tuple[Any, ...], now: float) -> int:
        lock_ids(conn, ids)
        rows = conn.execute(f"SELECT * FROM bridge_entries WHERE id = ANY(%s) AND state = 'leased' AND {held}"
                            " ORDER BY id FOR UPDATE", (ids, *args)).fetchall()
        for row in rows:
            if self._expire(conn, row, now):
                conn.execute("UPDATE bridge_entries SET state = 'pending', lease_owner = NULL, lease_until = NULL,"
                             " updated_at = %s WHERE id = %s", (now, row["id"]))
        return len(rows)

    def lease_owners(self) -> list[str]:
        rows = self._read("SELECT DISTINCT lease_owner FROM bridge_entries WHERE state = 'leased'"
                          " AND lease_until > %s ORDER BY lease_owner", (self._clock(),))
        return [row["lease_owner"] for row in rows]

    def reclaim(self, owners: Collection[str]) -> int:
        names = list(owners)
        if not names:
            return 0

        def work(conn: pg.Conn) -> int:
            ids = [r["id"] for r in conn.execute("SELECT id FROM bridge_entries WHERE state = 'leased'"
                                                 " AND lease_owner = ANY(%s)", (names,)).fetchall()]
            count = self._take_back(conn, ids, "lease_owner = ANY(%s)", (names,), self._clock()) if ids else 0
            conn.execute(f"NOTIFY {pg.CHANNEL}")
            return count
        return self._tx(work)

    def _expire(self, conn: pg.Conn, row: Row, now: float) -> bool:
        """Count the lost attempt of a lease that ended without an outcome, so an entry that kills
        every worker that touches it ends in the dead letters. True if it may be leased again."""
        attempts = row["attempts"] + 1
        error = f"lease expired: worker {row['lease_owner']} did not finish"
        dead = self.policy.exhausted(attempts, row["kind"])
        started = row["leased_at"] or now
        self._record(conn, row["id"], attempts, row["lease_owner"], Outcome.DEAD if dead else Outcome.RETRY,
                     started, now - started, error)
        conn.execute("UPDATE bridge_entries SET attempts = %s, last_error = %s WHERE id = %s",
                     (attempts, error, row["id"]))
        if dead:
            self._finish(conn, row, "dead", now)
        return not dead

    # -- outcomes -----------------------------------------------------------------------------

    def ack_and_lease(self, entry_ids: Sequence[int], worker: str, duration_s: float, limit: int,
                      lease_s: float, targets: Collection[str] | None = None) -> list[Entry]:
        """Two transactions: one would save a round trip, measured at 0-3 % (BENCHMARKS.md)."""
        self.ack(entry_ids, worker, duration_s)
        return self.lease(worker, limit, lease_s, targets)

    def ack(self, entry_ids: Sequence[int], worker: str, duration_s: float = 0.0) -> None:
        if not entry_ids:
            return
        ids, now = list(entry_ids), self._clock()
        args = {"now": now, "ids": id_array(ids), "worker": worker, "duration": duration_s}
        acked = self._tx(lambda conn: self._ack(conn, args), pipeline=True)  # one round trip
        done = {r["entry_id"] for r in acked.fetchall()}
        if len(done) < len(ids):
            log.warning("entries %s are not leased by %s; ack ignored", sorted(set(ids) - done), worker)

    def _ack(self, conn: pg.Conn, args: dict[str, Any]) -> pg.Cursor:
        conn.execute(LOCK_IDS_RELAXED, (args["ids"],))  # key locks; the commit relaxed (see above)
        return conn.execute(self._ack_sql, args)

    def fail(self, entry_id: int, worker: str, error: str, *, retryable: bool,
             retry_after: float | None = None, duration_s: float = 0.0) -> Entry:
        return self._tx(lambda conn: self._fail(conn, entry_id, worker, error, retryable, retry_after, duration_s))

    def _fail(self, conn: pg.Conn, entry_id: int, worker: str, error: str, retryable: bool,
              retry_after: float | None, duration_s: float) -> Entry:
        lock_ids(conn, [entry_id])
        now = self._clock()
        row = self._held(conn, entry_id, worker)
        if row is None:
            return self._stored(conn, entry_id)
        attempts = row["attempts"] + 1
        dead = not retryable or self.policy.exhausted(attempts, row["kind"])
        if not dead and row["kind"] in SALE_KINDS and self.policy.overdue(attempts):
            log.error("ALERT: %s %s to %s has failed %d attempts and is still retried (a sale never "
                      "dead-letters on a retryable failure): %s", row["kind"], row["idempotency_key"],
                      row["target"], attempts, error, extra={"alert": "sale_overdue", "entry_id": entry_id,
                                                             "target": row["target"], "attempt": attempts})
        self._record(conn, entry_id, attempts, worker, Outcome.DEAD if dead else Outcome.RETRY,
                     now - duration_s, duration_s, error)
        conn.execute("UPDATE bridge_entries SET attempts = %s, last_error = %s WHERE id = %s",
                     (attempts, error, entry_id))
        if dead:
            self._finish(conn, row, "dead", now)
        else:
            conn.execute("UPDATE bridge_entries SET state = 'pending', available_at = %s, updated_at = %s,"
                         " lease_owner = NULL, lease_until = NULL WHERE id = %s",
                         (now + self.policy.delay(attempts, retry_after), now, entry_id))
        return self._stored(conn, entry_id)

    def release(self, entry_ids: Sequence[int], worker: str, delay_s: float = 0.0,
                error: str | None = None) -> None:
        if entry_ids:
            self._tx(lambda conn: self._release(conn, list(entry_ids), worker, delay_s, error))

    def _release(self, conn: pg.Conn, ids: list[int], worker: str, delay_s: float, error: str | None) -> None:
        now = self._clock()
        rows = conn.execute(
            "UPDATE bridge_entries SET state = 'pending', updated_at = %s, lease_owner = NULL, lease_until = NULL,"
            " available_at = greatest(available_at, %s), last_error = coalesce(%s, last_error)"
            " WHERE id = ANY(%s) AND state = 'leased' AND lease_owner = %s RETURNING id, attempts, leased_at",
            (now, now + delay_s, error, ids, worker)).fetchall()
        if len(rows) < len(ids):
            log.warning("entries %s are not leased by %s; release ignored",
                        sorted(set(ids) - {r["id"] for r in rows}), worker)
        for r in rows:
            started = r["leased_at"] or now
            self._record(conn, r["id"], r["attempts"] + 1, worker, Outcome.RELEASED, started, now - started, error)
        conn.execute(f"NOTIFY {pg.CHANNEL}")

    def _held(self, conn: pg.Conn, entry_id: int, worker: str) -> Row | None:
        row = conn.execute("SELECT * FROM bridge_entries WHERE id = %s AND state = 'leased' AND lease_owner = %s"
                           " FOR UPDATE", (entry_id, worker)).fetchone()
        if row is None:
            # the lease expired and someone else took the entry, or it was finished already
            log.warning("entry %s is not leased by %s; outcome ignored", entry_id, worker)
        return row

    def _stored(self, conn: pg.Conn, entry_id: int) -> Entry:
        row = self._row(conn, entry_id)
        if row is None:
            raise KeyError(entry_id)
        return entry_of(row)

    def _finish(self, conn: pg.Conn, row: Row, state: str, now: float) -> None:
        conn.execute("UPDATE bridge_entries SET state = %s, head = false, updated_at = %s, lease_owner = NULL,"
                     " lease_until = NULL WHERE id = %s", (state, now, row["id"]))
        self._promote(conn, [(row["target"], row["item"], row["location"])])

    def _record(self, conn: pg.Conn, entry_id: int, number: int, worker: str, outcome: Outcome,
                started_at: float, duration_s: float, error: str | None) -> None:
        conn.execute("INSERT INTO bridge_attempts (entry_id, number, worker, outcome, started_at, duration_s,"
                     " error) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                     (entry_id, number, worker, outcome.value, started_at, duration_s, error))

    # -- inspection and dead letters ----------------------------------------------------------

    def get(self, entry_id: int) -> Entry | None:
        rows = self._read("SELECT * FROM bridge_entries WHERE id = %s", (entry_id,))
        return entry_of(rows[0]) if rows else None

    def attempts(self, entry_id: int) -> list[Attempt]:
        rows = self._read(ATTEMPTS, {"id": entry_id})
        return [Attempt(entry_id=r["entry_id"], number=r["number"], worker=r["worker"],
                        outcome=Outcome(r["outcome"]), started_at=at(r["started_at"]),
                        duration_s=r["duration_s"], error=r["error"]) for r in rows]

    def dead_letters(self, target: str | None = None, limit: int = 100, offset: int = 0) -> list[Entry]:
        rows = self._read("SELECT * FROM bridge_entries WHERE state = 'dead' AND (%s::text IS NULL OR target = %s)"
                          " ORDER BY id LIMIT %s OFFSET %s", (target, target, limit, offset))
        return [entry_of(r) for r in rows]

    def unfinished(self, target: str, limit: int = 100_000) -> list[Entry]:
        rows = self._read("SELECT * FROM bridge_entries WHERE state IN ('pending', 'leased') AND target = %s"
                          " ORDER BY id LIMIT %s", (target, limit))
        return [entry_of(r) for r in rows]

    def replay(self, entry_id: int) -> Entry:
        def work(conn: pg.Conn) -> Entry:
            lock_ids(conn, [entry_id])
            row = conn.execute("SELECT * FROM bridge_entries WHERE id = %s FOR UPDATE", (entry_id,)).fetchone()
            if row is None:
                raise KeyError(entry_id)
            if row["state"] != "dead":
                raise ValueError(f"entry {entry_id} is {row['state']}, only dead entries are replayed")
            now = self._clock()
            conn.execute("UPDATE bridge_entries SET state = 'pending', attempts = 0, available_at = %s,"
                         " updated_at = %s WHERE id = %s", (now, now, entry_id))
            self._promote(conn, [(row["target"], row["item"], row["location"])])
            conn.execute(f"NOTIFY {pg.CHANNEL}")
            return self._stored(conn, entry_id)
        return self._tx(work)

    def discard(self, entry_id: int, reason: str, who: str = "operator") -> Entry:
        reason = (reason or "").strip()
        if not reason:
            raise ValueError("a discard needs a reason (it is recorded)")

        def work(conn: pg.Conn) -> Entry:
            row = conn.execute("SELECT * FROM bridge_entries WHERE id = %s FOR UPDATE", (entry_id,)).fetchone()
            if row is None:
                raise KeyError(entry_id)
            if row["state"] != "dead":
                raise ValueError(f"entry {entry_id} is {row['state']}, only dead entries are discarded")
            now, error = self._clock(), f"discarded by {who}: {reason}"
            self._record(conn, entry_id, row["attempts"], who, Outcome.DISCARDED, now, 0.0, error)
            conn.execute("UPDATE bridge_entries SET state = 'discarded', last_error = %s, updated_at = %s"
                         " WHERE id = %s", (error, now, entry_id))
            return self._stored(conn, entry_id)
        return self._tx(work)

    def stats(self) -> list[TargetStats]:
        now = self._clock()
        depth: dict[str, dict[State, int]] = {}
        for r in self._read("SELECT target, state, count(*) AS n FROM bridge_entries GROUP BY target, state"):
            depth.setdefault(r["target"], {s: 0 for s in State})[State(r["state"])] = r["n"]
        oldest = {r["target"]: r["t"] for r in self._read(
            "SELECT target, min(created_at) AS t FROM bridge_entries WHERE state = 'pending' GROUP BY target")}
        return [TargetStats(target=t, depth=d,
                            oldest_pending_age_s=max(0.0, now - oldest[t]) if t in oldest else None)
                for t, d in sorted(depth.items())]

    def pending_quantity(self, target: str, item: str, location: str,
                         kinds: Collection[str] | None = None, done_since: float | None = None) -> Decimal:
        # O(1) in the key's backlog: the sums migration 5's triggers keep (sums.py)
        rows = self._read(sums.PG_PENDING, sums.pg_args((target, item, location), kinds, done_since))
        return Decimal(rows[0]["q"])

    def purge_done(self, older_than_s: float) -> int:
        cutoff = self._clock() - older_than_s
        def purge(conn: pg.Conn) -> int:
            row = conn.execute(
                "WITH gone AS (DELETE FROM bridge_entries WHERE state = 'done' AND updated_at < %s RETURNING id),"
                " attempts AS (DELETE FROM bridge_attempts WHERE entry_id IN (SELECT id FROM gone))"
                " SELECT count(*) AS n FROM gone", (cutoff,)).fetchone()
            return int(row["n"]) if row else 0
        return self._tx(purge)

    def ping(self) -> None:
        """Readiness: the database answers a query within 2 s (a pool waiting 30 s would hold the probe)."""
        with pg.reading(self._pool, timeout_s=2.0) as conn:
            conn.execute("SELECT 1")

    @property
    def clock(self) -> Callable[[], float]:
        """The queue's time, seconds since the epoch: ``available_at`` and every delay are in it."""
        return self._clock

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        pg.release(self.url)
