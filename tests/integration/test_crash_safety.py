"""Crash safety: 10,000 events, the real `erp-bridge worker` process killed with SIGKILL
mid-delivery, restarted: every idempotency key reaches the counting target, none is lost,
everything ends done, and the only redeliveries are entries the killed worker held leased.
On both storage engines: the SQLite file and PostgreSQL (skipped, with the reason, without one).
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from erp_bridge.domain import Decrement
from erp_bridge.mapping.loader import load_mappings
from erp_bridge.queue import open_queue
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.sync.router import Router
from tests.fakes.http_target import FakeTarget
from tests.pg import fresh_schema

EVENTS = 10_000
ITEMS = 500  # 20 decrements per (item, location): per-key order is exercised too
WORKERS, BATCH, LEASE_S = 4, 32, 3.0
ERP_BRIDGE = str(Path(sys.executable).with_name("erp-bridge"))

CONFIG = f"""
data_dir: data
mappings_dir: mappings
queue: {{lease_s: {LEASE_S}, batch_size: {BATCH}}}
workers: {{count: {WORKERS}, poll_interval_s: 0.05, shutdown_deadline_s: 5}}
retry: {{max_attempts: 5, base_s: 0.2}}
"""
MAPPING = """
version: 1
system: {system}
connector: http_json
role: {role}
connection:
  base_url: {url}
  auth: {{kind: none}}
  timeout_s: 5
locations:
  map:
    - {{internal: WH, code: WH}}
{extra}"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage(request, tmp_path):
    """The queue URL of one engine (the SQLite file is the default the config leaves unset)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/data/queue.sqlite3"
    else:
        yield from fresh_schema()


def configure(tmp_path: Path, target_url: str, queue_url: str | None = None) -> Path:
    """A config dir as an operator would write it: the channel 'web' sells what 'shop' holds."""
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "shop.yaml").write_text(MAPPING.format(system="shop", role="system_of_record", url=target_url, extra=""))
    (tmp_path / "mappings" / "web.yaml").write_text(MAPPING.format(system="web", role="channel", url=target_url,
                                                                        extra="quantity_policy: {basis: free}\n"))
    config = CONFIG
    if queue_url and not queue_url.startswith("sqlite"):  # SQLite: the default file in data_dir
        config = config.replace("queue: {", f"queue: {{url: '{queue_url}', ")
    (tmp_path / "bridge.yaml").write_text(config)
    return tmp_path / "bridge.yaml"


def start_worker(config: Path) -> subprocess.Popen:
    return subprocess.Popen([ERP_BRIDGE, "--config", str(config), "worker"],
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
def test_kill_9_mid_delivery_loses_nothing(tmp_path, storage):
    with FakeTarget() as target:
        config = configure(tmp_path, target.url, storage)
        (tmp_path / "data").mkdir()
        queue = open_queue(storage, RetryPolicy())
        router = Router(load_mappings(tmp_path / "mappings"))
        events = sales()
        # each sale's entry for the system of record (its availability fan-out is not under test)
        queue.enqueue([router.channel_change(sale)[0] for sale in events])
        worker = start_worker(config)
        assert target.wait_until(lambda t: t.counts()[0] >= EVENTS // 4, timeout_s=60)
        assert worker.poll() is None, worker.stderr.read().decode()
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(10) == -signal.SIGKILL
        delivered_at_kill = target.counts()[0]
        leased_at_kill = depth(queue).get(State.LEASED, 0)

        worker = start_worker(config)
        wait_for(lambda: depth(queue).get(State.DONE) == EVENTS, 120, "the restarted worker to drain")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.stderr.read().decode()
        unique, total = target.counts()
        applied = list(target.applied)

    assert delivered_at_kill < EVENTS, "the kill did not land mid-delivery"
    assert sorted(applied) == sorted(e.idempotency_key for e in events)  # every key, each applied once
    assert depth(queue) == {State.PENDING: 0, State.LEASED: 0, State.DONE: EVENTS, State.DEAD: 0,
                            State.DISCARDED: 0}
    assert unique == EVENTS and total - unique <= min(leased_at_kill, WORKERS * BATCH)
    by_item = defaultdict(list)
    for key in applied:
        by_item[events[int(key.split(":")[1][1:])].item].append(int(key.split(":")[1][1:]))
    assert all(orders == sorted(orders) for orders in by_item.values()), "per-key order broken"
    queue.close()
