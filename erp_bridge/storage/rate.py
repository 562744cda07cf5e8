"""A target's token bucket shared by every process whose storage is one PostgreSQL database
(migration 7): ``limits.rate_per_s`` and ``burst`` then hold for all hosts together."""
from __future__ import annotations

import logging
from typing import Any

import psycopg

from ..dispatch.ratelimit import TokenBucket
from . import postgres as pg

log = logging.getLogger(__name__)


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
