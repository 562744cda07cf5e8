"""Magento over real HTTP with the bridge's real queue, router, poller and dispatcher.

1. Orders in: the one durable poller (sync/channel_poll.ChannelPoller) over the Magento connector.
   A crash between storing the entries and committing the poll (in process, and a real ``kill -9``
   of a poller process at that point) re-reads the same orders: nothing is queued twice, nothing lost.
2. Availability out: the dispatcher pushing source items through Magento throttling (429), in
   maintenance (503), hanging (timeout) and losing an answer: every figure ends set; an item
   Magento refuses dead-letters with Magento's message and no secret, and the others go through.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from erp_bridge.connectors.magento import connector as magento_connector
from erp_bridge.dispatch.dispatcher import Dispatcher
from erp_bridge.dispatch.metrics import DispatchMetrics
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import AvailabilityChanged, Figure
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from erp_bridge.sync.channel_poll import ChannelPoller
from erp_bridge.sync.router import Router
from tests.fakes import magento_spec
from tests.fakes.clock import FakeClock
from tests.fakes.http_server import Fault
from tests.fakes.magento import MAINTENANCE, TOO_MANY, FakeMagento, connector_for, example_mapping_set

pytestmark = pytest.mark.skipif(not magento_spec.available(),
                                reason="../shared/specs/magento2/admin-schema-2.4.9.yaml is not beside the repo")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def magento():
    with FakeMagento() as fake:
        for sku in ("chair-blue", "chair-red", "desk"):
            fake.product(sku, 5)
        yield fake
        assert fake.violations == []


@pytest.fixture
def world(magento, tmp_path):
    mappings = example_mapping_set(tmp_path / "m", magento.url, with_odoo=True)
    queue = SQLiteQueue(tmp_path / "q.sqlite3", RetryPolicy(max_attempts=3, base_s=1, jitter=0))
    connector = connector_for(magento, tmp_path / "m", storage_url=f"sqlite:///{tmp_path}/q.sqlite3")
    yield queue, connector, Router(mappings)
    connector.close()
    queue.close()


def owed(queue, sku: str = "desk") -> int:
    """What the system of record (Odoo) still has to apply for ``sku`` (pending changes, signed)."""
    return int(queue.pending_quantity("odoo", sku, "WH/Stock"))


def test_a_crash_between_queueing_and_committing_queues_nothing_twice(magento, world):
    queue, connector, router = world
    poller = ChannelPoller("magento", connector, router, queue, interval_s=60)
    poller.run_once()  # starts the window
    order = magento.order(("desk", 3), ("chair-red", 1))
    polled = connector.poll_changes()
    queue.enqueue([e for c in polled.changes for e in router.channel_change(c)])  # ...and the process died here
    assert poller.run_once() == 2  # read again: the same keys, stored once
    assert poller.run_once() == 0
    assert owed(queue) == -3 and owed(queue, "chair-red") == -1
    magento.cancel(order)
    assert poller.run_once() == 2
    assert owed(queue) == 0 and owed(queue, "chair-red") == 0  # the cancel nets the sale, once


CHILD = """
import os, signal, sys
sys.path.insert(0, {repo!r})
from erp_bridge.queue.base import RetryPolicy
from erp_bridge.queue.sqlite import SQLiteQueue
from erp_bridge.sync.channel_poll import ChannelPoller
from erp_bridge.sync.router import Router
from erp_bridge.connectors import registry
from erp_bridge.mapping.loader import load_mappings

mappings = load_mappings({mappings!r})
queue = SQLiteQueue({queue!r}, RetryPolicy(max_attempts=3, base_s=1, jitter=0))
connector = registry.build(mappings.systems["magento"], {{"magento_token": {token!r}}}, mappings.lookups,
                           storage_url="sqlite:///" + {queue!r})
