#!/usr/bin/env python3
"""Benchmark the mapping machinery: engine throughput on one core, and load time of a
100,000-row SKU lookup table (generated into a temporary directory).

Usage: .venv/bin/python scripts/bench_mapping.py [--events N] [--rows N]
Targets (issue 3): >= 50,000 events/s mapped; 100,000-row table loads in < 1 s.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from erp_bridge.domain import (
    Decrement,
    Figure,
    StockMove,
)
from erp_bridge.mapping.engine import build_requests
from erp_bridge.mapping.loader import load_mappings
from erp_bridge.mapping.lookups import load_lookup

MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"
NOW = datetime(2025, 3, 14, 10, 0, tzinfo=UTC)


def events(n: int, system: str) -> list:
    skus = ("chair-blue", "chair-red", "007")
    if system == "shopify":
        return [Figure(skus[i % 3], "WH/Stock", Decimal(i % 50), Decimal(i % 7), f"k{i}") for i in range(n)]
    if system == "odoo":
        return [Decrement(channel="shopify", order=str(i), line="1", item=skus[i % 3], location="WH/Stock",
                          quantity=Decimal(1), occurred_at=NOW) for i in range(n)]
    return [StockMove(system="odoo", move_id=str(i), item=skus[i % 3], quantity=Decimal(2), from_location="WH/Stock",
                      to_location="Customers", location="WH/Stock", direction="out", occurred_at=NOW) for i in range(n)]


def bench_engine(n: int) -> dict[str, float]:
    mappings = load_mappings(MAPPINGS)
    ids = iter(range(10**9))
    new_id = lambda: f"id-{next(ids)}"
    rates = {}
    for system in sorted(mappings.systems):
        mapping = mappings.systems[system]
        if not mapping.requests:  # Odoo (its fixed API) and pull clients map no request bodies
            continue
        batch = events(n, system)
        build_requests(batch[0], mapping, mappings.lookups, now=NOW, new_id=new_id)  # compile once
        start, cpu = time.perf_counter(), time.process_time()
        for event in batch:  # one call per event: the dispatcher's worst case
            build_requests(event, mapping, mappings.lookups, now=NOW, new_id=new_id)
        # CPU time is what one core spends; wall time also counts waiting for a busy CPU
        rates[system] = (n / (time.perf_counter() - start), n / (time.process_time() - cpu))
    return rates


def bench_lookup(rows: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.csv"
        with path.open("w") as out:
            out.write("sku,inventory_item_id\n")
            out.writelines(f"SKU-{i:07d},{43210000000000 + i}\n" for i in range(rows))
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            table, problems = load_lookup(path, "items.csv", "sku", "inventory_item_id")
            best = min(best, time.perf_counter() - start)
            assert not problems and len(table.codes) == rows
        return best


def calibration() -> float:
    """Million small dicts per CPU-second: a fixed pure-Python yardstick, so figures from a busy or
    slow machine can be compared with another machine's."""
    start = time.process_time()
    for i in range(1_000_000):
        {"a": i, "b": i}  # noqa: B018
    return 1 / (time.process_time() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    rates = bench_engine(args.events)
    print(f"engine: {args.events:,} events per system, one build_requests call each, one process")
    for system, (wall, cpu) in rates.items():
        print(f"  {system:15s} {cpu:10,.0f} events/s per CPU-second  ({wall:,.0f}/s wall clock)")
    slowest = min(cpu for _, cpu in rates.values())
    print(f"  slowest         {slowest:10,.0f} events/s per CPU-second  (target >= 50,000)")
    print(f"yardstick: {calibration():.1f} million small dicts per CPU-second on this machine")
    seconds = bench_lookup(args.rows)
    print(f"lookup load {args.rows:,} rows: {seconds:.3f} s (best of 3; target < 1 s)")
    return 0 if slowest >= 50_000 and seconds < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
