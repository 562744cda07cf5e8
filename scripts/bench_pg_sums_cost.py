#!/usr/bin/env python3
"""What the running-sum triggers (erp_bridge/queue/sums.py, migration 5) cost the PostgreSQL
queue's own statements: ``EXPLAIN (ANALYZE)`` of enqueue, lease and ack on a batch of new keys
(the worst case: every upsert inserts a sum), the trigger's time against the statement's.
A fresh schema, migrated by the product, dropped at the end. Server time only: no round trips,
no commit, so the share of a whole enqueue-lease-ack cycle is smaller (see BENCHMARKS.md).

    .venv/bin/python scripts/bench_pg_sums_cost.py [--url postgresql:///erp_bridge_test] [--rounds 40]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from erp_bridge.queue.postgres import PostgresQueue
from erp_bridge.queue.postgres_sql import ACK, INSERT_MANY, LEASE


def explain(conn: psycopg.Connection, sql: str, args) -> tuple[float, float]:
    """(statement ms, of which triggers ms)."""
    row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, args).fetchone()
    assert row is not None
    plan = row[0][0]
    return plan["Execution Time"], sum(t["Time"] for t in plan.get("Triggers", []))


def cycle(conn: psycopg.Connection, first: int, batch: int) -> dict[str, tuple[float, float]]:
    keys = range(first, first + batch)
    columns = [["bench"] * batch, ["decrement"] * batch, [f"SKU-{i}" for i in keys], ["WH"] * batch,
               [f"shopify:o{i}:1" for i in keys], ['{"order": 1}'] * batch, ["-1"] * batch]
    out = {"enqueue (INSERT_MANY)": explain(conn, INSERT_MANY, (1.0, 1.0, 1.0, *columns))}
    out["lease (LEASE)"] = explain(conn, LEASE, {"now": 2.0, "targets": None, "limit": batch, "worker": "w",
                                                 "until": 99.0})
    ids = [r[0] for r in conn.execute("SELECT id FROM bridge_entries WHERE state = 'leased'")]
    out["ack (ACK)"] = explain(conn, ACK, {"now": 3.0, "ids": ids, "worker": "w", "started": 2.0, "duration": 1.0})
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
            runs = [cycle(conn, r * args.batch, args.batch) for r in range(args.rounds)]
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        print(f"{args.batch} rows per statement, median of {args.rounds}; load average {load}")
        for name in runs[0]:
            total, trigger = (statistics.median(r[name][i] for r in runs) for i in (0, 1))
            print(f"{name:22} statement {total:6.3f} ms, of which the sums trigger {trigger:6.3f} ms"
                  f" ({100 * trigger / total:4.1f} %)")
    finally:
        with psycopg.connect(args.url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
