"""The history poller (sync/channel_poll.py) and the inbox it relies on (connectors/runtime/inbox.py):
the real Square connector on the fake Square, the real router and queue, on SQLite and on PostgreSQL."""
from __future__ import annotations

import time

import pytest

from erp_bridge.connectors.runtime.inbox import Inbox
from erp_bridge.queue import open_queue
from erp_bridge.queue.base import RetryPolicy
from erp_bridge.sync.channel_poll import ChannelPoller
from erp_bridge.sync.router import Router
from tests.fakes import square_spec
from tests.fakes.square import NOTIFICATION_URL, FakeSquare, connector_for, example_mapping_set
from tests.pg import other_host, storage_url  # noqa: F401 - fixture: SQLite, then PostgreSQL


def test_inbox_records_once_across_instances_and_keeps_cursors(storage_url):  # noqa: F811
    url = storage_url
    first, second = Inbox(url, "square"), Inbox(other_host(url), "square")
    assert first.record("notice", ["e1", "e2", "e1"]) == ["e1", "e2"]
    assert second.record("notice", ["e2", "e3"]) == ["e3"] and second.seen("notice", "e1")
    other = Inbox(url, "other")
    assert not other.seen("notice", "e1")  # one inbox per system
    first.advance("changes", "2026-11-30T10:00:00Z")
    assert second.cursor("changes") == "2026-11-30T10:00:00Z" and second.cursor("other") is None
    clock = [time.time() + 3600]
    later = Inbox(url, "square", clock=lambda: clock[0])
    assert later.forget("notice", 60) == 3
    for inbox in (first, second, other, later):
        inbox.close()


@pytest.fixture
def world(tmp_path, storage_url):  # noqa: F811
    if not square_spec.available():
        pytest.skip("../shared/specs/square/api.json is not beside the repo")
    square_spec.spec()  # parsed before the first request: the client's 0.5 s timeout is not for reading the spec
    with FakeSquare() as square:
        square.stock("chair-blue", 10)
        mappings = example_mapping_set(tmp_path / "m", square.url, with_odoo=True)
        queue = open_queue(storage_url, RetryPolicy(max_attempts=3, base_s=1, jitter=0))
        connector = connector_for(square, tmp_path / "m", storage_url=storage_url)
        yield square, queue, connector, Router(mappings)
        connector.close()
        queue.close()
        assert square.violations == []


def owed(queue) -> int:
    """What the system of record still has to apply for chair-blue (pending decrements, signed)."""
    return int(queue.pending_quantity("odoo", "chair-blue", "WH/Stock"))


def test_a_crash_between_queueing_and_committing_queues_nothing_twice(world):
    square, queue, connector, router = world
    poller = ChannelPoller("square", connector, router, queue, interval_s=60)
    poller.run_once()  # starts the history
    square.sell("chair-blue", 3, "txn-1")
    polled = connector.poll_changes()
    queue.enqueue([e for c in polled.changes for e in router.channel_change(c)])  # ...and the process died here
    assert poller.run_once() == 1  # read again: the same keys
    assert poller.run_once() == 0
    assert owed(queue) == -3


def test_a_notification_wakes_the_poller_at_once(world):
    square, queue, connector, router = world
    poller = ChannelPoller("square", connector, router, queue, interval_s=30)
    poller.start()
    try:
        time.sleep(0.3)
        body = square.sell("chair-blue", 1, "txn-9")
        connector.verify_webhook({"x-square-hmacsha256-signature": square.sign(NOTIFICATION_URL, body)}, body, "")
        deadline = time.time() + 5
        while not owed(queue) and time.time() < deadline:
            time.sleep(0.05)
        assert owed(queue) == -1  # long before the 30 s interval
        assert poller.alive()
    finally:
        poller.stop()


def test_a_sale_of_an_unlisted_variation_is_queued_and_replayable_after_the_table_is_fixed(world, tmp_path):
    from erp_bridge.errors import RejectedError
    from erp_bridge.sync.translate import to_internal
    square, queue, connector, router = world
    poller = ChannelPoller("square", connector, router, queue, interval_s=60)
    poller.run_once()
    square.stock("NEWVARIATION7", 5)
    square.sell("NEWVARIATION7", 1, "txn-5")
    change = connector.poll_changes().changes[0]
    assert change.item == "NEWVARIATION7"
    with pytest.raises(RejectedError, match="'NEWVARIATION7' is not listed for square"):
        to_internal(router.mappings, change)
    assert poller.run_once() == 1 and int(queue.pending_quantity("odoo", "NEWVARIATION7", "L8GQ5K3W1XJ9Z")) == -1
    fixed = example_mapping_set(tmp_path / "fixed", square.url, with_odoo=True, extra_items={"stool": "NEWVARIATION7"})
    assert to_internal(fixed, change).item == "stool"
