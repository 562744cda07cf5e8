"""connectors/sfcc/orders.py: what an SFCC order's status means for its product lines (pure)."""
from __future__ import annotations

from decimal import Decimal

import pytest
import yaml

from erp_bridge.connectors.sfcc import orders
from tests.fakes import sfcc_spec

RULES = orders.Rules("sfcc", "warehouse-east", lambda product: {"CHAIR-BLUE-01": "chair-blue"}.get(product))


def order(status: str, *lines: tuple[str, object], number: str = "00001", modified: str = "2026-11-30T10:00:00.000Z"):
    return {"orderNo": number, "status": status, "lastModified": modified, "creationDate": "2026-11-30T09:59:00.000Z",
            "productItems": [{"itemId": f"i{n}", "productId": p, "quantity": q} for n, (p, q) in enumerate(lines)]}


@pytest.mark.parametrize("status", ["new", "completed"])
def test_a_placed_order_decrements_each_line_keyed_by_order_and_line(status):
    found = orders.read([order(status, ("CHAIR-BLUE-01", 2), ("stool", 1.5))], RULES)
    assert [(c.kind, c.item, c.quantity, c.location, c.idempotency_key) for c in found.changes] == [
        ("decrement", "chair-blue", Decimal(2), "warehouse-east", "sfcc:00001:i0"),
        ("decrement", "stool", Decimal("1.5"), "warehouse-east", "sfcc:00001:i1")]


@pytest.mark.parametrize("status", ["created", "failed", "replaced", None])
def test_an_order_not_placed_or_failed_counts_nothing(status):
    assert orders.read([order(status, ("stool", 1))], RULES).changes == []


def test_a_cancelled_order_sells_and_gives_back_under_keys_that_net_to_zero_once():
    first = orders.read([order("new", ("stool", 1))], RULES).changes
    cancelled = orders.read([order("cancelled", ("stool", 1))], RULES).changes
    assert [c.idempotency_key for c in cancelled] == ["sfcc:00001:i0", "sfcc:00001:i0:cancel"]
    assert cancelled[0].idempotency_key == first[0].idempotency_key  # the sale is the same entry
    assert sum(c.signed_quantity for c in cancelled) == 0


def test_lines_that_cannot_be_counted_are_reported_not_guessed():
    found = orders.read([order("new", ("stool", "many"), ("", 1), ("chair", 0), ("desk", -1))], RULES)
    assert found.changes == []
    assert len(found.reports) == 3 and "order 00001 line i0 (stool): quantity 'many'" in found.reports[0]


def test_the_cursor_is_the_newest_last_modified_read():
    found = orders.read([order("new", number="2", modified="2026-11-30T10:00:05.120Z"),
                         order("new", number="1", modified="2026-11-30T10:00:01.000Z"),
                         {"status": "new", "lastModified": "2026-11-30T11:00:00.000Z"}], RULES)
    assert found.latest is not None and found.latest.isoformat() == "2026-11-30T11:00:00+00:00"
    assert "without orderNo" in found.reports[0]


def test_the_orders_oas_own_example_reads_as_the_sale_it_is():
    if not sfcc_spec.available():
        pytest.skip("../shared/specs/sfcc-oci is not beside the repo")
    spec = yaml.safe_load(sfcc_spec.ORDERS_OAS.read_text())
    example = spec["components"]["examples"]["OrdersGet"]["value"]["data"]
    found = orders.read(example, orders.Rules("sfcc", "warehouse-east", lambda p: None))
    lines = [i for o in example for i in o.get("productItems") or []]
    expected = sum(1 for o in example if o.get("status") in orders.SALE_STATUSES for _ in o.get("productItems") or [])
    assert lines and len(found.changes) == expected
    assert all(c.order == example[0]["orderNo"] for c in found.changes)


def test_the_statuses_are_the_oas_enum():
    if not sfcc_spec.available():
        pytest.skip("../shared/specs/sfcc-oci is not beside the repo")
    spec = yaml.safe_load(sfcc_spec.ORDERS_OAS.read_text())
    assert tuple(spec["components"]["schemas"]["OrderStatus"]["enum"]) == orders.STATUSES
