"""Every request the Clover connector sends, checked against ../shared/specs/clover: the order read
and the item read (reconciliation, ``expand=itemStock``)
with openapi-core against clover-platform-rest-api-openapi.yml (a third-party spec derived from
Clover's docs: path, merchant id, expand, bearer security); ``item_stocks``, which that spec lacks,
against the documented body ("POST /v3/merchants/{mId}/item_stocks/{itemId} body {"quantity": N}
sets the absolute stock (decimal, may be negative)", NOTES-item-stocks-webhooks-ratelimits.md;
vendor-apis.md §9)."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from erp_bridge.domain import Figure
from tests.fakes import clover as cl

pytestmark = pytest.mark.skipif(not cl.SPEC.is_file(), reason="../shared/specs/clover is not beside the repo")


@pytest.mark.parametrize("body, fragment", [
    ({"quantity": "3"}, "is not of type 'number'"), ({"stockCount": 3}, "'quantity' is a required property"),
    ({"quantity": 3, "item": {"id": "x"}}, "'item' was unexpected")],
    ids=["quantity as text", "the deprecated stockCount", "an undocumented field"])
def test_the_documented_item_stock_body_refuses_anything_else(body, fragment):
    errors = cl.item_stock_errors(json.dumps(body).encode())
    assert errors and any(fragment in e for e in errors), errors


def test_the_openapi_refuses_an_unauthenticated_order_read():
    assert any("Security" in e for e in cl.spec_errors("GET", "/v3/merchants/M/orders/O", {}, "expand=lineItems"))


def test_every_request_the_connector_sends_satisfies_the_contract(tmp_path):
    with cl.stocked_merchant() as merchant:
        merchant.add_order("ORD1", "PAID", ("LI1", cl.BLUE, None))
        connector = cl.connector_for(merchant.url, tmp_path / "m", tmp_path / "q.sqlite3", timeout_s=2.0)
        connector.push_availability([Figure("CHAIR-BLUE", "WH/Stock", Decimal("2.25")),
                                     Figure("CHAIR-RED", "WH/Stock", Decimal(0))])
        connector.verify_webhook(*cl.notification(cl.AUTH_CODE, ("O:ORD1", "UPDATE", 1)), "u")
        connector.resolve(connector.inbox.due()[0])
        connector.read_listed([("CHAIR-BLUE", "WH/Stock")])
        connector.close()
    posts = [r for r in merchant.requests if r["method"] == "POST"]
    gets = [r for r in merchant.requests if r["method"] == "GET"]
    assert len(posts) == 2 and len(gets) == 2  # the order, an item's stock
    for request in posts:
        assert request["path"].startswith(f"/v3/merchants/{cl.MERCHANT}/item_stocks/")
        assert cl.item_stock_errors(request["body"]) == []
        assert request["headers"]["Authorization"] == f"Bearer {cl.TOKEN}" and request["headers"]["User-Agent"]
    for request in gets:
        path, _, query = request["path"].partition("?")
        assert cl.spec_errors("GET", path, request["headers"], query) == []
        assert query == ("expand=lineItems" if "/orders/" in path else "expand=itemStock")
