"""Every request the Magento connector sends, checked against Adobe's admin REST schema
(../shared/specs/magento2/admin-schema-2.4.9.yaml, Swagger 2.0) and the docs beside it.

The connector runs against the fake Magento (which also validates); here each recorded request is
validated again, independently, and the rules the schema leaves to prose are checked as the docs
state them:
- docs-rest_inventory_manage-source-items.md: ``sourceItems`` of ``{sku, source_code, quantity,
  status}``; "quantity: The total amount of inventory available for this SKU and source" (Float),
  "status: Indicates whether the product is out of stock (0) or in stock (1)";
- web API input limits (api-security, "default maximum is 20" entities per synchronous request and
  "300" items per page when enabled): at most 20 source items a call, pageSize <= 300;
- docs-get-started_authentication_gs-authentication-token.md: ``Authorization: Bearer <token>``.
"""
from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest

from erp_bridge.domain import Figure
from tests.fakes import magento_spec
from tests.fakes.magento import FakeMagento, connector_for

pytestmark = pytest.mark.skipif(not magento_spec.available(),
                                reason="../shared/specs/magento2/admin-schema-2.4.9.yaml is not beside the repo")
HOOKS = "webhooks:\n  secret: magento_webhook_secret\n  restock_statuses: [canceled, refunded]\n\nrequests:"


@pytest.fixture
def sent(tmp_path):
    """Every request of every kind the connector sends: MSI pushes, the legacy stock item, orders, credit memos."""
    with FakeMagento() as magento:
        for n in range(25):
            magento.product(f"sku-{n}", 1)
        msi = connector_for(magento, tmp_path / "msi", **{"requests:": HOOKS})
        msi.push_availability([Figure(f"sku-{n}", "WH/Stock" if n % 2 else "WH2/Stock", Decimal(n) / 3)
                               for n in range(25)])
        msi.commit_poll(msi.poll_changes())
        order = magento.order(("sku-1", 2), ("sku-2", 1), configurable=True)
        magento.refund(order, "sku-1", 1)
        msi.commit_poll(msi.poll_changes())
        legacy = connector_for(magento, tmp_path / "legacy", **{
            "single_source: false": "single_source: true", "code: east_warehouse": "code: default",
            "  map:\n": "  aggregation: sum\n  map:\n"})
        legacy.push_availability([Figure("sku-3", "WH/Stock", Decimal("2.5")), Figure("sku-4", "WH/Stock", Decimal(0))])
        for built in (msi, legacy):
            built.close()
        yield magento
        assert magento.violations == []


def test_every_request_is_an_operation_of_the_admin_schema(sent):
    operations = {magento_spec.operation(m, urlsplit(p).path)[0] for m, p, _ in sent.received}  # type: ignore[index]
    assert operations == {"/V1/inventory/source-items", "/V1/orders", "/V1/creditmemos", "/V1/stockItems/{productSku}",
                          "/V1/products/{productSku}/stockItems/{itemId}"}
    for method, path, body in sent.received:
        url = urlsplit(path)
        assert magento_spec.violations(method, url.path, parse_qs(url.query), body) == [], (method, path)


def test_source_items_are_documented_lines_at_most_twenty_a_call(sent):
    calls = [b["sourceItems"] for m, p, b in sent.received if p.endswith("/V1/inventory/source-items")]
    assert [len(c) for c in calls] == [20, 5]
    for line in (item for call in calls for item in call):
        assert set(line) == {"sku", "source_code", "quantity", "status"}
        assert isinstance(line["quantity"], int) and line["quantity"] >= 0  # rounded down: integer products
        assert line["status"] == (1 if line["quantity"] > 0 else 0)
        assert line["source_code"] in ("default", "east_warehouse")


def test_orders_are_searched_by_updated_at_oldest_first_in_bounded_pages(sent):
    searches = [parse_qs(urlsplit(p).query) for m, p, _ in sent.received if urlsplit(p).path.endswith("/V1/orders")]
    assert searches
    for query in searches:
        flat = {k: v[0] for k, v in query.items()}
        assert flat["searchCriteria[filterGroups][0][filters][0][field]"] == "updated_at"
        assert flat["searchCriteria[filterGroups][0][filters][0][conditionType]"] == "gteq"
        value = flat["searchCriteria[filterGroups][0][filters][0][value]"]
        assert len(value) == 19 and value[10] == " "  # YYYY-MM-DD HH:MM:SS: Magento's UTC form, no zone
        assert flat["searchCriteria[sortOrders][0][field]"] == "updated_at"
        assert flat["searchCriteria[sortOrders][0][direction]"] == "ASC"
        assert 1 <= int(flat["searchCriteria[pageSize]"]) <= 300 and int(flat["searchCriteria[currentPage]"]) >= 1


def test_the_legacy_stock_item_is_qty_and_is_in_stock(sent):
    puts = [(p, b) for m, p, b in sent.received if m == "PUT"]
    assert [b for _, b in puts] == [{"stockItem": {"qty": 2, "is_in_stock": True}},
                                    {"stockItem": {"qty": 0, "is_in_stock": False}}]
    assert all("/stockItems/" in p and p.split("/")[-1].isdigit() for p, _ in puts)  # the item id read first


def test_every_request_carries_the_token_as_bearer(sent):
    assert len(sent.authorizations) == len(sent.received) > 0
    assert set(sent.authorizations) == {f"Bearer {sent.token}"}


@pytest.mark.parametrize("body, problem", [
    ({"sourceItems": [{"sku": "a", "source_code": "x", "quantity": "3", "status": 1}]}, "is not of type 'number'"),
    ({"sourceItems": [{"sku": "a", "source_code": "x", "quantity": 3, "status": 1, "qty": 3}]}, "Additional"),
    ({"sourceItems": [{"sku": "a", "source_code": "x", "quantity": 3}]}, "status is required"),
    ({"items": []}, "'sourceItems' is a required property"),
], ids=["string-quantity", "unknown-field", "no-status", "wrong-envelope"])
def test_the_validator_refuses_what_magento_refuses(body, problem):
    found = magento_spec.violations("POST", "/rest/default/V1/inventory/source-items", {}, body)
    assert any(problem in p for p in found), found


def test_the_validator_refuses_unknown_search_parameters():
    found = magento_spec.violations("GET", "/rest/default/V1/orders", {"searchCriteria[limit]": ["5"],
                                                                      "searchCriteria[pageSize]": ["ten"]}, None)
    assert len(found) == 2
