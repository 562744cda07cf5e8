"""What the Amazon connector sends, checked against Amazon's own Swagger 2.0 models
(../shared/specs/amazon/listingsItems_2021-08-01.json and ordersV0.json).

Every request of a run of scenarios (quantities out, a refused SKU, a listing read, orders polled
over several pages with their items, a cancellation) is matched to its operation and validated:
path and query parameters as the spec declares them, the body with jsonschema against the
operation's body schema, and the rules getOrders states in prose (tests/fakes/amazon_spec.py).
The fake's own answers are validated against the response schemas, so the double cannot drift
from Amazon. The validator is shown to reject what Amazon rejects, so these tests can fail.
"""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from erp_bridge.connectors.runtime.polling import rfc3339
from erp_bridge.domain import Figure
from tests.fakes import amazon_spec
from tests.fakes.amazon import SELLER, FakeAmazon, connector_for

pytestmark = pytest.mark.skipif(not amazon_spec.available(), reason="../shared/specs/amazon/ is not beside the repo")
OPERATIONS = {"patchListingsItem", "getListingsItem", "getOrders", "getOrderItems"}
PATCH = {"productType": "PRODUCT", "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                                                "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 3}]}]}


@pytest.fixture(scope="module")
def sent(tmp_path_factory):
    directory = tmp_path_factory.mktemp("amazon-contract")
    with FakeAmazon() as amazon:
        amazon.list_sku("chair-blue", 1)
        amazon.list_sku("chair red/XL #2", 1)
        amazon.page_size, amazon.item_page_size = 2, 1
        connector = connector_for(amazon, directory)
        connector.push_availability([Figure(sku, "WH/Stock", Decimal("2.5"), idempotency_key=sku)
                                     for sku in ("chair-blue", "chair red/XL #2", "ghost")])
        connector.read_listed([("chair-blue", "WH/Stock")])
        connector._inbox.advance("orders", rfc3339(amazon.now() - timedelta(hours=1)))
        for n in range(3):
            amazon.order(f"111-000000{n}-000000{n}", [("chair-blue", 1), ("chair red/XL #2", 2)])
        for _ in range(3):
            connector.commit_poll(connector.poll_changes())
        amazon.update("111-0000000-0000000", "Canceled")
        for _ in range(2):
            connector.commit_poll(connector.poll_changes())
        connector.close()
        return list(amazon.received), list(amazon.violations), list(amazon.answered)


def operation_id(method: str, path: str) -> str:
    match = amazon_spec.operation(method, path)
    return match[2]["operationId"] if match else "?"


def test_every_request_conforms_to_amazons_models(sent):
    received, violations, _ = sent
    assert violations == []
    for method, path, query, body in received:
        assert amazon_spec.violations(method, path, query, body) == [], (method, path, query, body)
    assert {operation_id(m, p) for m, p, _, _ in received} == OPERATIONS


def test_the_scenarios_sent_what_they_claim(sent):
    received, _, _ = sent
    patches = [(p, q, b) for m, p, q, b in received if m == "PATCH"]
    assert [p.rsplit("/", 1)[1] for p, _, _ in patches] == ["chair-blue", "chair%20red%2FXL%20%232", "ghost"]
    assert all(p.startswith(f"/listings/2021-08-01/items/{SELLER}/") for p, _, _ in patches)
    assert patches[0][2]["patches"][0]["value"] == [{"fulfillment_channel_code": "DEFAULT", "quantity": 2}]
    orders = [q for m, p, q, _ in received if operation_id(m, p) == "getOrders"]
    assert any("NextToken" in q for q in orders)  # paged
    assert all({"MarketplaceIds", "LastUpdatedAfter", "LastUpdatedBefore"} <= set(q) for q in orders)
    items = [q for m, p, q, _ in received if operation_id(m, p) == "getOrderItems"]
    assert any("NextToken" in q for q in items)


def test_the_fakes_answers_conform_to_the_response_schemas(sent):
    _, _, answered = sent
    assert {operation_id(m, p) for m, p, _, _ in answered} == OPERATIONS
    for method, path, status, body in answered:
        assert amazon_spec.response_violations(method, path, status, body) == [], (path, status, body)


@pytest.mark.parametrize("method, path, query, body, expected", [
    ("PATCH", f"/listings/2021-08-01/items/{SELLER}/sku", {}, PATCH, "marketplaceIds: required"),
    ("PATCH", f"/listings/2021-08-01/items/{SELLER}/sku", {"marketplaceIds": ["X"]},
     {"patches": PATCH["patches"]}, "'productType' is a required property"),
    ("PATCH", f"/listings/2021-08-01/items/{SELLER}/sku", {"marketplaceIds": ["X"]},
     {"productType": "P", "patches": [{"op": "set", "path": "/attributes/x", "value": []}]}, "'set' is not one of"),
    ("PATCH", f"/listings/2021-08-01/items/{SELLER}/sku", {"marketplaceIds": ["X"]},
     {"productType": "P", "patches": [{"op": "replace", "path": "/attributes/x", "value": {"quantity": 1}}]},
     "is not of type 'array'"),
    ("GET", "/orders/v0/orders", {"MarketplaceIds": ["X"]}, None, "CreatedAfter or LastUpdatedAfter is required"),
    ("GET", "/orders/v0/orders", {"MarketplaceIds": ["X"], "LastUpdatedAfter": ["yesterday"]}, None,
     "not an ISO 8601"),
    ("GET", "/orders/v0/orders", {"MarketplaceIds": [",".join(["X"] * 51)], "LastUpdatedAfter": ["2026-01-01T00:00:00Z"]},
     None, "at most 50"),
    ("GET", "/orders/v0/orders", {"MarketplaceIds": ["X"], "LastUpdatedAfter": ["2026-01-01T00:00:00Z"],
                                  "MaxResultsPerPage": ["500"]}, None, "outside 1..100"),
    ("GET", "/orders/v0/orders", {"MarketplaceIds": ["X"], "LastUpdatedAfter": ["2026-01-01T00:00:00Z"],
                                  "Since": ["x"]}, None, "not a parameter"),
    ("PUT", "/orders/v0/orders", {}, None, "not an operation"),
], ids=["no-marketplace", "no-product-type", "bad-op", "value-not-array", "no-after", "bad-date", "51-markets",
        "page-size", "unknown-param", "unknown-operation"])
def test_the_validator_rejects_what_amazon_rejects(method, path, query, body, expected):
    assert any(expected in v for v in amazon_spec.violations(method, path, query, body))
