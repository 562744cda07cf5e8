#!/usr/bin/env python3
"""SQLite queue throughput against ceilings measured in the same run: enqueue a batch, lease it,
ack it, by one client, each contender in a fresh file in the same directory.

- ``erp-bridge``: ``SQLiteQueue`` through its public API as a busy worker uses it: enqueue, then
  ``ack_and_lease`` (the previous batch's ack and this batch's lease in one transaction, as the
  dispatcher's worker loop does): two commits per cycle. Per-key order, one head per key,
  attempts recorded, running sums kept.
- ``erp-bridge 3 commits``: the same queue with enqueue, lease, ack: three commits per cycle.
- ``erp-bridge dispatcher``: the same queue end to end through ``Dispatcher.run_once`` (routing,
  payload parsing, metrics) to a no-op target; enqueue then drain, so its ack finds nothing new
  to lease: three commits per cycle.
- ``raw 2 commits`` / ``raw``: plain sqlite3, the same pragmas and the same commits per cycle as
  ``erp-bridge`` / ``erp-bridge 3 commits`` with the least SQL (insert; [update; update ...
  returning] in one transaction, or each in its own): what SQLite and the driver allow on this
  disk. The target's ratio (batch 64 >= 0.5 of raw) pairs each bridge row with the raw row of the
  same commits; erp-bridge / raw (3 commits) is printed too, as what the product now does
  against the ceiling the issue first measured.
- ``huey`` (``huey.storage.SqliteStorage``: enqueue, dequeue) and ``litequeue`` (``LiteQueue``:
  put, pop, done), one message per call as their APIs take them (pip install -e '.[bench]').

Page size: a new product file has 2 KiB pages (sqlite.PAGE_SIZE: every commit writes whole pages
to the WAL); the raw ceilings get the same (a property of the file, like the pragmas), huey and
litequeue keep their default 4 KiB unless ``--rivals-page-size 2048`` gives it to them too (run
both ways: the output says which).

Durability is the product's for everyone, commit by commit: WAL, the commit that stores new work
at ``synchronous=FULL`` (it must survive a power cut), the commits that lease or finish work at
the product's setting for those (sqlite.LEASE_SYNCHRONOUS; see erp_bridge/queue/sqlite.py for why).
huey and litequeue have no per-commit option, so the pragma is set on their connection before
each phase (huey's own ``fsync=True`` would be FULL everywhere, litequeue's default NORMAL
everywhere). Within a round the contenders take turns cycle by cycle (the machine is shared, so
a busy moment hits all of them), several rounds, the median round is reported.

    .venv/bin/python scripts/bench_queue.py [--events 4096] [--rounds 5] [--batches 1,8,64] [--db DIR]
    .venv/bin/python scripts/bench_queue.py --no-fsync    # diagnostic: CPU only, no commit fsyncs
    .venv/bin/python scripts/bench_queue.py --rivals-page-size 2048   # huey, litequeue with our pages
    .venv/bin/python scripts/bench_queue.py --without-sums   # diagnosis: also the queue without its sums
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from itertools import count
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from erp_bridge.connectors.base import Capability
from erp_bridge.dispatch.dispatcher import Dispatcher
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import Decrement, Delivered
from erp_bridge.queue import sums
from erp_bridge.queue.base import NewEntry
from erp_bridge.queue.sqlite import ENQUEUE_SYNCHRONOUS, LEASE_SYNCHRONOUS, PAGE_SIZE, SQLiteQueue

#: (store, lease/finish) commit settings for every contender: the product's, unless --no-fsync
LEVELS = [ENQUEUE_SYNCHRONOUS, LEASE_SYNCHRONOUS]
#: page size of each contender's new file: the raw ceilings always get the product's (a property
#: of the file like the pragmas they share); huey and litequeue their own default (4096) unless
#: --rivals-page-size gives them another (the file is created with it before they open it)
PAGE_SIZES = {"raw": PAGE_SIZE, "rivals": 0}

RAW_SCHEMA = ("CREATE TABLE raw_q (id INTEGER PRIMARY KEY, payload TEXT NOT NULL,"
              " state TEXT NOT NULL DEFAULT 'pending', owner TEXT);"
              " CREATE INDEX raw_q_pending ON raw_q (id) WHERE state = 'pending';")


class NoopTarget:
    name = "bench"
    capabilities = frozenset({Capability.APPLY_STOCK_CHANGES})

    def apply_stock_changes(self, changes):
        return [Delivered()] * len(changes)

    def close(self):
        pass


def payload(i: int) -> dict:
    return {"channel": "web", "order": f"o{i}", "line": "1", "item": f"SKU-{i}", "location": "WH",
            "quantity": "-1"}


def new_entries(start: int, n: int) -> list[NewEntry]:
    return [NewEntry(target="bench", kind="decrement", item=f"SKU-{i}", location="WH",
                     idempotency_key=f"web:o{i}:1", payload=payload(i), quantity=Decimal(-1))
            for i in range(start, start + n)]


# Each contender is a generator: set up in a fresh file, then per ``next()`` one cycle (enqueue a
# batch, lease it, finish it), yielding the seconds it took; closing it closes its file.
Cycles = Iterator[float]


def bridge(path: Path, batch: int, keep_sums: bool = True) -> Cycles:
    queue = SQLiteQueue(path, synchronous=LEVELS[0])
    held: list[int] = []
    add = sums.sqlite_add
    try:
        for c in count():
            todo = new_entries(c * batch, batch)
            if not keep_sums:  # --without-sums, this contender's cycles only (they take turns)
                sums.sqlite_add = _add_nothing
            t0 = time.perf_counter()
            queue.enqueue(todo)
            leased = queue.ack_and_lease(held, "bench", 0.0, batch, 30.0)  # acks the previous batch
            yield time.perf_counter() - t0
            sums.sqlite_add = add
            assert len(leased) == batch, len(leased)
            held = [e.id for e in leased]
    finally:
        sums.sqlite_add = add
        queue.close()


def _add_nothing(*_args) -> None:
    """In place of the running sums' upserts (``--without-sums``: a diagnosis, not the product)."""


