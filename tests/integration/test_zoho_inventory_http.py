"""Zoho Inventory over real HTTP: SQLite queue -> Dispatcher -> zoho_inventory connector -> the
Zoho double. Every move and every channel sale lands exactly once through a lost answer, a 401
token expiry mid-batch, a 429 with Retry-After, 5xx and timeouts; mapping errors and items Zoho
refuses dead-letter with a message that names what to fix and carries no secret. The queue, the
ledger and the double's rate limiter run on one fake clock, so backoff is stepped, not slept."""
from __future__ import annotations

import time
from datetime import UTC
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from erp_bridge.dispatch.dispatcher import Dispatcher
from erp_bridge.dispatch.metrics import DispatchMetrics
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import Decrement
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from tests.fakes.clock import FakeClock
from tests.fakes.sap_b1 import Fault, move
from tests.fakes.zoho_inventory import ITEMS, WH, WH2, FakeZoho, connector_for, stocked, zoho_mapping

TARGET = "zoho_inventory"
POST = ("POST", "/inventory/v1/inventoryadjustments")


@pytest.fixture
def clock():
    return FakeClock(time.time())


@pytest.fixture
def zoho(clock):
    with FakeZoho(clock=clock) as fake:
        yield stocked(fake)


@pytest.fixture
def queue(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=8, base_s=1, jitter=0), clock=clock)
    yield q
    q.close()


def dispatcher_for(zoho, queue, clock, tmp_path, **mapping_options):
    timeout_s = mapping_options.pop("timeout_s", 1.0)
    mapping = zoho_mapping(zoho, timeout_s=timeout_s, **mapping_options)
    connector = connector_for(zoho, tmp_path, mapping=mapping, clock=clock, settle_s=3 * timeout_s)
    metrics = DispatchMetrics(CollectorRegistry())
    return Dispatcher(queue, {TARGET: connector}, metrics=metrics, batch_size=16), connector


@pytest.fixture
def dispatcher(zoho, queue, clock, tmp_path):
    dispatcher, connector = dispatcher_for(zoho, queue, clock, tmp_path)
    yield dispatcher
    connector.close()


def settle(dispatcher, queue, clock, rounds=40):
    for _ in range(rounds):
        if not dispatcher.run_once("w"):
            if not any(s.depth[State.PENDING] or s.depth[State.LEASED] for s in queue.stats()):
                return
            clock.advance(30)
    raise AssertionError("queue did not settle")


def enqueue(queue, *events):
    return [queue.enqueue([entry_for(TARGET, e)])[0] for e in events]


def spread(n):
    """``n`` moves on distinct (item, location) keys: the dispatcher leases them in one batch."""
    keys = [(item, location) for location in ("WH/Stock", "WH2/Stock") for item in ITEMS]
    return [move(str(i), item=keys[i - 1][0], location=keys[i - 1][1]) for i in range(1, n + 1)]


def posted_once(zoho, *keys):
    assert sorted(zoho.references()) == sorted(keys)


def states(queue, entries):
    return [queue.get(e.id).state for e in entries]


def stored_errors(queue, entries):
    """Everything the queue kept about these entries' failures: last errors and every attempt."""
    texts = [queue.get(e.id).last_error or "" for e in entries]
    return texts + [a.error or "" for e in entries for a in queue.attempts(e.id)]


def assert_no_secret(zoho, texts):
    tokens = list(zoho.tokens)
    assert tokens, "the double issued no token: the check would be empty"
    for text in texts:
        for secret in (*zoho.client[1:], *tokens):
            assert secret not in text, text


# --- the mirror: moves -> inventory adjustments ---------------------------------------------------
def test_moves_are_posted_once_as_quantity_adjustments_per_location(zoho, queue, dispatcher, clock):
    entries = enqueue(queue, move("1", quantity=2), move("2", direction="in", item="chair-red", location="WH2/Stock"))
    settle(dispatcher, queue, clock)
    assert states(queue, entries) == [State.DONE] * 2
    posted_once(zoho, "odoo:move:1", "odoo:move:2")
    assert zoho.on_hand(ITEMS["chair-blue"], WH) == 98 and zoho.on_hand(ITEMS["chair-red"], WH2) == 101
    assert {a["adjustment_type"] for a in zoho.adjustments} == {"quantity"}


