"""Lightspeed R-Series and Cin7 Core on the one durable poller (sync/channel_poll.ChannelPoller):
the real connectors on their doubles, the real router and SQLite queue. A crash between queueing
a pass's entries and committing the cursor re-reads the same sales and queues nothing twice; a
restart (a new connector on the same storage) carries on from the stored cursor."""
from __future__ import annotations

import time

import pytest

from erp_bridge.queue.base import RetryPolicy
from erp_bridge.queue.sqlite import SQLiteQueue
from erp_bridge.sync.channel_poll import ChannelPoller
from erp_bridge.sync.router import Router
from tests.fakes import cin7_blueprint, cin7_core, lightspeed_r


def owed(queue, sku: str = "chair-blue") -> int:
    """What the system of record still has to apply (pending changes, signed)."""
    return int(queue.pending_quantity("odoo", sku, "WH/Stock"))


@pytest.fixture
def queue(tmp_path):
    q = SQLiteQueue(tmp_path / "q.sqlite3", RetryPolicy(max_attempts=3, base_s=1, jitter=0))
    yield q
    q.close()


def crash_then_recover(connector, router, queue, channel: str) -> ChannelPoller:
    poller = ChannelPoller(channel, connector, router, queue, interval_s=60)
    polled = connector.poll_changes()
    queue.enqueue([e for c in polled.changes for e in router.channel_change(c)])  # ...and the process died here
    return poller


def test_lightspeed_a_crash_between_queueing_and_committing_queues_nothing_twice(tmp_path, queue):
    storage = f"sqlite:///{tmp_path}/q.sqlite3"
    with lightspeed_r.FakeLightspeedR() as fake:
        fake.ls.stock("7", "1", 10)
        router = Router(lightspeed_r.example_mapping_set(tmp_path / "m", fake, with_odoo=True))
        connector = lightspeed_r.connector_for(fake, tmp_path / "m", storage_url=storage)
        ChannelPoller("lightspeed_r", connector, router, queue, interval_s=60).run_once()  # starts the history
        time.sleep(1.1)
        fake.ls.sell([("7", 3)])
        poller = crash_then_recover(connector, router, queue, "lightspeed_r")
        assert poller.run_once() == 1  # read again: the same keys
        assert poller.run_once() == 0
        connector.close()
        restarted = lightspeed_r.connector_for(fake, tmp_path / "m", storage_url=storage)
        time.sleep(1.1)
        fake.ls.sell([("7", -1)])  # a return at the till
        assert ChannelPoller("lightspeed_r", restarted, router, queue, interval_s=60).run_once() == 1
        restarted.close()
    assert owed(queue) == -3 + 1


@pytest.mark.skipif(not cin7_blueprint.available(), reason="../shared/specs/cin7-core is not beside the repo")
def test_cin7_a_crash_between_queueing_and_committing_queues_nothing_twice(tmp_path, queue):
    storage = f"sqlite:///{tmp_path}/q.sqlite3"
    with cin7_core.FakeCin7() as fake:
        router = Router(cin7_core.example_mapping_set(tmp_path / "m", fake, with_odoo=True))
        connector = cin7_core.connector_for(fake, tmp_path / "m", storage_url=storage)
        ChannelPoller("cin7_core", connector, router, queue, interval_s=60).run_once()
        sale = fake.cin7.sell([("CHR-BLU", 2)])
        poller = crash_then_recover(connector, router, queue, "cin7_core")
        assert poller.run_once() == 1
        assert poller.run_once() == 0
        connector.close()
        fake.cin7.void(sale)
        restarted = cin7_core.connector_for(fake, tmp_path / "m", storage_url=storage)
        assert ChannelPoller("cin7_core", restarted, router, queue, interval_s=60).run_once() == 1  # the restock
        assert ChannelPoller("cin7_core", restarted, router, queue, interval_s=60).run_once() == 0
        restarted.close()
    assert owed(queue) == 0
