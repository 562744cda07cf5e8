"""Every Inventory API request the BigCommerce connector sends, validated with openapi-core against
BigCommerce's own OpenAPI (../shared/specs/bigcommerce/inventory.v3.yml): path, method, security
header and body (oneOf sku/variant_id/product_id items, integer location ids and quantities).
openapi-core stands in for a Prism mock server: the same document, the same refusals, no Node.
The V2 order reads have no spec in ../shared/specs and are not contract-checked here."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from erp_bridge.domain import Figure
from tests.fakes.bigcommerce import ABSOLUTE, SPEC, connector_for, spec_errors, stocked_store

pytestmark = pytest.mark.skipif(not SPEC.is_file(), reason="../shared/specs/bigcommerce is not beside the repo")
NONE_OF = "not valid under any of the given schemas"
HEADERS = {"X-Auth-Token": "t", "Accept": "application/json", "Content-Type": "application/json"}


@pytest.mark.parametrize("body, headers, fragment", [
    ({"reason": "r", "items": [{"location_id": "1", "sku": "a", "quantity": 1}]}, HEADERS, NONE_OF),
    ({"reason": "r", "items": [{"location_id": 1, "quantity": 1}]}, HEADERS, NONE_OF),
    ({"reason": "r", "items": [{"location_id": 1, "sku": "a", "quantity": 1.5}]}, HEADERS, NONE_OF),
    ({"reason": "r", "items": [{"location_id": 1, "sku": "a", "quantity": 1}]},
     {"Accept": "application/json", "Content-Type": "application/json"}, "Security"),
], ids=["location id as text", "no identity", "fractional quantity", "no token"])
def test_the_validator_refuses_what_the_spec_does_not_allow(body, headers, fragment):
    errors = spec_errors("PUT", ABSOLUTE, headers, json.dumps(body).encode())
    assert errors and any(fragment in e for e in errors), errors


def test_every_request_the_connector_sends_satisfies_the_inventory_spec(tmp_path):
    with stocked_store() as store:
        connector = connector_for(store.url, tmp_path / "m", tmp_path / "q.sqlite3", timeout_s=2.0, batch_size=2)
        connector.push_availability([Figure("chair-blue", "WH/Stock", Decimal("2.5")),
                                     Figure("chair-red", "WH2/Stock", Decimal(0)),
                                     Figure("007", "WH/Stock", Decimal(7)), Figure("ghost", "WH/Stock", Decimal(1))])
        connector.close()
    puts = [r for r in store.requests if r["method"] == "PUT"]
    assert len(puts) >= 3  # two batches, the second bisected around the refused SKU
    for request in puts:
        path = request["path"].split("?")[0]
        assert spec_errors("PUT", path, request["headers"], request["body"]) == []
        assert request["headers"]["Accept"] == "application/json"
