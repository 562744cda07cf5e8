#!/usr/bin/env python3
"""PostgreSQL queue throughput against two ceilings measured in the same run, on the same server:
enqueue a batch (one transaction), lease it, ack it (one transaction each), by one client.

- ``erp-bridge``: the product's PostgresQueue (per-key ordering, one head per key, attempts
  recorded, running sums, NOTIFY), as the dispatcher uses it.
- ``raw``: the same three commits with the least SQL that does the job (insert; update ... FOR
  UPDATE SKIP LOCKED; update), no ordering, no attempts: what the server and driver allow.
- ``pgqueuer`` (pip install pgqueuer): its own enqueue, dequeue and log_jobs (completion).
- ``pgqueuer own``: the same, every commit at the session's durability (pgqueuer's own way).

Durability is the product's for everyone, commit by commit (erp_bridge/queue/postgres.py says
why): the commit that stores new work at the session's ``synchronous_commit`` (the server's
default, printed; ``on`` here), the commits that lease or finish work at ``off``. ``raw`` sets it
in its lease and ack statements as the product does (postgres_sql.RELAXED); pgqueuer has no
per-transaction option, so its connection gets ``SET synchronous_commit = off`` before its
dequeue and ``RESET`` before its enqueue, outside the timed phases (they cost it a round trip
each, which the product does not pay). The target is judged against ``pgqueuer``; the ratio to
``pgqueuer own`` is printed next to it (the fairness adjustment's effect).

Each contender runs in a schema of its own; within a round the contenders take turns cycle by
cycle, the first one rotating (as bench_queue.py does), so a slow moment of the shared server
falls on all of them alike (whole runs one after the other moved the ratio by 0.15-0.3 between
invocations). Rates are medians over rounds, ratios are medians of each round's own ratio (with
their range), and the last columns say whether issue 15's target (batch 64: >= 1.0 of pgqueuer) is
met.
The load average is printed before and after each row: compare runs only at similar load.

    .venv/bin/pip install -e '.[bench]'   # pgqueuer
    .venv/bin/python scripts/bench_pg_queue.py [--url postgresql:///erp_bridge_test] [--events 4096]
        [--rounds 7] [--batches 1,64] [--without-sums] [--announce]

``--without-sums`` adds a diagnosis, not a contender: the same queue with migration 5's triggers
disabled in its schema (its pull answers would be wrong), to show what the running sums cost.
``--announce`` adds the queue as where a pull client is configured (each ack NOTIFYs the keys it
applied, docs/scaling.md), to show what that costs.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from itertools import count
from pathlib import Path
from urllib.parse import quote

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_queue import take_turns

from erp_bridge.queue.base import NewEntry
from erp_bridge.queue.postgres import PostgresQueue
from erp_bridge.queue.postgres_sql import RELAXED

RAW_SCHEMA = ("CREATE TABLE raw_q (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload jsonb NOT NULL,"
              " state text NOT NULL DEFAULT 'pending', owner text);"
              " CREATE INDEX raw_q_pending ON raw_q (id) WHERE state = 'pending'")


def in_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options={quote(f'-csearch_path={schema}', safe='')}"


def entries(start: int, n: int) -> list[NewEntry]:
    return [NewEntry(target="bench", kind="decrement", item=f"SKU-{i}", location="WH",
                     idempotency_key=f"web:o{i}:1", payload={"order": f"o{i}", "quantity": "-1"},
                     quantity=Decimal(-1)) for i in range(start, start + n)]


# Each contender is a generator: set up in its own fresh schema, then per ``next()`` one cycle
# (enqueue a batch, lease it, ack it), yielding the seconds it took; closing it closes its
# connections (the schema is dropped by ``contender``).
Cycles = Iterator[float]


def bridge(url: str, batch: int, sums: bool = True, announce: bool = False) -> Cycles:
    queue = PostgresQueue(url)
    if announce:  # --announce: as where a pull client is configured, a listener included
        queue.announce_applied()
        queue.subscribe_applied(lambda keys: None)
    if not sums:  # --without-sums: a diagnosis of what the running sums cost, not the product
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER TABLE bridge_entries DISABLE TRIGGER USER")
    try:
        for c in count():
            todo = entries(c * batch, batch)
            t0 = time.perf_counter()
            queue.enqueue(todo)
            leased = queue.lease("bench", batch, 30.0)
            queue.ack([e.id for e in leased], "bench")
            yield time.perf_counter() - t0
            assert len(leased) == batch
    finally:
        queue.close()


def bridge_without_sums(url: str, batch: int) -> Cycles:
    return bridge(url, batch, sums=False)


def bridge_announcing(url: str, batch: int) -> Cycles:
    return bridge(url, batch, announce=True)


def raw(url: str, batch: int) -> Cycles:
    from psycopg.types.json import Jsonb

    with psycopg.connect(url) as conn:
        with conn.transaction():
            conn.execute(RAW_SCHEMA)
        for c in count():
            payloads = [Jsonb({"order": f"o{i}", "quantity": "-1"}) for i in range(c * batch, (c + 1) * batch)]
            t0 = time.perf_counter()
            with conn.transaction():
                conn.execute("INSERT INTO raw_q (payload) SELECT unnest(%s::jsonb[])", (payloads,))
            with conn.transaction():  # the lease and the ack relaxed as the product's, in the statement
                ids = [r[0] for r in conn.execute(
                    f"UPDATE raw_q SET state = 'leased', owner = 'bench' FROM (SELECT {RELAXED}) s WHERE id IN"
                    " (SELECT id FROM raw_q WHERE state = 'pending' ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
                    " RETURNING id", (batch,))]
            with conn.transaction():
                conn.execute(f"UPDATE raw_q SET state = 'done' FROM (SELECT {RELAXED}) s WHERE id = ANY(%s)", (ids,))
            yield time.perf_counter() - t0


def pgqueuer(url: str, batch: int) -> Cycles:
    return _pgqueuer(url, batch, relaxed=True)


def pgqueuer_own(url: str, batch: int) -> Cycles:
    return _pgqueuer(url, batch, relaxed=False)


def _pgqueuer(url: str, batch: int, relaxed: bool) -> Cycles:
    """pgqueuer is asyncio: its own event loop, run one cycle at a time."""
    from pgqueuer.queries import EntrypointExecutionParameter, Queries

    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(psycopg.AsyncConnection.connect(url, autocommit=True))
    queries = Queries.from_psycopg_connection(conn)
    loop.run_until_complete(queries.install(create_schema=False))
    manager = uuid.uuid4()

    async def cycle(c: int) -> float:
        payloads = [f'{{"order": "o{i}", "quantity": "-1"}}'.encode() for i in range(c * batch, (c + 1) * batch)]
        if relaxed:  # outside the timed phases: the product pays no statement for its setting
            await conn.execute("RESET synchronous_commit")
        t0 = time.perf_counter()
        await queries.enqueue(["bench"] * batch, payloads, [0] * batch)
        spent = time.perf_counter() - t0
        if relaxed:
            await conn.execute("SET synchronous_commit = off")
        t0 = time.perf_counter()
        jobs = await queries.dequeue(batch, {"bench": EntrypointExecutionParameter(0)}, manager, None,
                                     timedelta(seconds=30))
        await queries.log_jobs([(job, "successful", None) for job in jobs])
        spent += time.perf_counter() - t0
        assert len(jobs) == batch, len(jobs)
        return spent

    try:
        for c in count():
            yield loop.run_until_complete(cycle(c))
    finally:
        loop.run_until_complete(conn.close())
        loop.close()


def contender(url: str, name: str, run: Callable[[str, int], Cycles], batch: int) -> Cycles:
    """``run`` in a schema of its own, dropped when the generator is closed."""
    schema = f"bench_{name.replace('-', '_').replace(' ', '_')}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    cycles = run(in_schema(url, schema), batch)
    try:
        yield from cycles
    finally:
        cycles.close()
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


#: issue 15: erp-bridge at batch 64 at least as fast as pgqueuer in the same run
TARGET = {64: 1.0}


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def run_rounds(url: str, batch: int, events: int, rounds: int, without_sums: bool = False,
               announce: bool = False) -> dict[str, list[float]]:
    """Events/s per contender and round. Within a round every contender has its own fresh schema
    and they take turns cycle by cycle, the first one rotating (as bench_queue.py), so a slow
    moment of the shared server (a checkpoint, autovacuum, another process) falls on all of them
    alike; each one's first cycle is a warm-up, not counted."""
    contenders = [("erp-bridge", bridge), ("raw", raw), ("pgqueuer", pgqueuer), ("pgqueuer own", pgqueuer_own)]
    if without_sums:
        contenders.append(("no sums", bridge_without_sums))
    if announce:
        contenders.append(("announcing", bridge_announcing))
    rates: dict[str, list[float]] = {name: [] for name, _ in contenders}
    names = [name for name, _ in contenders]
    for _ in range(rounds):
        runs = {name: contender(url, name, run, batch) for name, run in contenders}
        try:
            spent = take_turns(runs, events // batch)
        finally:
            for cycles in runs.values():
                cycles.close()
        for name in names:
            rates[name].append(events // batch * batch / spent[name])
    return rates


def ratios(rates: dict[str, list[float]], ceiling: str, who: str = "erp-bridge") -> list[float]:
    return [b / c for b, c in zip(rates[who], rates[ceiling], strict=True)]


def row(batch: int, rates: dict[str, list[float]]) -> str:
    med = {name: statistics.median(values) for name, values in rates.items()}
    vs_pgq = ratios(rates, "pgqueuer")
    target = TARGET.get(batch)
    met = "-" if target is None else ("met" if statistics.median(vs_pgq) >= target else "NOT met")
    return (f"{batch:>5} {med['erp-bridge']:>12.0f} {med['raw']:>9.0f} {med['pgqueuer']:>10.0f} "
            f"{med['pgqueuer own']:>10.0f} {statistics.median(ratios(rates, 'raw')):>7.2f} "
            f"{statistics.median(vs_pgq):>11.2f} {min(vs_pgq):>5.2f}-{max(vs_pgq):<5.2f} "
            f"{statistics.median(ratios(rates, 'pgqueuer own')):>7.2f} "
            f"{'-' if target is None else f'>= {target:.1f}':>7} {met:>7}  (load {load()})"
            + (f"\n      diagnosis: the same queue with the sums' triggers disabled {med['no sums']:.0f}/s,"
               f" {statistics.median(ratios(rates, 'pgqueuer', 'no sums')):.2f} of pgqueuer" if "no sums" in rates else "")
            + (f"\n      with pull clients configured (each ack NOTIFYs the keys it applied, a listener subscribed):"
               f" {med['announcing']:.0f}/s, {statistics.median(ratios(rates, 'pgqueuer', 'announcing')):.2f} of pgqueuer,"
               f" {statistics.median(ratios(rates, 'erp-bridge', 'announcing')):.2f} of the queue without"
               if "announcing" in rates else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("ERP_BRIDGE_TEST_PG_DB", "postgresql:///erp_bridge_test"))
    parser.add_argument("--events", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--without-sums", action="store_true",
                        help="diagnosis: also run the queue with its running sums' triggers disabled (pull answers would "
                             "then be wrong: not the product), to show what the sums cost against the ceilings")
    parser.add_argument("--announce", action="store_true",
                        help="also run the queue as where a pull client is configured: every ack NOTIFYs the keys it "
                             "applied (PostgresQueue.announce_applied), with a listener subscribed")
    args = parser.parse_args()
    with psycopg.connect(args.url) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
        sync = conn.execute("SHOW synchronous_commit").fetchone()[0]
    print(f"PostgreSQL {server}, {args.events} events per round at batch > 1 ({max(64, args.events // 16)} at "
          f"batch 1), {args.rounds} interleaved rounds; load average {load()} on {os.cpu_count()} CPUs. Rates: "
          "medians; ratios: medians of each round's ratio (range after).\nDurability: enqueue commits at "
          f"synchronous_commit={sync} (the session's), lease/ack/dequeue/log_jobs commits at off for erp-bridge, "
          f"raw and pgqueuer; 'pgqueuer own': every commit at {sync}.")
    print(f"{'batch':>5} {'erp-bridge/s':>12} {'raw/s':>9} {'pgqueuer/s':>10} {'pgq own/s':>10} {'vs raw':>7} "
          f"{'vs pgqueuer':>11} {'range':>11} {'vs own':>7} {'target':>7} {'met?':>7}")
    for batch in (int(b) for b in args.batches.split(",")):
        events = args.events if batch > 1 else max(64, args.events // 16)
        print(row(batch, run_rounds(args.url, batch, events, args.rounds, args.without_sums, args.announce)), flush=True)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