def bridge_without_sums(path: Path, batch: int) -> Cycles:
    return bridge(path, batch, keep_sums=False)


def bridge3(path: Path, batch: int) -> Cycles:
    queue = SQLiteQueue(path, synchronous=LEVELS[0])
    try:
        for c in count():
            todo = new_entries(c * batch, batch)  # building events is the caller's cost
            t0 = time.perf_counter()
            queue.enqueue(todo)
            leased = queue.lease("bench", batch, 30.0)
            queue.ack([e.id for e in leased], "bench")
            yield time.perf_counter() - t0
            assert len(leased) == batch, len(leased)
    finally:
        queue.close()


def dispatcher(path: Path, batch: int) -> Cycles:
    queue = SQLiteQueue(path, synchronous=LEVELS[0])
    run = Dispatcher(queue, {"bench": NoopTarget()}, batch_size=batch)
    try:
        for c in count():
            todo = [entry_for("bench", Decrement(channel="web", order=f"o{i}", line="1", item=f"SKU-{i}",
                                                 location="WH", quantity=Decimal(1)))
                    for i in range(c * batch, (c + 1) * batch)]
            t0 = time.perf_counter()
            queue.enqueue(todo)
            done = run.run_once("bench")
            yield time.perf_counter() - t0
            assert done == batch, done
    finally:
        queue.close()


def synchronous(db: sqlite3.Connection, level: str) -> None:
    db.execute(f"PRAGMA synchronous={level}")


def _precreate(path: Path, page_size: int) -> None:
    """An empty WAL file with ``page_size`` (0: SQLite's default), as the product makes its own."""
    if page_size:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute(f"PRAGMA page_size={page_size}")
        db.execute("PRAGMA journal_mode=WAL")  # writes the header: the page size is fixed now
        db.close()


def _raw_open(path: Path) -> sqlite3.Connection:
    _precreate(path, PAGE_SIZES["raw"])
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(RAW_SCHEMA)
    return db


def _raw_enqueue(db: sqlite3.Connection, payloads: list) -> None:
    """The enqueue commit, at the enqueue's durability; what follows commits at the relaxed one."""
    synchronous(db, LEVELS[0])
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO raw_q (payload) VALUES (?)", [(json.dumps(p),) for p in payloads])
    db.execute("COMMIT")
    synchronous(db, LEVELS[1])


def _raw_lease(db: sqlite3.Connection, batch: int) -> list:
    return db.execute("UPDATE raw_q SET state = 'leased', owner = 'bench' WHERE id IN (SELECT id"
                      " FROM raw_q WHERE state = 'pending' ORDER BY id LIMIT ?) RETURNING id, payload",
                      (batch,)).fetchall()


def _raw_done(db: sqlite3.Connection, ids: list[int]) -> None:
    db.execute(f"UPDATE raw_q SET state = 'done' WHERE id IN ({', '.join('?' * len(ids))})", ids)


