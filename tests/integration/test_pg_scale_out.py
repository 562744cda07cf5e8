"""Scale-out on PostgreSQL: several real `erp-bridge worker` processes on one database.

- 4 processes race on 20,000 events: every event reaches the target exactly once (one request
  per key, no redelivery), in enqueue order per ordering key, and all 4 processes did work.
- kill -9 of one process mid-delivery: its leases come back (after queue.lease_s) and the other
  processes finish everything; every key is applied once, and the only repeated requests are
  entries the killed process held.

Skipped, with the reason, when no PostgreSQL is reachable (tests/pg.py).
"""
from __future__ import annotations

import signal
import socket
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from erp_bridge.domain import Decrement
from erp_bridge.mapping.loader import load_mappings
from erp_bridge.queue import open_queue
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.sync.router import Router
from tests.fakes.http_target import FakeTarget
from tests.integration.test_crash_safety import CONFIG, configure, depth, start_worker, wait_for
from tests.pg import pg_url  # noqa: F401 - fixture

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
PROCESSES, ITEMS = 4, 500


def sales(count: int) -> list[Decrement]:
    return [Decrement(channel="web", order=f"o{n}", line="1", item=f"SKU-{n % ITEMS}", location="WH",
                      quantity=Decimal(1)) for n in range(count)]


def setup(tmp_path: Path, target: FakeTarget, url: str, count: int, lease_s: float):
    config = configure(tmp_path, target.url, url)
    config.write_text(config.read_text().replace(f"lease_s: {3.0}", f"lease_s: {lease_s}"))
    # the processes share the target's concurrency (migration 8): 16 calls at once, as 4 slots
    # per process gave before, so every worker thread of every process races for the leases
    with (tmp_path / "mappings" / "shop.yaml").open("a") as mapping:
        mapping.write("limits: {concurrency: 16}\n")
    (tmp_path / "data").mkdir()
    queue = open_queue(url, RetryPolicy())
    router = Router(load_mappings(tmp_path / "mappings"))
    events = sales(count)
    for start in range(0, count, 1000):
        queue.enqueue([router.channel_change(sale)[0] for sale in events[start:start + 1000]])
    return config, queue, events


def in_order_per_key(applied: list[str], events: list[Decrement]) -> bool:
    by_item: dict[str, list[int]] = defaultdict(list)
    for key in applied:
        n = int(key.split(":")[1][1:])
        by_item[events[n].item].append(n)
    return all(orders == sorted(orders) for orders in by_item.values())


def processes_that_delivered(url: str) -> int:
    with psycopg.connect(url) as conn:
        # the delivered attempt is kept in the entry row (migration 6)
        return conn.execute("SELECT count(DISTINCT split_part(delivered_by, '/', 1)) FROM bridge_entries"
                            " WHERE delivered_by IS NOT NULL").fetchone()[0]


def sessions_of(url: str, pid: int) -> int:
    """The process's PostgreSQL sessions, by the name it gives them (storage.postgres.named)."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                            (f"erp-bridge {socket.gethostname()}:{pid}",)).fetchone()[0]


def stop(workers) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(30) == 0, worker.stderr.read().decode()


def test_four_worker_processes_deliver_20000_events_exactly_once_in_order(tmp_path, pg_url):  # noqa: F811
    assert "lease_s: 3.0" in CONFIG
    with FakeTarget() as target:
        config, queue, events = setup(tmp_path, target, pg_url, 20_000, lease_s=60.0)
        started = time.monotonic()
        workers = [start_worker(config) for _ in range(PROCESSES)]
        wait_for(lambda: depth(queue).get(State.DONE) == len(events), 300, "4 processes to drain 20,000")
        elapsed = time.monotonic() - started
        stop(workers)
        unique, total = target.counts()
        applied = list(target.applied)
    print(f"4 worker processes, 20,000 events on PostgreSQL: {elapsed:.1f} s, {len(events) / elapsed:.0f} events/s")
    assert unique == total == len(events), "an event was sent twice (or not at all)"
    assert sorted(applied) == sorted(e.idempotency_key for e in events)
    assert in_order_per_key(applied, events), "per-key order broken across processes"
    assert processes_that_delivered(pg_url) == PROCESSES
    queue.close()


def test_kill_9_of_one_process_returns_its_leases_to_the_others(tmp_path, pg_url):  # noqa: F811
    with FakeTarget() as target:
        # lease_s 10: the killed process's leases are counted well before they expire
        config, queue, events = setup(tmp_path, target, pg_url, 6_000, lease_s=10.0)
        workers = [start_worker(config) for _ in range(PROCESSES)]
        assert target.wait_until(lambda t: t.counts()[0] >= len(events) // 4, timeout_s=120)
        victim = workers.pop(0)
        assert sessions_of(pg_url, victim.pid) > 0
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL
        # PostgreSQL still runs what the victim sent before it died: an ack in flight commits after
        # the kill. Its leases are final once its sessions are gone (seen: 96 held, not 128)
        wait_for(lambda: sessions_of(pg_url, victim.pid) == 0, 30, "the killed process's sessions to end")
        with psycopg.connect(pg_url) as conn:
            held = conn.execute("SELECT count(*) FROM bridge_entries WHERE state = 'leased'"
                                " AND lease_owner LIKE %s", (f"%:{victim.pid}/%",)).fetchone()[0]
        wait_for(lambda: depth(queue).get(State.DONE) == len(events), 180, "the 3 survivors to drain")
        stop(workers)
        unique, total = target.counts()
        applied = list(target.applied)
        with psycopg.connect(pg_url) as conn:
            expired = conn.execute("SELECT count(*) FROM bridge_attempts WHERE error LIKE %s",
                                   (f"lease expired: worker %:{victim.pid}/%",)).fetchone()[0]
    assert sorted(applied) == sorted(e.idempotency_key for e in events)  # every key, applied once
    assert depth(queue) == {State.PENDING: 0, State.LEASED: 0, State.DONE: len(events), State.DEAD: 0,
                            State.DISCARDED: 0}
    assert expired == held, "each lease the killed process held came back as a counted lost attempt"
    assert total - unique <= held, "only entries the killed process held were sent again"
    assert in_order_per_key(applied, events)
    queue.close()
