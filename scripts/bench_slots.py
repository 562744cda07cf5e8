#!/usr/bin/env python3
"""What sharing a target's concurrency across processes costs at saturation: workers that call a
target for ``--call-ms`` each, as many at once as ``--slots`` allows, for ``--seconds``.

- ``ceiling``: the slots / call time (every slot busy all the time);
- ``own``: one process's own slots (dispatch.ratelimit.Slots), ``--hosts x --threads`` workers;
- ``shared``: ``--hosts`` connection pools (as that many processes have) taking the target's slot
  rows in the database (storage.limits.SharedSlots), ``--threads`` workers each.

A waiting worker asks the database again every 2-50 ms, so a freed slot may stay idle that long:
the ratio shared/own is what that costs. The pools run in this one process (the waits are I/O).

    .venv/bin/python scripts/bench_slots.py [--url postgresql:///erp_bridge_test] [--slots 4]
        [--hosts 4] [--threads 4] [--call-ms 20,100] [--seconds 3] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from erp_bridge.dispatch.ratelimit import Slots
from erp_bridge.storage import postgres as pg
from erp_bridge.storage.limits import SharedSlots
from scripts.bench_pg_queue import in_schema


def calls_per_s(slots: list[Slots], threads: int, call_s: float, seconds: float) -> float:
    stop, calls, lock = threading.Event(), [0], threading.Lock()

    def work(mine: Slots) -> None:
        while not stop.is_set():
            with mine.hold(stop) as inside:
                if not inside:
                    return
                time.sleep(call_s)
            with lock:
                calls[0] += 1

    workers = [threading.Thread(target=work, args=(s,)) for s in slots for _ in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    return calls[0] / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="postgresql:///erp_bridge_test")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--call-ms", default="20,100")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    schema = f"bench_slots_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    urls = [in_schema(args.url, schema) + f"&application_name=host-{n}" for n in range(args.hosts)]
    try:
        pools = [pg.acquire(url) for url in urls]
        print(f"load average {os.getloadavg()[0]:.2f}; {args.slots} slots, {args.hosts} hosts x {args.threads} workers")
        print("| call | ceiling/s | own/s | shared/s | shared/own |\n|---:|---:|---:|---:|---:|")
        for call_ms in (float(c) for c in args.call_ms.split(",")):
            own, shared = [], []
            for n in range(args.rounds):
                own.append(calls_per_s([Slots(args.slots)], args.hosts * args.threads, call_ms / 1000, args.seconds))
                made = [SharedSlots(pool, f"t{call_ms}-{n}", args.slots, 30) for pool in pools]
                shared.append(calls_per_s(made, args.threads, call_ms / 1000, args.seconds))
            ratio = statistics.median(s / o for s, o in zip(shared, own))
            print(f"| {call_ms:g} ms | {args.slots / call_ms * 1000:,.0f} | {statistics.median(own):,.1f} |"
                  f" {statistics.median(shared):,.1f} | {ratio:.2f} |")
        print(f"load average {os.getloadavg()[0]:.2f}")
    finally:
        for url in urls:
            pg.release(url)
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
