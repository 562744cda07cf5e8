"""Every request the Lightspeed X-Series connector sends, checked against ../shared/specs/lightspeed:
the API 2.0 reads with openapi-core against x-series-api-2.0-openapi.json (path, method, bearer
security); the inventory write, API 2.1's "Update a product", which has no OpenAPI, against the fields
the X-Series Postman collection documents for it (a schema built from its example body). The reads:
a sale's register (its outlet) and a product's inventory per outlet (reconciliation)."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from erp_bridge.domain import Figure
from tests.fakes import lightspeed_x as ls

pytestmark = pytest.mark.skipif(not ls.OPENAPI.is_file() or not ls.POSTMAN.is_file(),
                                reason="../shared/specs/lightspeed is not beside the repo")


@pytest.mark.parametrize("body, fragment", [
    ({"details": {"inventory": [{"outlet_id": "o", "current_amount": "3"}]}}, "is not of type 'number'"),
    ({"details": {"inventory": [{"current_amount": 3}]}}, "'outlet_id' is a required property"),
    ({"details": {"inventory": [{"outlet_id": "o", "count": 3}]}}, "'count' was unexpected"),
    ({"inventory": [{"outlet_id": "o", "current_amount": 3}]}, "'inventory' was unexpected"),
], ids=["amount as text", "no outlet", "the 0.9 API's count", "inventory outside details"])
def test_the_documented_update_refuses_what_the_collection_does_not_document(body, fragment):
    errors = ls.update_errors(json.dumps(body).encode())
    assert errors and any(fragment in e for e in errors), errors


def test_the_openapi_refuses_an_unauthenticated_read():
    assert any("Security" in e for e in ls.spec_errors("GET", "/api/2.0/registers/r", {}))


def test_every_request_the_connector_sends_satisfies_the_contract(tmp_path):
    with ls.stocked_store() as store:
        connector = ls.connector_for(store.url, tmp_path / "m", tmp_path / "q.sqlite3", timeout_s=2.0)
        connector.push_availability([Figure("CHAIR-BLUE", "WH/Stock", Decimal("2")),
                                     Figure("CHAIR-RED", "WH/Stock", Decimal(0))])
        headers, body = ls.signed_delivery(ls.CLIENT_SECRET, ls.sale("S1", "CLOSED", ("L1", ls.BLUE, 1)))
        connector.verify_webhook(headers, body, "u")
        connector.resolve(connector.inbox.due()[0])
        connector.read_listed([("CHAIR-BLUE", "WH/Stock"), ("CHAIR-RED", "WH/Stock")])
        connector.close()
    puts = [r for r in store.requests if r["method"] == "PUT"]
    gets = [r for r in store.requests if r["method"] == "GET"]
    assert len(puts) == 2 and len(gets) == 3  # a register, two products' inventory
    for request in puts:
        assert request["path"].startswith("/api/2.1/products/") and ls.update_errors(request["body"]) == []
        assert request["headers"]["Authorization"] == f"Bearer {ls.TOKEN}"
    for request in gets:
        path, _, query = request["path"].partition("?")
        assert ls.spec_errors("GET", path, request["headers"], query) == []
