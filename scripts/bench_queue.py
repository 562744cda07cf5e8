#!/usr/bin/env python3
"""Queue throughput: enqueue -> lease -> deliver to a no-op target -> ack, durable commits.

Each cycle enqueues one batch (one transaction), then the Dispatcher leases it, routes it to a
connector that accepts everything, and acks it (one transaction each). Every event of a batch
waits for the whole cycle, so the per-event latency is the cycle time. RSS comes from
/proc/self/status (VmRSS now, VmHWM peak).

    .venv/bin/python scripts/bench_queue.py [--events 4096] [--db DIR] [--synchronous FULL]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from erp_bridge.connectors.base import Capability
from erp_bridge.dispatch.dispatcher import Dispatcher
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import (
    Decrement,
    Delivered,
)
from erp_bridge.queue.base import RetryPolicy
from erp_bridge.queue.sqlite import SQLiteQueue

BATCH_SIZES = (1, 8, 64)


class NoopTarget:
    name = "bench"
    capabilities = frozenset({Capability.APPLY_STOCK_CHANGES})

    def apply_stock_changes(self, changes):
        return [Delivered()] * len(changes)

    def close(self):
        pass


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def entries(start: int, n: int):
    return [entry_for("bench", Decrement(channel="web", order=f"o{i}", line="1", item=f"SKU-{i}",
                                         location="WH", quantity=Decimal(1))) for i in range(start, start + n)]


def commit_ms(directory: Path, synchronous: str, n: int = 200) -> float:
    """What one durable commit costs on this disk right now (the floor under every cycle)."""
    queue = SQLiteQueue(directory / "commit.db", synchronous=synchronous)
    started = time.perf_counter()
    for _ in range(n):
        with queue._tx() as db:
            db.execute("INSERT INTO attempts (entry_id, number, worker, outcome, started_at, duration_s)"
                       " VALUES (0, 0, 'bench', 'released', 0, 0)")
    queue.close()
    return (time.perf_counter() - started) / n * 1000


def run(directory: Path, batch: int, events: int, synchronous: str) -> dict:
    queue = SQLiteQueue(directory / f"bench-{batch}.db", RetryPolicy(), synchronous=synchronous)
    dispatcher = Dispatcher(queue, {"bench": NoopTarget()}, batch_size=batch)
    cycles, total = events // batch, []
    started = time.perf_counter()
    for c in range(cycles):
        todo = entries(c * batch, batch)  # building events is the caller's cost, not the queue's
        t0 = time.perf_counter()
        queue.enqueue(todo)
        assert dispatcher.run_once("bench") == batch
        total.append(time.perf_counter() - t0)
    elapsed = sum(total)
    queue.close()
    cuts = statistics.quantiles(total, n=100)
    return {"batch": batch, "events": cycles * batch, "events_per_s": cycles * batch / elapsed,
            "p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000,
            "wall_s": time.perf_counter() - started, "rss_mb": rss_mb()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4096)
    parser.add_argument("--db", type=Path, default=None, help="directory for the queue files")
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL", "OFF"],
                        help="FULL is what the product runs; the others show what fsync costs")
    args = parser.parse_args()
    idle = rss_mb()
    with tempfile.TemporaryDirectory(dir=args.db) as tmp:
        print(f"queue files in {tmp} (SQLite {__import__('sqlite3').sqlite_version}, WAL, "
              f"synchronous={args.synchronous}); one one-row commit: {commit_ms(Path(tmp), args.synchronous):.2f} ms; "
              f"load average {Path('/proc/loadavg').read_text().split()[0]} on {__import__('os').cpu_count()} CPUs")
        print(f"{'batch':>5} {'events':>7} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>7}")
        for batch in BATCH_SIZES:
            r = run(Path(tmp), batch, args.events, args.synchronous)
            print(f"{r['batch']:>5} {r['events']:>7} {r['events_per_s']:>9.0f} {r['p50_ms']:>8.2f} "
                  f"{r['p99_ms']:>8.2f} {r['rss_mb']:>7.1f}")
    print(f"RSS idle (imports, before load): {idle:.1f} MB; peak under load (VmHWM): {rss_mb('VmHWM'):.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
