"""BigCommerce over real HTTP against the fake store (tests/fakes/bigcommerce.py, validated with
openapi-core against inventory.v3.yml): absolute adjustments per location, 422 bisection, the
rate-limit quota, 5xx/timeouts/lost answers, and order callbacks stored then resolved."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from erp_bridge.domain import Delivered, Figure
from erp_bridge.errors import ConfigError, NotAttempted, RejectedError, RetryableError
from tests.fakes.bigcommerce import CLIENT_SECRET, TOKEN, Fault, connector_for, signed_callback, stocked_store


@pytest.fixture
def store():
    with stocked_store() as s:
        yield s


@pytest.fixture
def build(store, tmp_path):
    made = []

    def make(**options):
        connector = connector_for(store.url, tmp_path / "m", tmp_path / "queue.sqlite3", **options)
        made.append(connector)
        return connector
    yield make
    for connector in made:
        connector.close()


def figure(sku: str, quantity: str, location: str = "WH/Stock") -> Figure:
    return Figure(sku, location, Decimal(quantity), idempotency_key=f"odoo:availability:{sku}@{location}:1")


def bodies(store) -> list[dict]:
    return [json.loads(r["body"]) for r in store.requests if r["method"] == "PUT"]


def test_figures_go_out_as_one_absolute_adjustment_per_location(store, build):
    results = build().push_availability([figure("chair-blue", "3.9"), figure("chair-red", "0", "WH2/Stock"),
                                         figure("007", "2")])
    assert results == [Delivered("set")] * 3
    assert bodies(store) == [{"reason": "erp-bridge availability", "items": [
        {"location_id": 1, "sku": "chair-blue", "quantity": 3}, {"location_id": 2, "sku": "chair-red", "quantity": 0},
        {"location_id": 1, "sku": "BOND-007", "quantity": 2}]}]
    assert (store.stock[("chair-blue", 1)], store.stock[("chair-red", 2)], store.stock[("BOND-007", 1)]) == (3, 0, 2)


def test_read_listed_says_what_bigcommerce_holds_per_location(store, build):
    store.stock[("chair-red", 2)] = 9
    listed = build().read_listed([("chair-blue", "WH/Stock"), ("chair-red", "WH2/Stock"), ("007", "WH/Stock"),
                                  ("ghost", "WH/Stock")])
    assert listed == {("chair-blue", "WH/Stock"): 5, ("chair-red", "WH2/Stock"): 9, ("007", "WH/Stock"): 5}
    gets = [r["path"] for r in store.requests if r["method"] == "GET"]
    assert len(gets) == 2 and all("/v3/inventory/items?" in g and "location_id%3Ain=" in g for g in gets)
    store.faults.append(Fault(503, body={"status": 503, "title": "Service Unavailable"}, path="inventory/items"))
    with pytest.raises(RetryableError):
        build().read_listed([("chair-blue", "WH/Stock")])


def test_one_refused_item_fails_alone_and_the_rest_arrive(store, build):
    results = build().push_availability([figure("chair-blue", "1"), figure("ghost", "4"), figure("chair-red", "2"),
                                         figure("007", "6")])
    assert results[0] == results[2] == results[3] == Delivered("set")
    assert isinstance(results[1], RejectedError) and "Items with identity: [sku ghost] not found" in str(results[1])
    assert (store.stock[("chair-blue", 1)], store.stock[("chair-red", 1)], store.stock[("BOND-007", 1)]) == (1, 2, 6)
    assert len(bodies(store)) < 8  # bisected, not one call per item and not a loop


def test_batches_follow_the_mapping_and_a_spent_quota_waits_for_the_window_reset(build, store):
    store.quota = 1
    results = build(batch_size=2).push_availability([figure("chair-blue", "1"), figure("chair-red", "1"),
                                                     figure("007", "1")])
    assert results[:2] == [Delivered("set")] * 2
    assert isinstance(results[2], RetryableError) and 0 < results[2].after <= 30
    assert "429" in str(results[2]) and "Too many requests" in str(results[2])


@pytest.mark.parametrize("fault, expected", [
    (Fault(503, body={"status": 503, "title": "Service Unavailable"}), "BigCommerce: Service Unavailable"),
    (Fault(200, hang_s=2.0), "timed out"),
], ids=["5xx", "timeout"])
def test_down_or_hanging_is_retryable_and_stops_the_rest(store, build, fault, expected):
    store.faults.append(fault)
    connector = build(batch_size=1, timeout_s=0.5)  # shorter than the hang
    first, second = connector.push_availability([figure("chair-blue", "1"), figure("chair-red", "1")])
    assert isinstance(first, RetryableError) and expected in str(first)
    assert isinstance(second, NotAttempted)
    assert store.stock[("chair-blue", 1)] == 5


def test_a_lost_answer_is_settled_by_sending_the_same_absolute_adjustment_again(store, build):
    store.faults.append(Fault(200, hang_s=2.0, applied=True))
    connector = build(timeout_s=0.5)  # shorter than the hang
    [lost] = connector.push_availability([figure("chair-blue", "4")])
    assert isinstance(lost, RetryableError) and store.stock[("chair-blue", 1)] == 4
    assert connector.push_availability([figure("chair-blue", "4")]) == [Delivered("set")]
    assert store.stock[("chair-blue", 1)] == 4


def test_a_revoked_token_is_a_config_error_that_names_the_secret_not_its_value(store, build):
    store.token = "another"
    [result] = build().push_availability([figure("chair-blue", "1")])
    assert isinstance(result, ConfigError) and "bigcommerce_access_token" in str(result) and TOKEN not in str(result)


def test_an_unmapped_location_is_refused_naming_the_file(store, build):
    [result] = build().push_availability([figure("chair-blue", "1", "WH9/Stock")])
    assert isinstance(result, RejectedError)
    assert "mappings/bigcommerce.yaml" in str(result) and "WH9/Stock" in str(result)
    assert store.requests == []


# --- orders in ---------------------------------------------------------------------------------------
def test_a_callback_is_stored_once_and_resolved_from_the_order_as_it_is_now(store, build):
    connector = build()
    store.add_order(250, 11, (11, "chair-blue", 2), (12, "chair-red", 1))
    headers, body = signed_callback(CLIENT_SECRET, "store/order/created", 250, msg_id="msg_a")
    assert connector.verify_webhook(headers, body, "https://bridge/webhooks/bigcommerce") == []
    assert connector.verify_webhook(headers, body, "https://bridge/webhooks/bigcommerce") == []  # a redelivery
    assert store.requests == []  # nothing fetched while the delivery waits for its answer
    [reference] = connector.inbox.due()
    changes = connector.resolve(reference)
    assert [(c.idempotency_key, c.item, c.location, c.quantity) for c in changes] == [
        ("bigcommerce:250:11", "chair-blue", "1", 2), ("bigcommerce:250:12", "chair-red", "1", 1)]


def test_an_order_with_more_products_than_a_page_is_read_whole(store, build):
    store.add_order(251, 11, *((n, f"sku-{n}", 1) for n in range(1, 301)))
    headers, body = signed_callback(CLIENT_SECRET, "store/order/created", 251)
    connector = build()
    connector.verify_webhook(headers, body, "u")
    assert len(connector.resolve(connector.inbox.due()[0])) == 300
    assert [r["path"].split("?")[1] for r in store.requests if "products" in r["path"]] == [
        "page=1&limit=250", "page=2&limit=250"]


def test_a_status_that_is_no_sale_yet_fetches_no_products(store, build):
    store.add_order(252, 0, (21, "chair-blue", 1))
    headers, body = signed_callback(CLIENT_SECRET, "store/order/created", 252)
    connector = build()
    connector.verify_webhook(headers, body, "u")
    assert connector.resolve(connector.inbox.due()[0]) == []
    assert not any("products" in r["path"] for r in store.requests)


def test_a_missing_order_or_a_down_api_raises_for_the_inbox_to_retry(store, build):
    connector = build()
    headers, body = signed_callback(CLIENT_SECRET, "store/order/created", 404404)
    connector.verify_webhook(headers, body, "u")
    with pytest.raises(RejectedError, match="HTTP 404 from GET /v2/orders/404404: BigCommerce: The requested"):
        connector.resolve(connector.inbox.due()[0])
    store.add_order(404404, 11, (1, "chair-blue", 1))
    store.faults.append(Fault(502, body={"status": 502, "title": "Bad Gateway"}))
    with pytest.raises(RetryableError, match="Bad Gateway"):
        connector.resolve(connector.inbox.due()[0])