connector.commit_poll = lambda polled: os.kill(os.getpid(), signal.SIGKILL)  # after enqueue, before commit
ChannelPoller("magento", connector, Router(mappings), queue, interval_s=60).run_once()
"""


def test_kill_9_between_queueing_and_committing_loses_nothing_and_doubles_nothing(magento, world, tmp_path):
    queue, connector, router = world
    poller = ChannelPoller("magento", connector, router, queue, interval_s=60)
    poller.run_once()  # starts the window
    magento.order(("desk", 2))
    script = CHILD.format(repo=str(REPO), mappings=str(tmp_path / "m"), queue=str(tmp_path / "q.sqlite3"),
                          token=magento.token)
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, timeout=120,
                           capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert owed(queue) == -2  # the killed poller stored the sale before it died
    magento.order(("desk", 1))
    assert poller.run_once() == 2  # the uncommitted order again (its key exists) and the new one
    assert owed(queue) == -3


# --- the dispatcher pushing source items ---------------------------------------------------------

class Availability:
    """Injected figures: what the system of record would give now, set by the test."""

    def __init__(self, **free: int):
        self.free = {sku: Decimal(q) for sku, q in free.items()}

    def __call__(self, target, connector, entries):
        return connector.push_availability(
            [Figure(e.item, e.location, self.free[e.item], idempotency_key=e.idempotency_key) for e in entries])


def dispatcher_for(magento, tmp_path, clock=None, **free):
    queue = SQLiteQueue(tmp_path / "d.db", RetryPolicy(max_attempts=5, base_s=1, jitter=0), clock=clock or time.time)
    connector = connector_for(magento, tmp_path / "dm")
    dispatcher = Dispatcher(queue, {"magento": connector}, pusher=Availability(**free),
                            metrics=DispatchMetrics(CollectorRegistry()))
    markers = [AvailabilityChanged(system="sor", item=sku, location="WH/Stock", sequence=1) for sku in free]
    return queue, connector, dispatcher, queue.enqueue([entry_for("magento", m) for m in markers])


@pytest.mark.parametrize("fault", [
    Fault(TOO_MANY.status, {**TOO_MANY.headers, "Retry-After": "1"}, TOO_MANY.body, path="source-items"),
    Fault(MAINTENANCE.status, MAINTENANCE.headers, MAINTENANCE.body, path="source-items"),
    Fault(hang_s=2.0, path="source-items"),
    Fault(drop="after_commit", path="source-items"),
], ids=["429", "503-maintenance", "timeout", "lost-answer"])
def test_the_dispatcher_gets_every_figure_through(magento, tmp_path, fault):
    clock = FakeClock(time.time())
    queue, connector, dispatcher, entries = dispatcher_for(magento, tmp_path, clock, **{"chair-blue": 6, "desk": 0})
    magento.fail_next(fault)
    dispatcher.run_once("w")
    for _ in range(5):
        clock.advance(60)
        dispatcher.run_once("w")
    assert [queue.get(e.id).state for e in entries] == [State.DONE, State.DONE]
    assert magento.source_items[("chair-blue", "default")]["quantity"] == 6
    assert magento.source_items[("desk", "default")]["status"] == 0
    connector.close()
    queue.close()


def test_an_item_magento_refuses_dead_letters_with_its_reason_and_the_rest_goes_through(magento, tmp_path):
    queue, connector, dispatcher, entries = dispatcher_for(magento, tmp_path, **{"chair-blue": 6, "ghost": 1,
                                                                                 "chair-red": 3})
    dispatcher.run_once("w")
    blue, ghost, red = (queue.get(e.id) for e in entries)
    assert (blue.state, ghost.state, red.state) == (State.DONE, State.DEAD, State.DONE)
    assert "SKU ghost at source default" in ghost.last_error and "were not found: ghost" in ghost.last_error
    assert magento.token not in ghost.last_error
    assert magento.source_items[("chair-red", "default")]["quantity"] == 3
    connector.close()
    queue.close()


def test_a_backlog_is_read_at_once_and_exactly_once_by_the_running_poller(magento, world, monkeypatch):
    monkeypatch.setattr(magento_connector, "PAGE_SIZE", 10)
    monkeypatch.setattr(magento_connector, "MAX_PAGES", 2)  # 20 orders a pass: 120 need six passes
    queue, connector, router = world
    poller = ChannelPoller("magento", connector, router, queue, interval_s=30)
    poller.run_once()
    for _ in range(120):
        magento.order(("desk", 1))
    poller.start()
    try:
        deadline = time.time() + 20  # far less than the 30 s interval: each bounded pass wakes the next
        while owed(queue) != -120 and time.time() < deadline:
            time.sleep(0.1)
        assert owed(queue) == -120 and poller.alive()
    finally:
        poller.stop()


# --- the whole bridge ----------------------------------------------------------------------------

SOR = ("version: 1\nsystem: sor\nconnector: http_json\nrole: system_of_record\n"
       "connection: {{base_url: '{url}', auth: {{kind: none}}, timeout_s: 1}}\n"
       "locations: {{map: [{{internal: WH/Stock, code: WH}}, {{internal: WH2/Stock, code: WH2}}]}}\n")


def test_the_running_bridge_polls_an_order_and_decrements_the_system_of_record_once(magento, tmp_path, monkeypatch):
    """build_runtime picks the connector's POLL_CHANGES up: no wiring of its own (runtime._pollers)."""
    from erp_bridge.runtime import build_runtime
    from erp_bridge.settings import load_settings
    from tests.fakes.http_target import FakeTarget

    for key in ("ERP_BRIDGE_ADMIN_TOKEN", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ERP_BRIDGE_SECRETS__MAGENTO_TOKEN", magento.token)
    with FakeTarget() as sor:
        example_mapping_set(tmp_path / "mappings", magento.url)
        (tmp_path / "mappings" / "sor.yaml").write_text(SOR.format(url=sor.url))
        config = tmp_path / "bridge.yaml"
        config.write_text("data_dir: data\nmappings_dir: mappings\n"
                          "workers: {count: 1, poll_interval_s: 0.05, outbox_poll_s: 0.2, channel_poll_s: 0.2}\n")
        bridge = build_runtime(load_settings(config))
        assert "magento" in bridge.pollers
        bridge.start()
        try:
            deadline = time.time() + 10
            while not magento.received and time.time() < deadline:
                time.sleep(0.05)  # the first pass starts the window
            time.sleep(0.3)
            order = magento.order(("desk", 2))
            assert sor.wait_until(lambda t: len(decrements(t)) == 1, 15)
            time.sleep(1.0)  # several more passes re-read the order (the overlap): nothing more
            assert decrements(sor) == [f"magento:{order['entity_id']}:{order['items'][0]['item_id']}"]
            body = next(r.body for r in sor.received if r.path == "stock-changes")
            assert (body["item"], body["location"], body["quantity"]) == ("desk", "WH/Stock", "2")
        finally:
            bridge.stop()


def decrements(sor) -> list[str]:
    return [r.key for r in sor.received if r.path == "stock-changes" and r.status == 200]