def test_a_lost_answer_is_settled_by_the_reference_search_not_reposted(zoho, queue, dispatcher, clock):
    zoho.fail_next(Fault(drop="after_commit", path="inventoryadjustments"))
    entries = enqueue(queue, move("1"), move("2", item="chair-red"))
    settle(dispatcher, queue, clock)
    assert states(queue, entries) == [State.DONE] * 2
    posted_once(zoho, "odoo:move:1", "odoo:move:2")
    assert [r.query.get("page") for r in zoho.api_calls("GET", POST[1])] == ["1"]  # one search page
    assert zoho.on_hand(ITEMS["chair-blue"], WH) == 99


def test_a_timed_out_post_that_committed_is_found_after_the_settle_window(zoho, queue, dispatcher, clock):
    zoho.fail_next(Fault(drop="after_commit", hang_s=1.5, path="inventoryadjustments"))
    [entry] = enqueue(queue, move("1"))
    settle(dispatcher, queue, clock)
    assert queue.get(entry.id).state is State.DONE
    posted_once(zoho, "odoo:move:1")
    assert "timed out" in (queue.attempts(entry.id)[0].error or "")


def test_a_timeout_before_zoho_processed_posts_once_after_the_search_finds_nothing(zoho, queue, dispatcher, clock):
    zoho.fail_next(Fault(status=504, hang_s=1.5, path="inventoryadjustments"))
    [entry] = enqueue(queue, move("1"))
    settle(dispatcher, queue, clock)
    assert queue.get(entry.id).state is State.DONE
    posted_once(zoho, "odoo:move:1")
    assert len(zoho.api_calls(*POST)) == 2 and zoho.api_calls("GET", POST[1])  # searched before reposting


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_retries_and_posts_once(zoho, queue, dispatcher, clock, status):
    zoho.fail_next(Fault(status=status, body={"code": 1, "message": "Internal error"}, path="inventoryadjustments"))
    entries = enqueue(queue, *spread(2))
    dispatcher.run_once("w")
    assert [queue.get(e.id).attempts for e in entries] == [1, 0]  # the second was not sent into the outage
    settle(dispatcher, queue, clock)
    assert states(queue, entries) == [State.DONE] * 2
    posted_once(zoho, "odoo:move:1", "odoo:move:2")
    expected = f"HTTP {status} from POST inventoryadjustments: Zoho error 1: Internal error"
    assert expected in queue.attempts(entries[0].id)[0].error


def test_token_expiry_mid_batch_refreshes_once_and_duplicates_nothing(zoho, queue, dispatcher, clock):
    entries = enqueue(queue, *spread(6))
    original = zoho.handle
    calls = []

    def expire_after_two_posts(method, path, headers, raw):
        if method == "POST" and "inventoryadjustments" in path:
            calls.append(path)
            if len(calls) == 3:
                zoho.expire_tokens()
        return original(method, path, headers, raw)

    zoho.handle = expire_after_two_posts
    settle(dispatcher, queue, clock)
    assert states(queue, entries) == [State.DONE] * 6
    posted_once(zoho, *[f"odoo:move:{n}" for n in range(1, 7)])
    assert len(zoho.token_requests()) == 2  # the first token, one refresh after the 401
    assert [r.status for r in zoho.api_calls(*POST)].count(401) == 1
    assert all(queue.get(e.id).attempts == 1 for e in entries)  # the 401 cost no attempt


def test_429_with_retry_after_is_honoured_and_the_rest_of_the_batch_is_not_attempted(zoho, queue, dispatcher, clock):
    zoho.per_minute = 3
    entries = enqueue(queue, *spread(6))
    before = clock()
    dispatcher.run_once("w")
    limited = [r for r in zoho.api_calls(*POST) if r.status == 429]
    assert len(zoho.api_calls(*POST)) == 4 and len(limited) == 1  # nothing sent after the 429
    after = [queue.get(e.id) for e in entries]
    assert [e.state for e in after[:3]] == [State.DONE] * 3
    throttled, unsent = after[3], after[4:]
    assert throttled.attempts == 0 and throttled.last_error.startswith("HTTP 429")  # not an attempt
    assert "Zoho error 44" in throttled.last_error
    assert throttled.available_at.timestamp() >= before + 59  # Retry-After: 60, not the 1 s backoff
    assert all(e.attempts == 0 for e in unsent)  # not attempted: no attempt counted
    settle(dispatcher, queue, clock)
    assert states(queue, entries) == [State.DONE] * 6
    posted_once(zoho, *[f"odoo:move:{n}" for n in range(1, 7)])