def raw(path: Path, batch: int) -> Cycles:
    """Three commits per cycle: enqueue; lease; ack."""
    db = _raw_open(path)
    try:
        for c in count():
            payloads = [payload(i) for i in range(c * batch, (c + 1) * batch)]
            t0 = time.perf_counter()
            _raw_enqueue(db, payloads)
            db.execute("BEGIN IMMEDIATE")
            rows = _raw_lease(db, batch)
            db.execute("COMMIT")
            db.execute("BEGIN IMMEDIATE")
            _raw_done(db, [r[0] for r in rows])
            db.execute("COMMIT")
            yield time.perf_counter() - t0
            assert len(rows) == batch
    finally:
        db.close()


def raw2(path: Path, batch: int) -> Cycles:
    """Two commits per cycle: enqueue; the previous batch's ack with this lease."""
    db = _raw_open(path)
    held: list[int] = []
    try:
        for c in count():
            payloads = [payload(i) for i in range(c * batch, (c + 1) * batch)]
            t0 = time.perf_counter()
            _raw_enqueue(db, payloads)
            db.execute("BEGIN IMMEDIATE")
            _raw_done(db, held)
            rows = _raw_lease(db, batch)
            db.execute("COMMIT")
            yield time.perf_counter() - t0
            assert len(rows) == batch
            held = [r[0] for r in rows]
    finally:
        db.close()


def huey(path: Path, batch: int) -> Cycles:
    from huey.storage import SqliteStorage

    _precreate(path, PAGE_SIZES["rivals"])
    storage = SqliteStorage(name="bench", filename=str(path), fsync=True)
    try:
        for c in count():
            payloads = [payload(i) for i in range(c * batch, (c + 1) * batch)]
            t0 = time.perf_counter()
            synchronous(storage.conn, LEVELS[0])
            for p in payloads:
                storage.enqueue(json.dumps(p).encode())
            synchronous(storage.conn, LEVELS[1])
            got = [storage.dequeue() for _ in range(batch)]
            yield time.perf_counter() - t0
            assert all(got), got
    finally:
        storage.close()


def litequeue(path: Path, batch: int) -> Cycles:
    from litequeue import LiteQueue

    _precreate(path, PAGE_SIZES["rivals"])
    queue = LiteQueue(str(path))
    try:
        for c in count():
            payloads = [payload(i) for i in range(c * batch, (c + 1) * batch)]
            t0 = time.perf_counter()
            synchronous(queue.conn, LEVELS[0])
            for p in payloads:
                queue.put(json.dumps(p))
            synchronous(queue.conn, LEVELS[1])
            popped = [queue.pop() for _ in range(batch)]
            for message in popped:
                queue.done(message.message_id)
            yield time.perf_counter() - t0
    finally:
        queue.conn.close()


CONTENDERS: dict[str, Callable[[Path, int], Cycles]] = {
    "erp-bridge": bridge, "erp-bridge 3 commits": bridge3, "erp-bridge dispatcher": dispatcher,
    "raw 2 commits": raw2, "raw": raw, "huey": huey, "litequeue": litequeue}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def take_turns(runs: dict[str, Cycles], cycles: int) -> dict[str, float]:
    """Seconds each contender spent in ``cycles`` cycles, taking turns cycle by cycle, the first
    one rotating, after one cycle each not counted (files or schemas created, statements
    compiled). bench_pg_queue.py measures the same way."""
    for each in runs.values():
        next(each)
    spent = dict.fromkeys(runs, 0.0)
    names = list(runs)
    for c in range(cycles):
        for name in names[c % len(names):] + names[:c % len(names)]:
            spent[name] += next(runs[name])
    return spent


