"""Every request the WooCommerce connector sends, checked against the REST API v3 reference in
../shared/specs/woocommerce (Markdown: there is no OpenAPI): the endpoint is one the docs name, the
body holds only documented, writable fields of the documented types, at most 100 objects a call,
and the credentials travel as HTTP Basic (_authentication.md)."""
from __future__ import annotations

import base64
import json
import re
from decimal import Decimal

import pytest

from erp_bridge.domain import Figure
from tests.contract.woocommerce_docs import DOCS, SPECS, batch_problems, properties
from tests.fakes.woocommerce import KEY, SECRET, connector_for, stocked_shop

pytestmark = pytest.mark.skipif(not SPECS.is_dir(), reason="../shared/specs/woocommerce is not beside the repo")
ENDPOINTS = {"product": re.compile(r"^/wp-json/wc/v3/products/batch$"),
             "variation": re.compile(r"^/wp-json/wc/v3/products/\d+/variations/batch$")}


def test_the_docs_are_read_and_name_the_fields_the_connector_relies_on():
    for resource in ("product", "variation"):
        fields = properties(resource)
        assert fields["stock_quantity"] == ("integer", False) and fields["manage_stock"] == ("boolean", False)
        assert fields["id"] == ("integer", True) and len(fields) > 30
    assert "/wp-json/wc/v3/products/batch" in DOCS["product"].read_text()
    assert "/wp-json/wc/v3/products/&lt;product_id&gt;/variations/batch" in DOCS["variation"].read_text()


@pytest.mark.parametrize("body, problem", [
    ({"update": [{"id": 1, "stock_qty": 3}]}, "stock_qty is not a documented product property"),
    ({"update": [{"id": 1, "stock_quantity": "3"}]}, "stock_quantity must be integer, got str"),
    ({"update": [{"id": 1, "stock_quantity": 3.5}]}, "stock_quantity must be integer, got float"),
    ({"update": [{"id": 1, "manage_stock": 1}]}, "manage_stock must be boolean, got int"),
    ({"update": [{"id": 1, "backorders_allowed": True}]}, "backorders_allowed is read-only"),
    ({"update": [{"id": "1", "stock_quantity": 3}]}, "an update needs an integer id"),
    ({"update": [{"id": n, "stock_quantity": 1} for n in range(101)]}, "more than 100 objects"),
    ({"set": []}, "a batch body is an object"),
], ids=["unknown field", "string quantity", "fractional quantity", "int as bool", "read-only", "string id",
        "101 objects", "not a batch"])
def test_the_validator_refuses_what_the_docs_do_not_allow(body, problem):
    assert any(problem in p for p in batch_problems("product", body))


def test_every_request_the_connector_sends_follows_the_reference(tmp_path):
    items = {f"sku-{n}": str(1000 + n) for n in range(120)}
    with stocked_shop() as shop:
        for n in range(120):
            shop.add_product(1000 + n, f"sku-{n}", 0)
        # not a timeout test: a batch of 100 is the heaviest request of the suite, given twice the fakes'
        # 5 s (when they had 0.5 s, once in CI only the first batch arrived: its answer timed out, and
        # the connector rightly sent no more)
        connector = connector_for(shop.url, tmp_path / "m", extra_items=items, timeout_s=10.0)
        figures = [Figure(sku, "WH/Stock", Decimal("2.7")) for sku in (*items, "chair-blue", "mug-s", "mug-l")]
        connector.push_availability(figures)
        connector.close()
    assert len(shop.requests) == 3
    basic = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    for request in shop.requests:
        resource = next(r for r, pattern in ENDPOINTS.items() if pattern.match(request["path"]))
        body = json.loads(request["body"])
        assert batch_problems(resource, body) == [], request["path"]
        assert request["method"] == "POST" and request["headers"]["Authorization"] == basic
        assert request["headers"]["Content-Type"] == "application/json"