def test_429_without_retry_after_falls_back_to_the_backoff(zoho, queue, dispatcher, clock):
    zoho.per_minute, zoho.retry_after = 1, False
    first, second = enqueue(queue, *spread(2))
    before = clock()
    dispatcher.run_once("w")
    throttled = queue.get(second.id)
    assert queue.get(first.id).state is State.DONE and throttled.attempts == 0
    assert throttled.available_at.timestamp() - before == pytest.approx(1, abs=0.5)  # base_s: no header to honour
    clock.advance(61)
    settle(dispatcher, queue, clock)
    posted_once(zoho, "odoo:move:1", "odoo:move:2")


def test_daily_quota_exhausted_waits_out_the_day_and_loses_nothing(zoho, queue, dispatcher, clock):
    """A whole day of 429s (the queue's max_attempts is 8) dead-letters nothing: each refusal
    pauses Zoho's calls for longer, up to the policy's cap, and counts no attempt."""
    zoho.daily = 0
    entries = enqueue(queue, *spread(3))
    start, refusals = clock(), 0
    while clock() - start < 24 * 3600:
        if dispatcher.run_once("w"):
            refusals += 1
        clock.advance(60)
    stored = [queue.get(e.id) for e in entries]
    assert [(e.state, e.attempts) for e in stored] == [(State.PENDING, 0)] * 3
    expected = "Zoho error 45: You have reached the maximum number of API calls for the day"
    assert expected in stored[0].last_error
    refused = [r.status for r in zoho.api_calls(*POST)].count(429)  # (and a 401 when the hour's token expires)
    assert refusals > 100 and refused == refusals  # one refused call per pause, never the whole batch
    zoho.daily = 10_000
    clock.advance(600)
    settle(dispatcher, queue, clock)
    posted_once(zoho, *[f"odoo:move:{n}" for n in range(1, 4)])


def test_zoho_down_then_up_every_move_once(zoho, queue, dispatcher, clock):
    entries = enqueue(queue, *[move(str(n)) for n in range(1, 5)])
    zoho.down()
    for _ in range(3):
        dispatcher.run_once("w")
        clock.advance(30)
    assert set(states(queue, entries)) == {State.PENDING}
    zoho.up()
    settle(dispatcher, queue, clock)
    posted_once(zoho, *[f"odoo:move:{n}" for n in range(1, 5)])


# --- dead letters: what to fix, and no secret -------------------------------------------------
def test_mapping_errors_and_items_zoho_refuses_dead_letter_with_the_reason_and_no_secret(zoho, queue, dispatcher,
                                                                                       clock):
    zoho.items.pop(ITEMS["007"])  # mapped in the file, unknown to this organisation
    good, unmapped, unknown_location, refused = enqueue(
        queue, move("1"), move("2", item="no-such-chair"), move("3", location="WH9/Stock"), move("4", item="007"))
    settle(dispatcher, queue, clock)
    assert queue.get(good.id).state is State.DONE
    dead = {e.id: queue.get(e.id) for e in (unmapped, unknown_location, refused)}
    assert {d.state for d in dead.values()} == {State.DEAD}
    assert "item 'no-such-chair' has no zoho_inventory id" in dead[unmapped.id].last_error
    assert "WH9/Stock" in dead[unknown_location.id].last_error
    assert dead[refused.id].last_error == ("RejectedError: HTTP 400 from POST inventoryadjustments: Zoho error 2006: "
                                           f"Item with ID {ITEMS['007']} does not exist")
    posted_once(zoho, "odoo:move:1")
    assert_no_secret(zoho, stored_errors(queue, [good, unmapped, unknown_location, refused]))


def test_revoked_refresh_token_is_a_config_error_naming_the_secrets_not_their_values(zoho, queue, tmp_path, clock):
    zoho.client = (zoho.client[0], zoho.client[1], "1000.another-refresh-token")
    dispatcher, connector = dispatcher_for(zoho, queue, clock, tmp_path)
    [entry] = enqueue(queue, move("1"))
    zoho.client = (zoho.client[0], zoho.client[1], "1000.revoked")  # the connector holds the old one
    dispatcher.run_once("w")
    connector.close()
    dead = queue.get(entry.id)
    assert dead.state is State.DEAD
    assert "invalid_code" in dead.last_error and "zoho_refresh_token" in dead.last_error
    assert "1000.another-refresh-token" not in dead.last_error and zoho.client[1] not in dead.last_error


