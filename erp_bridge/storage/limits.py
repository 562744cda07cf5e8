"""A target's limits shared by every process whose storage is one PostgreSQL database: the token
bucket of ``limits.rate_per_s``/``burst`` (migration 7) and the slots of ``limits.concurrency``
(migration 8), so they hold for all hosts together, not once per process. Each take is one
autocommit statement whose commit does not wait for the WAL flush (a bucket or a slot lost in a
server crash only starts full or free again). While the database does not answer, the process's
own limits stand in (said once in the log)."""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from ..dispatch.ratelimit import Slots, TokenBucket
from . import postgres as pg

log = logging.getLogger(__name__)


class SharedLimits:
    """``Limits`` (dispatch.ratelimit) of every process on this database's pool."""

    def __init__(self, pool: Any):
        self._pool = pool

    def bucket(self, target: str, rate_per_s: float, burst: float | None) -> SharedTokenBucket:
        return SharedTokenBucket(self._pool, target, rate_per_s, burst)

    def slots(self, target: str, n: int, hold_s: float) -> SharedSlots:
        return SharedSlots(self._pool, target, n, hold_s)

    def held(self) -> dict[str, list[str]]:
        with pg.reading(self._pool) as conn:
            rows = conn.execute(SLOTS_HELD).fetchall()
        held: dict[str, list[str]] = {}
        for row in rows:  # the holder's last part only tells its calls apart
            held.setdefault(row["target"], []).append(row["holder"].rpartition(":")[0])
        return held

    def free(self, processes: Collection[str]) -> int:
        if not processes:
            return 0
        with pg.reading(self._pool) as conn:
            return conn.execute(SLOTS_FREE, {"processes": list(processes)}).rowcount


class _StandIn:
    """Says once that the database cannot be reached and this process's own limit stands in, and
    once that it answers again."""

    def __init__(self, what: str):
        self._what, self.failing = what, False

    def failed(self, exc: Exception) -> None:
        if not self.failing:
            log.warning("%s: the shared one cannot be read (%s); this process's own stands in until it can",
                        self._what, exc)
        self.failing = True

    def answered(self) -> None:
        if self.failing:
            log.info("%s: the shared one answers again", self._what)
        self.failing = False


#: one statement: the bucket's level now (refilled on the server's clock, so hosts' clocks need
#: not agree), and the tokens taken if it covers them; the row lock orders concurrent takers. Its
#: commit does not wait for the WAL flush (a bucket lost in a server crash only starts full again)
SHARED_RESERVE = """
WITH cur AS (SELECT tokens, at, extract(epoch FROM clock_timestamp()) AS now FROM bridge_rate_buckets
             WHERE target = %(target)s FOR UPDATE),
lvl AS (SELECT least(%(burst)s, tokens + greatest(0, now - at) * %(rate)s) AS level, now FROM cur),
upd AS (UPDATE bridge_rate_buckets b SET tokens = CASE WHEN lvl.level >= %(need)s THEN lvl.level - %(n)s
        ELSE lvl.level END, at = lvl.now FROM lvl WHERE b.target = %(target)s RETURNING b.tokens)
SELECT level, level >= %(need)s AS taken, set_config('synchronous_commit', 'off', true) AS relaxed
FROM lvl, (SELECT count(*) FROM upd) u
"""
SHARED_CREATE = ("INSERT INTO bridge_rate_buckets (target, tokens, at) VALUES (%(target)s, %(burst)s,"
                 " extract(epoch FROM clock_timestamp())) ON CONFLICT (target) DO NOTHING")


class SharedTokenBucket(TokenBucket):
    """The same bucket for every process whose queue is this PostgreSQL database (one row per
    target, migration 7): with N processes delivering to one target, ``rate_per_s`` and ``burst``
    hold for all of them together, not N times over. One statement per take. While the database
    does not answer, this process's own bucket stands in (the limit then holds per process)."""

    def __init__(self, pool: Any, target: str, rate_per_s: float, burst: float | None = None):
        super().__init__(rate_per_s, burst)
        self._pool, self._target = pool, target
        self._stand_in = _StandIn(f"rate limit of {target}")

    def reserve(self, n: float = 1) -> float:
        args = {"target": self._target, "rate": self.rate, "burst": self.burst, "n": n, "need": min(n, self.burst)}
        try:  # each statement on its own (the pool's connections autocommit): one round trip
            with pg.reading(self._pool) as conn:
                row = conn.execute(SHARED_RESERVE, args).fetchone()
                if row is None:  # the target's first take: its bucket starts full
                    conn.execute(SHARED_CREATE, args)
                    row = conn.execute(SHARED_RESERVE, args).fetchone()
        except psycopg.Error as exc:  # the pool's timeout included
            self._stand_in.failed(exc)
            return super().reserve(n)
        self._stand_in.answered()
        if row is None:  # its row deleted between the insert and the take (by hand): ours, this once
            return super().reserve(n)
        return 0.0 if row["taken"] else (args["need"] - row["level"]) / self.rate

    def at_most(self, tokens: float) -> None:
        args = {"target": self._target, "rate": self.rate, "burst": self.burst, "left": tokens}
        try:
            with pg.reading(self._pool) as conn:
                conn.execute(SHARED_AT_MOST, args)
        except psycopg.Error as exc:
            self._stand_in.failed(exc)
        super().at_most(tokens)  # the stand-in too


