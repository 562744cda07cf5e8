"""Crash safety: 10,000 events, a worker process killed with SIGKILL mid-delivery, restarted:
every idempotency key reaches the counting target, none is lost, everything ends done, and the
only redeliveries are entries the killed worker held leased.

The worker builds what ``erp-bridge worker`` wires (open_queue -> http_json connector through the
registry -> Dispatcher); switch WORKER to the console script once runtime.py calls
``Dispatcher.from_settings``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal

import pytest

from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import Decrement
from erp_bridge.queue import open_queue
from erp_bridge.queue.base import RetryPolicy, State
from tests.fakes.http_target import FakeTarget

EVENTS = 10_000
ITEMS = 500  # 20 decrements per (item, location): per-key order is exercised too
WORKERS, BATCH, LEASE_S = 4, 32, 3.0

WORKER = f"""
import signal, sys, threading
from types import SimpleNamespace
from erp_bridge.connectors import registry
from erp_bridge.dispatch.dispatcher import Dispatcher
from erp_bridge.queue import open_queue
from erp_bridge.queue.base import RetryPolicy

queue_url, base_url = sys.argv[1:3]
queue = open_queue(queue_url, RetryPolicy(max_attempts=5, base_s=0.2))
mapping = SimpleNamespace(system="shop", connector="http_json", connection=SimpleNamespace(
    base_url=base_url, timeout_s=5.0, headers={{}}, auth=SimpleNamespace(kind="none")))
connector = registry.build(mapping, {{}})
dispatcher = Dispatcher(queue, {{"shop": connector}}, workers={WORKERS}, batch_size={BATCH},
                        lease_s={LEASE_S}, poll_s=0.05)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
dispatcher.start()
stop.wait()
dispatcher.stop(5.0)
connector.close()
queue.close()
"""


def start_worker(queue_url: str, target_url: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, queue_url, target_url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def depth(queue) -> dict[State, int]:
    stats = queue.stats()
    return stats[0].depth if stats else {}


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def sales() -> list[Decrement]:
    return [Decrement(channel="web", order=f"o{n}", line="1", item=f"SKU-{n % ITEMS}", location="WH",
                      quantity=Decimal(1)) for n in range(EVENTS)]


@pytest.mark.slow
def test_kill_9_mid_delivery_loses_nothing(tmp_path):
    queue_url = f"sqlite:///{tmp_path}/queue.db"
    queue = open_queue(queue_url, RetryPolicy())
    events = sales()
    queue.enqueue([entry_for("shop", e) for e in events])
    with FakeTarget() as target:
        worker = start_worker(queue_url, target.url)
        assert target.wait_until(lambda t: t.counts()[0] >= EVENTS // 4, timeout_s=60)
        assert worker.poll() is None, worker.stderr.read().decode()
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(10) == -signal.SIGKILL
        delivered_at_kill = target.counts()[0]
        leased_at_kill = depth(queue).get(State.LEASED, 0)

        worker = start_worker(queue_url, target.url)
        wait_for(lambda: depth(queue).get(State.DONE) == EVENTS, 120, "the restarted worker to drain")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.stderr.read().decode()
        unique, total = target.counts()
        applied = list(target.applied)

    assert delivered_at_kill < EVENTS, "the kill did not land mid-delivery"
    assert sorted(applied) == sorted(e.idempotency_key for e in events)  # every key, each applied once
    assert depth(queue) == {State.PENDING: 0, State.LEASED: 0, State.DONE: EVENTS, State.DEAD: 0}
    assert unique == EVENTS and total - unique <= min(leased_at_kill, WORKERS * BATCH)
    by_item = defaultdict(list)
    for key in applied:
        by_item[events[int(key.split(":")[1][1:])].item].append(int(key.split(":")[1][1:]))
    assert all(orders == sorted(orders) for orders in by_item.values()), "per-key order broken"
    queue.close()
