"""The one durable poller (sync/channel_poll.ChannelPoller + runtime/polling.PollWindow) on PrestaShop:
the real connector on the webservice double, the real router and SQLite queue, Odoo the system of record."""
from __future__ import annotations

import pytest

from erp_bridge.errors import RejectedError
from erp_bridge.queue.base import RetryPolicy
from erp_bridge.queue.sqlite import SQLiteQueue
from erp_bridge.sync.channel_poll import ChannelPoller
from erp_bridge.sync.router import Router
from erp_bridge.sync.translate import to_internal
from tests.contract import prestashop_docs
from tests.fakes.prestashop import FakePrestaShop, connector_for, example_mapping_set


@pytest.fixture
def world(tmp_path):
    if not prestashop_docs.available():
        pytest.skip("../shared/specs/prestashop is not beside the repo")
    with FakePrestaShop() as shop:
        mappings = example_mapping_set(tmp_path / "m", shop.url, with_odoo=True)
        queue = SQLiteQueue(tmp_path / "q.sqlite3", RetryPolicy(max_attempts=3, base_s=1, jitter=0))
        connector = connector_for(shop, tmp_path / "m", storage_url=f"sqlite:///{tmp_path}/q.sqlite3")
        yield shop, queue, connector, Router(mappings)
        connector.close()
        queue.close()
        assert shop.violations == []


def owed(queue, sku: str = "chair-blue") -> int:
    """What Odoo still has to apply for ``sku`` at WH/Stock (pending decrements, signed)."""
    return int(queue.pending_quantity("odoo", sku, "WH/Stock"))


def test_a_crash_between_queueing_and_committing_queues_nothing_twice(world):
    shop, queue, connector, router = world
    poller = ChannelPoller("prestashop", connector, router, queue, interval_s=60)
    poller.run_once()  # starts the cursor now
    shop.place_order([(12, 0, 3)])
    polled = connector.poll_changes()
    queue.enqueue([e for c in polled.changes for e in router.channel_change(c)])  # ...and the process died here
    assert poller.run_once() == 1  # read again after the restart: the same key, stored once
    assert poller.run_once() == 0
    assert owed(queue) == -3


def test_a_cancel_after_the_sale_nets_to_zero_in_the_queue(world):
    shop, queue, connector, router = world
    poller = ChannelPoller("prestashop", connector, router, queue, interval_s=60)
    poller.run_once()
    order = shop.place_order([(12, 0, 2), (30, 31, 1)])
    assert poller.run_once() == 2 and owed(queue) == -2 and owed(queue, "mug-s") == -1
    shop.set_state(order, 6)
    assert poller.run_once() == 2
    assert poller.run_once() == 0
    assert owed(queue) == 0 and owed(queue, "mug-s") == 0


def test_a_line_of_an_unlisted_combination_is_queued_and_names_its_ids(world):
    shop, queue, connector, router = world
    poller = ChannelPoller("prestashop", connector, router, queue, interval_s=60)
    poller.run_once()
    shop.place_order([(99, 7, 1)])
    change = connector.poll_changes().changes[0]
    with pytest.raises(RejectedError, match="'99:7' is not listed for prestashop"):
        to_internal(router.mappings, change)
    assert poller.run_once() == 1  # queued for the system of record: it dead-letters there, replayable