# --- system of record: availability per location, channel sales exactly once ------------------------
def sor(zoho, queue, clock, tmp_path):
    return dispatcher_for(zoho, queue, clock, tmp_path, role="system_of_record")


def test_availability_is_read_per_location_from_itemdetails(zoho, tmp_path):
    zoho.stock(ITEMS["chair-blue"], WH, 12, committed=5)
    zoho.stock(ITEMS["chair-blue"], WH2, 3)
    connector = connector_for(zoho, tmp_path, mapping=zoho_mapping(zoho, role="system_of_record"))
    figures = connector.read_availability([("chair-blue", "WH/Stock"), ("chair-blue", "WH2/Stock"),
                                           ("no-such-chair", "WH/Stock")])
    connector.close()
    assert {k: (f.on_hand, f.free, f.reserved) for k, f in figures.items()} == {
        ("chair-blue", "WH/Stock"): (12, 7, 5), ("chair-blue", "WH2/Stock"): (3, 3, 0)}
    [read] = zoho.api_calls("GET", "/inventory/v1/itemdetails")
    assert read.query == {"item_ids": ITEMS["chair-blue"], "organization_id": zoho.organization_id}


def test_a_channel_sale_is_applied_once_through_a_lost_answer_and_a_redelivery(zoho, queue, tmp_path, clock):
    dispatcher, connector = sor(zoho, queue, clock, tmp_path)
    sale = Decrement(channel="shopify", order="1001", line="1", item="chair-blue", location="WH/Stock", quantity=2)
    zoho.fail_next(Fault(drop="after_commit", path="inventoryadjustments"))
    first = enqueue(queue, sale)
    settle(dispatcher, queue, clock)
    again = enqueue(queue, sale)  # the webhook arrived twice
    settle(dispatcher, queue, clock)
    connector.close()
    assert states(queue, first + again) == [State.DONE] * 2
    posted_once(zoho, "shopify:1001:1")
    assert zoho.on_hand(ITEMS["chair-blue"], WH) == 98
    assert zoho.adjustments[0]["reason"] == "Channel sale or return"
    assert zoho.adjustments[0]["line_items"][0]["quantity_adjusted"] == Decimal(-2)


def test_a_lost_answer_for_a_backdated_move_is_found_beyond_a_page_of_newer_adjustments(zoho, queue, dispatcher, clock):
    """The adjustment carries the move's own date, which can be days before the bridge posted it
    (Odoo or Zoho was down): the search window starts from that date, not from the post."""
    from datetime import datetime, timedelta

    three_days_ago = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    zoho.adjustments.extend({"inventory_adjustment_id": str(n), "date": three_days_ago, "reason": "count",
                             "reference_number": f"manual-{n}", "adjustment_type": "quantity", "line_items": []}
                            for n in range(200))  # a whole page, newer than the move, older than the post
    old_move = move("1").model_copy(update={"occurred_at": datetime.now(UTC) - timedelta(days=5)})
    zoho.fail_next(Fault(drop="after_commit", path="inventoryadjustments"))
    [entry] = enqueue(queue, old_move)
    settle(dispatcher, queue, clock)
    assert queue.get(entry.id).state is State.DONE
    assert zoho.references().count("odoo:move:1") == 1
    assert [r.query["page"] for r in zoho.api_calls("GET", POST[1])] == ["1", "2"]


def test_a_throttled_token_endpoint_delays_the_batch_and_loses_nothing(zoho, queue, dispatcher, clock):
    """Zoho Accounts issues at most 10 access tokens per refresh token in 10 minutes, then answers
    400 ``Access Denied``: that is a wait, not wrong credentials, and nothing reached Zoho."""
    zoho.issued = [clock()] * 10
    entries = enqueue(queue, *spread(3))
    dispatcher.run_once("w")
    waiting = [queue.get(e.id) for e in entries]
    assert {e.state for e in waiting} == {State.PENDING}
    assert "the token endpoint asks to wait (Access Denied" in waiting[0].last_error
    assert [e.attempts for e in waiting] == [1, 0, 0] and zoho.api_calls() == []
    clock.advance(601)
    settle(dispatcher, queue, clock)
    posted_once(zoho, "odoo:move:1", "odoo:move:2", "odoo:move:3")
    assert zoho.api_calls("GET") == []  # nothing was sent, so nothing had to be searched for