#: the vendor's own count of what is left lowers the bucket's level (never raises it)
SHARED_AT_MOST = """
UPDATE bridge_rate_buckets SET tokens = least(%(left)s, %(burst)s,
       tokens + greatest(0, extract(epoch FROM clock_timestamp()) - at) * %(rate)s),
       at = extract(epoch FROM clock_timestamp())
WHERE target = %(target)s RETURNING set_config('synchronous_commit', 'off', true) AS relaxed
"""

#: a target's slots 0..n-1 (a row each, made at its first take; a slot past a lowered n is unused)
SLOTS_CREATE = ("INSERT INTO bridge_concurrency_slots (target, slot) SELECT %(target)s, generate_series(0, %(n)s - 1)"
                " ON CONFLICT DO NOTHING")
#: one statement: the lowest free slot (never taken, given back, or held past ``until`` by a
#: holder that vanished), taken until now + hold_s; SKIP LOCKED: concurrent takers get others
SLOT_TAKE = """
WITH free AS (SELECT slot FROM bridge_concurrency_slots
              WHERE target = %(target)s AND slot < %(n)s
                AND (until IS NULL OR until < extract(epoch FROM clock_timestamp()))
              ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE bridge_concurrency_slots s SET holder = %(holder)s, until = extract(epoch FROM clock_timestamp()) + %(hold_s)s
FROM free WHERE s.target = %(target)s AND s.slot = free.slot
RETURNING s.slot, set_config('synchronous_commit', 'off', true) AS relaxed
"""
#: the slots taken now (a vanished holder's until it is past), by target
SLOTS_HELD = ("SELECT target, holder FROM bridge_concurrency_slots"
              " WHERE until >= extract(epoch FROM clock_timestamp()) ORDER BY target, slot")
#: the slots of gone processes ("host:pid"; a holder is "host:pid:<call>"), given back at once
SLOTS_FREE = ("UPDATE bridge_concurrency_slots SET holder = NULL, until = NULL WHERE until IS NOT NULL"
              " AND substring(holder from '^(.*):[^:]*$') = ANY(%(processes)s)")
#: only by its holder: a slot that ran past ``until`` may be another's by now
SLOT_GIVE = ("UPDATE bridge_concurrency_slots SET holder = NULL, until = NULL"
             " WHERE target = %(target)s AND slot = %(slot)s AND holder = %(holder)s"
             " RETURNING set_config('synchronous_commit', 'off', true) AS relaxed")


#: what SharedSlots._take gives while the database does not answer: this process's own slot only
_OWN = (-1, "")


class SharedSlots(Slots):
    """``limits.concurrency`` for every process on this database together: a call holds one of
    the target's ``n`` slot rows (after one of this process's own ``n``, so its threads do not
    queue at the database). A holder that vanishes (``kill -9``, a host lost) keeps its slot for
    ``hold_s`` (the dispatcher's lease: its entries are not delivered before then either). A
    waiting taker asks again every few milliseconds, at most every ``poll_max_s``."""

    poll_max_s = 0.05

    def __init__(self, pool: Any, target: str, n: int, hold_s: float):
        super().__init__(n)
        self._pool, self._target, self._n, self._hold_s = pool, target, n, hold_s
        self._made = False
        self._stand_in = _StandIn(f"concurrency of {target}")
        self._holder = f"{socket.gethostname()}:{os.getpid()}"

    @contextmanager
    def hold(self, give_up: threading.Event) -> Iterator[bool]:
        with super().hold(give_up) as inside:
            slot = self._take(give_up) if inside else None
            if inside and slot is None:  # gave up while every shared slot was taken
                inside = False
            try:
                yield inside
            finally:
                if slot is not None and slot != _OWN:
                    self._give(*slot)

    def _take(self, give_up: threading.Event) -> tuple[int, str] | None:
        """(slot, holder); ``_OWN`` while the database cannot be read; None if ``give_up``."""
        holder = f"{self._holder}:{uuid.uuid4().hex[:12]}"
        args = {"target": self._target, "n": self._n, "hold_s": self._hold_s, "holder": holder}
        wait = 0.002
        while True:
            try:
                with pg.reading(self._pool) as conn:
                    if not self._made:
                        conn.execute(SLOTS_CREATE, args)
                        self._made = True
                    row = conn.execute(SLOT_TAKE, args).fetchone()
            except psycopg.Error as exc:  # the pool's timeout included
                self._stand_in.failed(exc)
                return _OWN
            self._stand_in.answered()
            if row is not None:
                return row["slot"], holder
            if give_up.wait(wait):
                return None
            wait = min(wait * 2, self.poll_max_s)

    def _give(self, slot: int, holder: str) -> None:
        try:
            with pg.reading(self._pool) as conn:
                conn.execute(SLOT_GIVE, {"target": self._target, "slot": slot, "holder": holder})
        except psycopg.Error as exc:  # it frees itself at its until
            log.warning("concurrency of %s: slot %d could not be given back (%s); it is free again in at "
                        "most %.0f s", self._target, slot, exc, self._hold_s)
