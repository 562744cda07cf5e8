"""The Amazon SP-API connector against the fake Amazon (a real HTTP server that validates every
request against ../shared/specs/amazon/): quantities out, orders polled in, every failure."""
from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest

from erp_bridge.connectors import registry
from erp_bridge.connectors.runtime.polling import parse_time, rfc3339
from erp_bridge.dispatch.ratelimit import TokenBucket
from erp_bridge.domain import Decrement, Delivered, Figure, Increment
from erp_bridge.errors import ConfigError, NotAttempted, RejectedError, RetryableError
from erp_bridge.mapping.loader import load_mappings
from tests.fakes import amazon_spec
from tests.fakes.amazon import (
    MARKETPLACE,
    QUOTA,
    REFRESH_TOKEN,
    SECRETS,
    FakeAmazon,
    Fault,
    connector_for,
    errors,
    example_mapping_set,
)
from tests.pg import pg_url  # noqa: F401 - fixture

pytestmark = pytest.mark.skipif(not amazon_spec.available(), reason="../shared/specs/amazon/ is not beside the repo")
ORDER_A, ORDER_B, ORDER_C = "111-0000001-0000001", "111-0000002-0000002", "111-0000003-0000003"


def figure(sku: str, quantity, key: str = "k") -> Figure:
    return Figure(sku, "WH/Stock", Decimal(str(quantity)), idempotency_key=f"{key}:{sku}")


@pytest.fixture
def amazon():
    with FakeAmazon() as fake:
        fake.list_sku("chair-blue", 3)
        fake.list_sku("chair red/XL", 1)
        yield fake
        assert fake.violations == []  # nothing the connector sent broke Amazon's contract


@pytest.fixture
def connector(amazon, tmp_path):
    built = connector_for(amazon, tmp_path)
    yield built
    built.close()


def started(connector, amazon: FakeAmazon, ago: timedelta = timedelta(hours=1)) -> None:
    """The poller's cursor as if it had started ``ago`` (a real first pass starts at now)."""
    connector._inbox.advance("orders", rfc3339(amazon.now() - ago))


def poll(connector) -> list:
    polled = connector.poll_changes()
    connector.commit_poll(polled)
    return list(polled.changes)


# -- availability out ---------------------------------------------------------------------------

def test_the_merchant_quantity_is_patched_in_whole_units_rounded_down(amazon, connector):
    results = connector.push_availability([figure("chair-blue", "7.9"), figure("chair red/XL", "0.4")])
    assert [type(r) for r in results] == [Delivered, Delivered] and "submission" in results[0].detail
    assert amazon.listings[("chair-blue", MARKETPLACE)]["quantity"] == 7
    assert amazon.listings[("chair red/XL", MARKETPLACE)]["quantity"] == 0
    method, path, query, body = amazon.calls("patchListingsItem")[1]
    assert path.endswith("/chair%20red%2FXL") and query == {"marketplaceIds": [MARKETPLACE]}
    assert body == {"productType": "PRODUCT", "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                                                           "value": [{"fulfillment_channel_code": "DEFAULT",
                                                                      "quantity": 0}]}]}


def test_a_refused_submission_names_the_sku_and_amazons_issue(amazon, connector):
    amazon.refuse("chair-blue", "90000900", "The listing is suppressed: missing required attribute brand")
    results = connector.push_availability([figure("chair-blue", 2), figure("stool", 1), figure("chair red/XL", 4)])
    assert isinstance(results[0], RejectedError)
    assert "SKU chair-blue" in str(results[0]) and "90000900" in str(results[0]) and "brand" in str(results[0])
    assert isinstance(results[1], RejectedError) and "stool" in str(results[1])  # no such listing on Amazon
    assert isinstance(results[2], Delivered) and amazon.listings[("chair red/XL", MARKETPLACE)]["quantity"] == 4


def test_a_location_not_in_the_mapping_is_refused_without_a_call(amazon, connector):
    result = connector.push_availability([Figure("chair-blue", "Elsewhere", Decimal(1))])[0]
    assert isinstance(result, RejectedError) and "Elsewhere" in str(result) and amazon.calls("patchListingsItem") == []


