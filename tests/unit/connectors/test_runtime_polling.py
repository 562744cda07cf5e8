"""The connector half of the one durable poller (connectors/runtime/polling.py) on a real inbox,
SQLite then PostgreSQL: first pass starts now, overlap, seen ids, a cursor that never moves back, status."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from erp_bridge.connectors.runtime.inbox import Inbox
from erp_bridge.connectors.runtime.polling import PollWindow, parse_time, statuses
from erp_bridge.domain import Decrement
from tests.pg import other_host, storage_url  # noqa: F401 - fixture: SQLite, then PostgreSQL

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return [T0.timestamp()]


@pytest.fixture
def inbox(storage_url, clock):  # noqa: F811
    box = Inbox(storage_url, "amazon", clock=lambda: clock[0])
    yield box
    box.close()


def sale(order: str, line: str) -> Decrement:
    return Decrement(channel="amazon", order=order, line=line, item="chair-blue", location="DE", quantity=Decimal(1))


def test_first_pass_starts_now_then_each_pass_overlaps_the_cursor(inbox, clock):
    window = PollWindow(inbox, "orders", overlap=timedelta(minutes=2), clock=lambda: clock[0])
    assert window.since() == T0 and window.cursor() == T0  # stored: a restart does not start over
    window.commit(window.polled([sale("o1", "1")], latest=T0 + timedelta(minutes=10)))
    assert window.since() == T0 + timedelta(minutes=8)


def test_a_line_read_again_in_the_overlap_or_after_a_crash_is_not_fresh(inbox, clock):
    window = PollWindow(inbox, "orders", clock=lambda: clock[0])
    window.since()
    first = window.polled([sale("o1", "1"), sale("o1", "1"), sale("o1", "2")], latest=T0)
    assert [c.line for c in first.changes] == ["1", "2"]  # a repeat within one pass counts once
    again = window.polled([sale("o1", "1")], latest=T0)  # not committed: the entries were not stored
    assert len(again.changes) == 1
    window.commit(first)
    assert [c.order for c in window.polled([sale("o1", "1"), sale("o2", "1")], latest=T0).changes] == ["o2"]
    restarted = PollWindow(inbox, "orders", clock=lambda: clock[0])
    assert [c.order for c in restarted.polled([sale("o1", "2"), sale("o3", "1")], None).changes] == ["o3"]


def test_the_cursor_never_moves_back_and_other_resources_are_apart(inbox, clock):
    now = lambda: clock[0]  # the test's clock, not the machine's: the first pass starts "now"
    orders, returns = PollWindow(inbox, "orders", clock=now), PollWindow(inbox, "returns", clock=now)
    orders.since()
    orders.commit(orders.polled([], latest=T0 + timedelta(hours=1)))
    orders.commit(orders.polled([], latest=T0 - timedelta(hours=1)))  # an older page read late
    assert orders.cursor() == T0 + timedelta(hours=1)
    assert returns.cursor() is None


def test_status_says_how_far_behind_and_the_last_error_until_a_pass_succeeds(inbox, clock):
    window = PollWindow(inbox, "orders", clock=lambda: clock[0])
    window.since()
    window.commit(window.polled([], latest=T0))
    clock[0] += 90
    window.failed("amazon: 429 QuotaExceeded, retry after 60 s")
    status = window.status()
    assert (status["lag_s"], status["last_error"], parse_time(status["last_success"])) == (
        90.0, "amazon: 429 QuotaExceeded, retry after 60 s", T0)
    other = Inbox(other_host(inbox.storage_url), "-")  # `erp-bridge status` in another process
    assert [(s["system"], s["resource"], s["lag_s"]) for s in statuses(other, clock=lambda: clock[0])] == [
        ("amazon", "orders", 90.0)]
    window.commit(window.polled([], latest=None))
    assert window.status()["last_error"] is None
    other.close()


def test_seen_ids_must_outlive_the_overlap(inbox):
    with pytest.raises(ValueError, match="longer than the overlap"):
        PollWindow(inbox, overlap=timedelta(days=2), keep_seen_s=86400)
