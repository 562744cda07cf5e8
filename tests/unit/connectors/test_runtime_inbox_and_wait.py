"""The runtime pieces this work added: the webhook inbox (connectors/runtime/inbox.py) and a
system's own wait header for retries (classify.VendorWait)."""
from __future__ import annotations

import requests

from erp_bridge.connectors.bigcommerce.connector import reset_wait
from erp_bridge.connectors.runtime.classify import Redactor, classify_response
from erp_bridge.connectors.runtime.inbox import KEEP_DONE_S, Inbox
from erp_bridge.errors import RetryableError
from tests.fakes.clock import FakeClock
from tests.pg import storage_url  # noqa: F401 - fixture: SQLite, then PostgreSQL


def response(status: int, **headers: str) -> requests.Response:
    answer = requests.Response()
    answer.status_code, answer._content = status, b"{}"
    answer.headers.update(headers)
    return answer


def test_retry_after_wins_and_a_vendor_wait_fills_in_when_it_is_absent():
    classify = lambda r: classify_response(r, "PUT x", {}, Redactor(), wait=reset_wait)
    limited = classify(response(429, **{"X-Rate-Limit-Time-Reset-Ms": "1500"}))
    both = classify(response(429, **{"Retry-After": "7", "X-Rate-Limit-Time-Reset-Ms": "1500"}))
    down = classify(response(503, **{"X-Rate-Limit-Time-Reset-Ms": "29000"}))
    assert isinstance(limited, RetryableError) and limited.after == 1.5
    assert isinstance(both, RetryableError) and both.after == 7
    assert isinstance(down, RetryableError) and down.after is None  # not the quota: the dispatcher's backoff


def test_the_inbox_keeps_a_reference_once_until_done_and_retries_with_the_reason(storage_url):  # noqa: F811
    clock = FakeClock(1000.0)
    url = storage_url
    inbox = Inbox(url, "bigcommerce", clock=clock)
    assert inbox.add("msg_1", {"order_id": 250}) is True
    assert inbox.add("msg_1", {"order_id": 250}) is False
    inbox.retry("msg_1", "HTTP 503", after_s=30)
    assert inbox.due() == [] and inbox.pending() == [("msg_1", 1, "HTTP 503")]
    clock.advance(30)
    [due] = inbox.due()
    assert (due.ref, due.payload, due.attempts) == ("msg_1", {"order_id": 250}, 1)
    inbox.close()
    reopened = Inbox(url, "bigcommerce", clock=clock)  # a restart keeps it
    assert [r.ref for r in reopened.due()] == ["msg_1"]
    reopened.done("msg_1")
    assert reopened.due() == [] and reopened.pending() == []
    assert reopened.add("msg_1", {"order_id": 250}) is False  # a late redelivery is still a duplicate
    clock.advance(KEEP_DONE_S + 1)
    reopened.add("msg_2", {"order_id": 251})
    reopened.done("msg_2")  # forgets msg_1, done long ago
    assert reopened.add("msg_1", {"order_id": 250}) is True
    reopened.close()