def test_throttled_or_down_stops_the_batch_the_rest_not_attempted(amazon, connector):
    amazon.fail_next(Fault(429, body=QUOTA, path="/listings/"))
    results = connector.push_availability([figure("chair-blue", 2), figure("chair red/XL", 4)])
    assert isinstance(results[0], RetryableError) and "QuotaExceeded" in str(results[0])
    assert isinstance(results[1], NotAttempted) and len(amazon.calls("patchListingsItem")) == 0
    amazon.fail_next(Fault(503, body=errors("ServiceUnavailable", "try later"), path="/listings/"))
    assert isinstance(connector.push_availability([figure("chair-blue", 2)])[0], RetryableError)


def test_an_expired_access_token_is_renewed_once_on_amazons_403(amazon, connector):
    assert isinstance(connector.push_availability([figure("chair-blue", 1)])[0], Delivered)
    amazon.advance(3700)  # an hour later: Amazon refuses the token with 403 Unauthorized
    assert isinstance(connector.push_availability([figure("chair-blue", 2)])[0], Delivered)
    assert amazon.token_requests == 2 and amazon.listings[("chair-blue", MARKETPLACE)]["quantity"] == 2


def test_a_revoked_refresh_token_says_which_secret_and_never_shows_it(amazon, tmp_path):
    mappings = example_mapping_set(tmp_path, amazon.url)
    connector = registry.build(mappings.systems["amazon_sp"], {**SECRETS, "amazon_refresh_token": "Atzr|revoked"},
                               storage_url=f"sqlite:///{tmp_path}/q.sqlite3")
    result = connector.push_availability([figure("chair-blue", 1)])[0]
    assert isinstance(result, ConfigError) and "amazon_refresh_token" in str(result) and "invalid_grant" in str(result)
    assert "Atzr|revoked" not in str(result) and SECRETS["amazon_lwa_client_secret"] not in str(result)
    connector.close()


def test_read_listed_is_what_amazon_holds_for_the_merchant_channel(amazon, connector):
    assert connector.read_listed([("chair-blue", "WH/Stock"), ("stool", "WH/Stock")]) == {
        ("chair-blue", "WH/Stock"): Decimal(3)}


# -- orders in ----------------------------------------------------------------------------------

def test_the_first_pass_starts_at_now_and_reads_nothing_older(amazon, connector):
    amazon.order(ORDER_A, [("chair-blue", 1)])
    assert poll(connector) == [] and amazon.calls("getOrders") == []
    assert parse_time(connector.poll_status()[0]["cursor"]) is not None


def test_an_order_counts_once_through_status_changes_and_overlapping_polls(amazon, connector):
    started(connector, amazon)
    amazon.order(ORDER_A, [("chair-blue", 2), ("chair red/XL", 1)], status="Pending")
    changes = poll(connector)
    assert [(type(c), c.item, c.quantity, c.location) for c in changes] == [
        (Decrement, "chair-blue", 2, MARKETPLACE), (Decrement, "chair red/XL", 1, MARKETPLACE)]
    assert changes[0].idempotency_key.startswith(f"amazon_sp:{ORDER_A}:")
    assert poll(connector) == []  # the overlap reads it again
    amazon.update(ORDER_A, "Unshipped")
    assert poll(connector) == [] and poll(connector) == []
    amazon.update(ORDER_A, "Shipped")
    assert poll(connector) == []
    assert len(amazon.calls("getOrderItems")) == 1  # a counted order's items are not fetched again


def test_a_cancelled_order_gives_back_what_was_counted_and_only_that(amazon, connector):
    started(connector, amazon)
    amazon.order(ORDER_A, [("chair-blue", 3)], status="Unshipped")
    amazon.order(ORDER_B, [("chair-blue", 5)], status="Pending", age_s=1000)
    amazon.update(ORDER_B, "Canceled", age_s=900)  # cancelled before the bridge ever read it
    assert [(type(c), c.order) for c in poll(connector)] == [(Decrement, ORDER_A)]
    amazon.update(ORDER_A, "Canceled")  # Amazon then says QuantityOrdered 0
    back = poll(connector)
    assert [(type(c), c.item, c.quantity, c.reason) for c in back] == [(Increment, "chair-blue", 3, "cancel")]
    assert back[0].idempotency_key.endswith(":cancel")
    assert poll(connector) == []


def test_orders_amazon_fulfils_and_preorders_are_not_the_merchants_stock(amazon, connector):
    started(connector, amazon)
    amazon.order(ORDER_A, [("chair-blue", 1)], channel="AFN")
    amazon.order(ORDER_B, [("chair-blue", 1)], status="PendingAvailability")
    assert poll(connector) == [] and amazon.calls("getOrderItems") == []


