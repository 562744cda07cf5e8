#!/usr/bin/env python3
"""What one ``pending_quantity`` read costs (as the real-time check calls it: decrements only,
plus those delivered since the cached read) with nothing pending and with N pending decrements
of one key, on SQLite and PostgreSQL: the queue side of the pull path, without HTTP. Flat = the
same cost at N as at 0. ``--profile`` adds cProfile's top functions per case.

    .venv/bin/python scripts/bench_pending.py [--pending 20000] [--calls 200] [--profile]
        [--pg-url postgresql:///erp_bridge_test]   # an empty schema is made and dropped
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from erp_bridge.queue.base import NewEntry
from erp_bridge.queue.postgres import PostgresQueue
from erp_bridge.queue.sqlite import SQLiteQueue

KEY = ("sap_b1", "chair-blue", "WH/Stock")


def plant(queue, n: int) -> None:
    for first in range(0, n, 1000):
        queue.enqueue([NewEntry(target=KEY[0], kind="decrement", item=KEY[1], location=KEY[2],
                                idempotency_key=f"shopify:o{i}:1", payload={}, quantity=Decimal(-1))
                       for i in range(first, min(n, first + 1000))])


def measure(queue, item: str, since: float, calls: int, profile: bool) -> tuple[float, float, str]:
    """(median ms, p99 ms, profile text) of ``calls`` reads of (sap_b1, item, WH/Stock)."""
    times, prof = [], cProfile.Profile() if profile else None
    for _ in range(calls):
        started = time.perf_counter()
        if prof:
            prof.enable()
        queue.pending_quantity(KEY[0], item, KEY[2], kinds={"decrement"}, done_since=since)
        if prof:
            prof.disable()
        times.append((time.perf_counter() - started) * 1000)
    text = ""
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(4)
        text = "\n".join(line for line in out.getvalue().splitlines()[4:] if line.strip())
    return statistics.median(times), sorted(times)[int(calls * 0.99) - 1], text


def run(engine: str, queue, args) -> None:
    since = time.time()  # the cached read's start: nothing delivered since
    rows = {}
    for label, n in (("0 pending", 0), (f"{args.pending} pending", args.pending)):
        if n:
            plant(queue, n)
        rows[label] = measure(queue, KEY[1], since, args.calls, args.profile)
        print(f"{engine:10} {label:15} median {rows[label][0]:8.3f} ms  p99 {rows[label][1]:8.3f} ms")
        if rows[label][2]:
            print(rows[label][2])
    other = measure(queue, "other-item", since, args.calls, False)
    print(f"{engine:10} {'other item':15} median {other[0]:8.3f} ms  p99 {other[1]:8.3f} ms (its key has none)")
    ratio = rows[f"{args.pending} pending"][0] / rows["0 pending"][0]
    print(f"{engine:10} median({args.pending}) / median(0) = {ratio:.2f} ({'flat' if ratio <= 1.25 else 'NOT flat'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pending", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--pg-url", default="", help="also PostgreSQL (a database; a schema is made in it)")
    args = parser.parse_args()
    print(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    with tempfile.TemporaryDirectory() as tmp:
        queue = SQLiteQueue(Path(tmp) / "queue.sqlite3")
        run("sqlite", queue, args)
        queue.close()
    if args.pg_url:
        run_pg(args)
    return 0


def run_pg(args) -> None:
    import psycopg

    schema = f"bench_pending_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in args.pg_url else "?"
        queue = PostgresQueue(f"{args.pg_url}{sep}options={quote(f'-csearch_path={schema}', safe='')}")
        run("postgresql", queue, args)
        queue.close()
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    raise SystemExit(main())
