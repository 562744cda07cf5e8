"""SFCC orders through the one durable poller (sync/channel_poll.ChannelPoller + PollWindow): the real
SFCC connector on the fake SFCC, the real router and SQLite queue, Odoo as the system of record."""
from __future__ import annotations

import pytest

from erp_bridge.queue.base import RetryPolicy
from erp_bridge.sync.channel_poll import ChannelPoller
from erp_bridge.sync.router import Router
from tests.fakes import sfcc_spec
from tests.fakes.sfcc import FakeSfcc, connector_for, example_mapping_set

pytestmark = pytest.mark.filterwarnings("ignore:Unsupported scheme type")


@pytest.fixture
def world(tmp_path):
    if not sfcc_spec.available():
        pytest.skip("../shared/specs/sfcc-oci is not beside the repo")
    from erp_bridge.queue.sqlite import SQLiteQueue
    with FakeSfcc() as fake:
        storage = f"sqlite:///{tmp_path}/q.sqlite3"
        mappings = example_mapping_set(tmp_path / "m", fake.url, with_odoo=True)
        queue = SQLiteQueue(tmp_path / "q.sqlite3", RetryPolicy(max_attempts=3, base_s=1, jitter=0))
        connector = connector_for(fake, tmp_path / "m", storage_url=storage, with_odoo=True)
        yield fake, queue, connector, Router(mappings), storage
        connector.close()
        queue.close()
        assert fake.violations == []


def owed(queue, sku: str = "chair-blue") -> int:
    """What the system of record still has to apply for ``sku`` (pending changes, signed)."""
    return int(queue.pending_quantity("odoo", sku, "WH/Stock"))


def test_a_crash_between_queueing_and_committing_queues_nothing_twice(world):
    fake, queue, connector, router, _ = world
    poller = ChannelPoller("sfcc", connector, router, queue, interval_s=60)
    poller.run_once()  # the first pass starts the window now
    fake.place("00000100", {"CHAIR-BLUE-01": 3})
    polled = connector.poll_changes()
    queue.enqueue([e for c in polled.changes for e in router.channel_change(c)])  # ...and the process died here
    assert poller.run_once() == 1  # read again: the same key, already stored
    assert poller.run_once() == 0
    assert owed(queue) == -3


def test_a_restart_resumes_from_the_stored_cursor_and_a_cancellation_restocks_once(world, tmp_path):
    fake, queue, connector, router, storage = world
    ChannelPoller("sfcc", connector, router, queue, interval_s=60).run_once()
    fake.place("00000200", {"CHAIR-BLUE-01": 2, "stool": 1})
    connector.close()  # kill -9: nothing in memory survives, the cursor and seen keys are in the storage
    again = connector_for(fake, tmp_path / "m", storage_url=storage, with_odoo=True)
    poller = ChannelPoller("sfcc", again, router, queue, interval_s=60)
    assert poller.run_once() == 2 and owed(queue) == -2 and owed(queue, "stool") == -1
    fake.set_status("00000200", "cancelled")
    assert poller.run_once() == 2  # the two returns; the sales are known
    assert poller.run_once() == 0
    assert owed(queue) == 0 and owed(queue, "stool") == 0
    again.close()


def test_a_redelivered_order_with_only_its_export_status_changed_queues_nothing(world):
    fake, queue, connector, router, _ = world
    poller = ChannelPoller("sfcc", connector, router, queue, interval_s=60)
    poller.run_once()
    fake.place("00000300", {"CHAIR-BLUE-01": 1})
    assert poller.run_once() == 1
    fake.set_status("00000300", "completed")  # completed after shipping: still the same sale
    assert poller.run_once() == 0 and owed(queue) == -1