def test_a_walk_of_many_pages_moves_the_cursor_only_once_every_page_is_read(amazon, tmp_path):
    connector = connector_for(amazon, tmp_path)
    connector._pages_per_pass = 1
    amazon.page_size = 2
    started(connector, amazon)
    before = connector.poll_status()[0]["cursor"]
    for n in range(5):
        amazon.order(f"111-000000{n}-000000{n}", [("chair-blue", 1)], age_s=600 - n)
    counted = poll(connector) + poll(connector)
    assert len(counted) == 4 and connector.poll_status()[0]["cursor"] == before  # one page is still to read
    first_pass_filters = {k: v for k, v in amazon.calls("getOrders")[0][2].items()}
    assert {k: v for k, v in amazon.calls("getOrders")[1][2].items() if k != "NextToken"} == first_pass_filters
    counted += poll(connector)
    assert len({c.idempotency_key for c in counted}) == 5 and connector.poll_status()[0]["cursor"] != before
    connector.close()


def test_throttled_order_items_keep_what_was_read_and_go_on_next_pass(amazon, connector):
    started(connector, amazon)
    amazon.order(ORDER_A, [("chair-blue", 1)], age_s=700)
    amazon.order(ORDER_B, [("chair-blue", 2)], age_s=650)
    amazon.fail_next(Fault(429, body=QUOTA, path=f"{ORDER_B}/orderItems"))
    polled = connector.poll_changes()
    assert [c.order for c in polled.changes] == [ORDER_A] and "QuotaExceeded" in polled.reports[0]
    connector.commit_poll(polled)
    assert [c.order for c in poll(connector)] == [ORDER_B]
    assert poll(connector) == []


def test_a_failing_first_call_fails_the_pass_and_status_says_why(amazon, connector):
    started(connector, amazon)
    amazon.fail_next(Fault(500, body=errors("InternalFailure", "We encountered an internal error."),
                           path="/orders/v0/orders"))
    with pytest.raises(RetryableError, match="InternalFailure"):
        connector.poll_changes()
    connector.poll_failed("getOrders: HTTP 500")
    assert connector.poll_status()[0]["last_error"] == "getOrders: HTTP 500"


def test_an_expired_next_token_restarts_the_walk(amazon, tmp_path):
    connector = connector_for(amazon, tmp_path)
    connector._pages_per_pass = 1
    amazon.page_size = 1
    started(connector, amazon)
    amazon.order(ORDER_A, [("chair-blue", 1)], age_s=700)
    amazon.order(ORDER_B, [("chair-blue", 1)], age_s=650)
    assert len(poll(connector)) == 1
    amazon._snapshots.clear()  # Amazon forgot the token
    with pytest.raises(RejectedError, match="NextToken"):
        connector.poll_changes()
    assert poll(connector) == []  # walked again from its first page: the first order is not counted twice
    assert [c.order for c in poll(connector)] == [ORDER_B] and poll(connector) == []
    connector.close()


def test_getorders_is_paced_to_its_usage_plan(amazon, connector):
    started(connector, amazon)
    connector._orders_bucket._tokens = 0  # the burst is spent
    amazon.order(ORDER_A, [("chair-blue", 1)])
    polled = connector.poll_changes()
    assert list(polled.changes) == [] and amazon.calls("getOrders") == []  # waits for its quota: no 429
    connector.commit_poll(polled)
    connector._orders_bucket._tokens = 1
    assert len(poll(connector)) == 1


def test_the_rate_limit_header_sets_the_pace(amazon, connector):
    amazon.plans["getOrderItems"] = (2.5, 30)
    started(connector, amazon)
    amazon.order(ORDER_A, [("chair-blue", 1)])
    poll(connector)
    assert connector._items_bucket.rate == 2.5


# -- start-up checks ----------------------------------------------------------------------------

@pytest.mark.parametrize("edits, message", [
    ([("kind: oauth2_refresh_token", "kind: oauth2_client_credentials"),
      ("      refresh_token: amazon_refresh_token", "")], "oauth2_refresh_token"),
    ([("header: x-amz-access-token", "header: Authorization")], "x-amz-access-token"),
    ([("seller_id: A2FAKESELLER01", "seller: A2FAKESELLER01")], "seller_id"),
    ([("[Canceled]", "[Cancelled]")], "Cancelled"),
    ([("restock_statuses: [Canceled]", "restock_statuses: [Shipped]")], "share"),
], ids=["auth-kind", "header", "seller-id", "unknown-status", "overlap"])
def test_start_up_checks_name_what_to_fix(amazon, tmp_path, edits, message):
    example_mapping_set(tmp_path, amazon.url)
    path = tmp_path / "amazon_sp.yaml"
    text = path.read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as raised:
        registry.build(load_mappings(tmp_path).systems["amazon_sp"], SECRETS,
                       storage_url=f"sqlite:///{tmp_path}/q.sqlite3")
    assert REFRESH_TOKEN not in str(raised.value)


