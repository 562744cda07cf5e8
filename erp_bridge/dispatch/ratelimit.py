"""Token bucket per target: ``rate_per_s`` on average, up to ``burst`` at once. In one process
(``TokenBucket``), or shared by every process on one PostgreSQL (``SharedTokenBucket``)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class TokenBucket:
    """A caller may take more tokens than the bucket holds (a whole batch): the bucket goes into
    debt and later callers wait it off, so the average rate holds without splitting batches."""

    def __init__(self, rate_per_s: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate = rate_per_s
        self.burst = max(1.0, burst if burst is not None else rate_per_s)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()
        self._lock = threading.Lock()

    def reserve(self, n: float = 1) -> float:
        """Take ``n`` tokens if the bucket can cover them now and return 0; otherwise take
        nothing and return the seconds to wait before asking again."""
        with self._lock:
            self._refill()
            need = min(n, self.burst)
            if self._tokens >= need:
                self._tokens -= n
                return 0.0
            return (need - self._tokens) / self.rate

    def take(self, n: float = 1, give_up: threading.Event | None = None) -> bool:
        """Block until ``n`` tokens are taken (True) or ``give_up`` is set (False)."""
        give_up = give_up or threading.Event()
        while (wait := self.reserve(n)) > 0:
            if give_up.wait(wait):
                return False
        return True

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now


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
        self._failing = False

    def reserve(self, n: float = 1) -> float:
        import psycopg

        from ..storage import postgres as pg

        args = {"target": self._target, "rate": self.rate, "burst": self.burst, "n": n, "need": min(n, self.burst)}

        try:  # each statement on its own (the pool's connections autocommit): one round trip
            with pg.reading(self._pool) as conn:
                row = conn.execute(SHARED_RESERVE, args).fetchone()
                if row is None:  # the target's first take: its bucket starts full
                    conn.execute(SHARED_CREATE, args)
                    row = conn.execute(SHARED_RESERVE, args).fetchone()
        except psycopg.Error as exc:  # the pool's timeout included
            if not self._failing:
                log.warning("rate limit of %s: the shared bucket cannot be read (%s); this process's own "
                            "bucket stands in until it can", self._target, exc)
            self._failing = True
            return super().reserve(n)
        if self._failing:
            log.info("rate limit of %s: the shared bucket answers again", self._target)
            self._failing = False
        if row is None:  # its row deleted between the insert and the take (by hand): ours, this once
            return super().reserve(n)
        return 0.0 if row["taken"] else (args["need"] - row["level"]) / self.rate