def measure(directory: Path, rounds: int, batch: int, events: int) -> dict[str, list[float]]:
    """Events/s per contender and round. Within a round every contender has its own fresh file and
    they take turns cycle by cycle (the starting one rotates), so a busy moment of the shared
    machine falls on all of them alike; each one's first cycle is a warm-up."""
    got: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for r in range(rounds):
        paths = {name: directory / f"{name.replace(' ', '-')}-{batch}-{r}.db" for name in CONTENDERS}
        runs = {name: run(paths[name], batch) for name, run in CONTENDERS.items()}
        spent = take_turns(runs, events // batch)
        for name, cycles in runs.items():
            cycles.close()
            got[name].append(events // batch * batch / spent[name])
            for leftover in directory.glob(paths[name].name + "*"):
                leftover.unlink()
    return got


#: (bridge row, raw row with the same commits per cycle): the target's ratios
PAIRS = (("erp-bridge", "raw 2 commits"), ("erp-bridge 3 commits", "raw"))


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(medians: dict[int, dict[str, float]]) -> None:
    print("\ntargets (issue 15):")
    if 64 in medians:
        m = medians[64]
        for ours, ceiling in PAIRS:
            ratio = m[ours] / m[ceiling]
            print(f"  batch 64: {ours} / {ceiling} = {ratio:.2f} (target >= 0.5, same commits per cycle):"
                  f" {verdict(ratio >= 0.5)}")
        print(f"  (batch 64: erp-bridge, 2 commits, / raw, 3 commits = {m['erp-bridge'] / m['raw']:.2f}: the"
              " product's busy path against the ceiling as the issue first measured it; not the target's ratio)")
    if 1 in medians:
        m = medians[1]
        for ours in ("erp-bridge", "erp-bridge 3 commits"):
            for rival in ("huey", "litequeue"):
                ratio = m[ours] / m[rival]
                print(f"  batch 1: {ours} / {rival} = {ratio:.2f} (target >= 1.0): {verdict(ratio >= 1.0)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4096, help="events per round at batch >= 8 (batch 1: 1/4)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--db", type=Path, default=None, help="directory for the queue files (default: temp)")
    parser.add_argument("--no-fsync", action="store_true",
                        help="every commit of every contender at synchronous=OFF: the CPU-bound ratio, which a "
                             "disk with very cheap fsync approaches (a diagnostic, not the targets' setting)")
    parser.add_argument("--without-sums", action="store_true",
                        help="diagnosis: add 'no sums', erp-bridge without its running sums' upserts (pull answers "
                             "would then be wrong: not the product), to show what the sums cost against the ceilings")
    parser.add_argument("--rivals-page-size", type=int, default=0,
                        help="page size of huey's and litequeue's files (default: their own, 4096); the raw "
                             f"ceilings always have the product's ({PAGE_SIZE})")
    args = parser.parse_args()
    if args.no_fsync:
        LEVELS[:] = ["OFF", "OFF"]
    PAGE_SIZES["rivals"] = args.rivals_page_size
    if args.without_sums:
        CONTENDERS["no sums"] = bridge_without_sums
    import huey as huey_pkg
    import litequeue as litequeue_pkg

    print(f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, huey {huey_pkg.__version__}, "
          f"litequeue {litequeue_pkg.__version__}; {os.cpu_count()} CPUs; load average {loadavg()}")
    print(f"durability, every contender: WAL; enqueue/put commits synchronous={LEVELS[0]}; lease/ack/"
          f"dequeue/pop/done commits synchronous={LEVELS[1]} (set per phase on huey's and litequeue's "
          "connections; on their own huey fsync=True is FULL on every commit, litequeue NORMAL on every commit)")
    print("commits per cycle (one batch): erp-bridge 2 (enqueue; ack_and_lease = the previous batch's ack and"
          " this lease in one transaction, as the dispatcher's busy worker), raw 2 commits 2 (the same);"
          " erp-bridge 3 commits, raw and the dispatcher 3 (enqueue; lease; ack);"
          " huey 2 per message (enqueue; dequeue, which deletes); litequeue 3 per message (put; pop; done)")
    print(f"page size of new files: erp-bridge {PAGE_SIZE} (the product's, sqlite.PAGE_SIZE), raw ceilings the same;"
          f" huey and litequeue {args.rivals_page_size or '4096 (their default)'}")
    print(f"median of {args.rounds} rounds; in a round the contenders take turns cycle by cycle")
    medians: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(dir=args.db) as tmp:
        print(f"files in {tmp}\n")
        print(f"{'batch':>5} {'events':>6} " + " ".join(f"{n:>21}" for n in CONTENDERS)
              + f" {'bridge/raw2':>11} {'bridge3/raw':>11} {'/huey':>6} {'/litequeue':>10}  load avg")
        for batch in (int(b) for b in args.batches.split(",")):
            events = args.events if batch > 1 else max(64, args.events // 4)
            got = measure(Path(tmp), args.rounds, batch, events)
            m = medians[batch] = {name: statistics.median(v) for name, v in got.items()}
            print(f"{batch:>5} {events:>6} " + " ".join(f"{m[n]:>21.0f}" for n in CONTENDERS)
                  + f" {m['erp-bridge'] / m['raw 2 commits']:>11.2f}"
                  f" {m['erp-bridge 3 commits'] / m['raw']:>11.2f} {m['erp-bridge'] / m['huey']:>6.2f}"
                  f" {m['erp-bridge'] / m['litequeue']:>10.2f}  {loadavg()}")
            if "no sums" in m:
                print(f"      diagnosis, no sums: /raw2 {m['no sums'] / m['raw 2 commits']:.2f}, /huey"
                      f" {m['no sums'] / m['huey']:.2f}, /litequeue {m['no sums'] / m['litequeue']:.2f}")
    report(medians)
    print(f"\nRSS peak (VmHWM) of this process: {rss_mb('VmHWM'):.1f} MB; load average at the end {loadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