# -- the one durable poller ---------------------------------------------------------------------

def test_a_crash_between_queueing_and_committing_queues_nothing_twice(amazon, tmp_path):
    from erp_bridge.queue.base import RetryPolicy
    from erp_bridge.queue.sqlite import SQLiteQueue
    from erp_bridge.sync.channel_poll import ChannelPoller
    from erp_bridge.sync.router import Router

    storage = tmp_path / "q.sqlite3"
    mappings = example_mapping_set(tmp_path / "m", amazon.url, with_sor="http://127.0.0.1:9")
    connector = registry.build(mappings.systems["amazon_sp"], SECRETS, storage_url=f"sqlite:///{storage}")
    queue, router = SQLiteQueue(storage, RetryPolicy(max_attempts=3, base_s=1, jitter=0)), Router(mappings)
    poller = ChannelPoller("amazon_sp", connector, router, queue, interval_s=60)
    started(connector, amazon)
    amazon.order(ORDER_A, [("chair-blue", 3)])
    polled = connector.poll_changes()
    queue.enqueue([e for c in polled.changes for e in router.channel_change(c)])  # ...and the process died here
    assert poller.run_once() == 1  # read again: the same keys, already queued
    assert poller.run_once() == 0
    owed = queue.pending_quantity("sor", "chair-blue", "WH/Stock")
    assert owed == -3  # one decrement of 3, not two
    amazon.update(ORDER_A, "Canceled")
    assert poller.run_once() == 1 and queue.pending_quantity("sor", "chair-blue", "WH/Stock") == 0
    connector.close()
    queue.close()


def test_a_usage_plan_slower_than_a_pass_can_wait_stops_the_pass_part_way(amazon, connector):
    waited: list[float] = []
    connector._sleep = lambda s: (waited.append(s), time.sleep(s))
    started(connector, amazon)
    amazon.order(ORDER_A, [("chair-blue", 1)], age_s=700)
    amazon.order(ORDER_B, [("chair-blue", 2)], age_s=650)
    connector._items_bucket = TokenBucket(0.5, 1)  # one call now, the next in two seconds: waited for
    assert len(poll(connector)) == 2 and 0 < waited[0] <= 2.0
    amazon.order(ORDER_C, [("chair-blue", 1)], age_s=240)
    connector._items_bucket = TokenBucket(0.01, 1)
    connector._items_bucket.reserve()  # spent: the next token is 100 s away
    with pytest.raises(RetryableError, match="usage plan"):
        connector.poll_changes()


def test_a_malformed_order_or_line_is_skipped_not_a_crash(amazon, connector):
    started(connector, amazon)
    amazon.order(ORDER_A, [("chair-blue", 1), ("chair-red", 2)])
    amazon.orders["broken"] = {**amazon.orders[ORDER_A], "AmazonOrderId": ""}
    del amazon.items[ORDER_A][1]["OrderItemId"]
    assert [(c.order, c.item) for c in poll(connector)] == [(ORDER_A, "chair-blue")]


@pytest.mark.postgres
def test_hosts_polling_one_seller_share_its_usage_plan(amazon, tmp_path, pg_url):  # noqa: F811
    """Two processes (own connection pools) on one PostgreSQL storage take getOrders' and
    getOrderItems' tokens from the same buckets, so together they keep Amazon's plan, not twice it."""
    mappings = example_mapping_set(tmp_path, amazon.url)
    built = [registry.build(mappings.systems["amazon_sp"], SECRETS, storage_url=pg_url + f"&application_name=host-{n}")
             for n in "ab"]
    a, b = built
    try:
        assert a._orders_bucket.reserve(20) == 0  # the burst of 20, taken by host a
        assert b._orders_bucket.reserve(1) > 0  # host b waits for the same plan's next token
        assert b._items_bucket.reserve(30) == 0 and a._items_bucket.reserve(1) > 0
    finally:
        for connector in built:
            connector.close()
