#!/usr/bin/env python3
"""What the running sums (erp_bridge/queue/sums.py) cost the PostgreSQL queue's own statements,
and where the server's time per enqueue -> lease -> ack cycle goes: ``EXPLAIN (ANALYZE)`` of each
statement of a cycle on a batch of new keys (the worst case for the sums: every upsert inserts a
row), its executor time and the time of migration 5's statement-level triggers that keep the sums
(``bridge_pending_sums_*``; EXPLAIN ANALYZE reports each trigger's time). A fresh schema,
migrated by the product and warmed by a few cycles, dropped at the end. Server executor time only:
no parse, no round trips, no commit, so the share of a whole cycle is smaller (BENCHMARKS.md).

    .venv/bin/python scripts/bench_pg_sums_cost.py [--url postgresql:///erp_bridge_test] [--rounds 40]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from erp_bridge.queue.base import NewEntry
from erp_bridge.queue.postgres import PostgresQueue
from erp_bridge.queue.postgres_sql import ACK, INSERT_MANY, LEASE_OR_EXPIRED, LOCK_IDS, LOCK_KEYS_AND_WAKE, batch_json


def explain(conn: psycopg.Connection, sql: str, args) -> tuple[float, float]:
    """(executor ms, of which the sums' triggers ms)."""
    row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, args).fetchone()
    assert row is not None
    plan = row[0][0]
    sums = [t["Time"] for t in plan.get("Triggers", []) if t["Trigger Name"].startswith("bridge_pending_sums")]
    return plan["Execution Time"], sum(sums)  # the execution time includes the triggers'


def entries(first: int, batch: int) -> list[NewEntry]:
    return [NewEntry(target="bench", kind="decrement", item=f"SKU-{i}", location="WH",
                     idempotency_key=f"shopify:o{i}:1", payload={"order": i}, quantity=Decimal(-1))
            for i in range(first, first + batch)]


def cycle(conn: psycopg.Connection, first: int, batch: int, now: float) -> dict[str, tuple[float, float]]:
    """The statements PostgresQueue sends for enqueue, lease and ack, in order, with their arguments."""
    rows = batch_json(entries(first, batch))
    out = {"enqueue: key locks + NOTIFY": explain(conn, LOCK_KEYS_AND_WAKE, (rows,)),
           "enqueue: INSERT_MANY": explain(conn, INSERT_MANY, (now, now, now, rows))}
    out["lease: LEASE_OR_EXPIRED"] = explain(conn, LEASE_OR_EXPIRED, {
        "now": now, "targets": None, "limit": batch, "worker": "w", "until": now + 30})
    ids = [r[0] for r in conn.execute("SELECT id FROM bridge_entries WHERE state = 'leased'")]
    out["ack: key locks"] = explain(conn, LOCK_IDS, (ids,))
    out["ack: ACK"] = explain(conn, ACK, {"now": now, "ids": ids, "worker": "w", "duration": 0.0})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="postgresql:///erp_bridge_test")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    schema = f"bench_sums_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        url = f"{args.url}{'&' if '?' in args.url else '?'}options={quote(f'-csearch_path={schema}', safe='')}"
        PostgresQueue(url).close()  # migrates
        with psycopg.connect(url, autocommit=True) as conn:
            for r in range(5):  # warm: the tables and indexes hold finished entries, as in a run
                cycle(conn, -(r + 1) * args.batch, args.batch, 1.0)
            runs = [cycle(conn, r * args.batch, args.batch, 1.0) for r in range(args.rounds)]
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        print(f"{args.batch} new keys per batch, median of {args.rounds} cycles; load average {load}")
        total = sums = 0.0
        for name in runs[0]:
            ms, cte = (statistics.median(r[name][i] for r in runs) for i in (0, 1))
            total, sums = total + ms, sums + cte
            print(f"{name:28} {ms:6.3f} ms" + (f", of which the sums' triggers {cte:5.3f} ms" if cte else ""))
        print(f"{'cycle (executor time)':28} {total:6.3f} ms, of which the sums {sums:5.3f} ms ({100 * sums / total:.0f} %)")
    finally:
        with psycopg.connect(args.url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
