"""What each change in Square's inventory history means to the bridge (history.py), table-driven."""
from __future__ import annotations

from decimal import Decimal

import pytest

from erp_bridge.connectors.square.history import Rules, read
from erp_bridge.domain import Decrement, Increment

SKUS = {"V1": "chair-blue"}
RULES = Rules("square", SKUS.get)


def adjustment(source: str, target: str, quantity: str = "2", id_: str = "A1", **extra) -> dict:
    return {"type": "ADJUSTMENT", "adjustment": {"id": id_, "catalog_object_id": "V1", "location_id": "L1",
                                                 "from_state": source, "to_state": target, "quantity": quantity,
                                                 "created_at": "2026-11-30T10:00:00.000001Z",
                                                 "occurred_at": "2026-11-30T09:59:59Z", **extra}}


def count(quantity: str = "7", reference: str | None = None, id_: str = "P1") -> dict:
    body = {"id": id_, "catalog_object_id": "V1", "location_id": "L1", "state": "IN_STOCK", "quantity": quantity,
            "created_at": "2026-11-30T10:00:01Z", "source": {"product": "SQUARE_POS", "name": "Square POS"}}
    if reference:
        body["reference_id"] = reference
    return {"type": "PHYSICAL_COUNT", "physical_count": body}


@pytest.mark.parametrize("change, expected", [
    (adjustment("IN_STOCK", "SOLD", transaction_id="T9"),
     Decrement(channel="square", order="T9", line="A1", item="chair-blue", location="L1", quantity=Decimal(2))),
    (adjustment("IN_STOCK", "SOLD"),  # no transaction: the adjustment is its own order
     Decrement(channel="square", order="A1", line="A1", item="chair-blue", location="L1", quantity=Decimal(2))),
    (adjustment("SOLD", "IN_STOCK", "1", refund_id="R3"),
     Increment(channel="square", order="R3", line="A1", item="chair-blue", location="L1", quantity=Decimal(1),
               reason="return")),
    (adjustment("RETURNED_BY_CUSTOMER", "IN_STOCK", "1.25", refund_id="R4"),
     Increment(channel="square", order="R4", line="A1", item="chair-blue", location="L1", quantity=Decimal("1.25"),
               reason="return")),
], ids=["sale", "sale-without-transaction", "restocked-refund", "returned-then-restocked"])
def test_sales_and_returns_count(change, expected):
    reading = read([change], RULES, lambda key: False)
    got = reading.changes[0]
    assert (got.kind, got.idempotency_key, got.item, got.location, got.quantity) == (
        expected.kind, expected.idempotency_key, expected.item, expected.location, expected.quantity)
    assert reading.reports == [] and reading.ids == [f"ADJUSTMENT:{change['adjustment']['id']}"]


@pytest.mark.parametrize("change, report", [
    (count("7"), "recounted to 7 in Square (physical count P1, by Square POS); not applied"),
    (adjustment("IN_STOCK", "WASTE"), "2 moved IN_STOCK -> WASTE in Square (adjustment A1); not applied"),
    (adjustment("NONE", "IN_STOCK"), "2 moved NONE -> IN_STOCK"),
    (adjustment("IN_STOCK", "SOLD", "abc"), "unreadable quantity 'abc'"),
], ids=["recount", "waste", "receipt", "bad-quantity"])
def test_other_stock_movements_are_reported_not_applied(change, report):
    reading = read([change], RULES, lambda key: False)
    assert reading.changes == [] and len(reading.reports) == 1 and report in reading.reports[0]


def test_the_bridges_own_counts_are_echoes():
    reading = read([count("5", reference="erp-bridge:odoo:availability:chair-blue@WH/Stock:7")], RULES, lambda k: False)
    assert (reading.changes, reading.reports, reading.echoes) == ([], [], 1)


def test_movements_outside_in_stock_are_ignored():
    reading = read([adjustment("SOLD", "RETURNED_BY_CUSTOMER")], RULES, lambda key: False)
    assert (reading.changes, reading.reports) == ([], [])


def test_a_seen_or_repeated_change_counts_once():
    sale = adjustment("IN_STOCK", "SOLD", id_="A7")
    assert len(read([sale, sale], RULES, lambda key: False).changes) == 1
    assert read([sale], RULES, lambda key: key == "ADJUSTMENT:A7").changes == []


def test_sale_states_are_a_mapping_setting():
    online = adjustment("IN_STOCK", "SOLD_ONLINE")
    assert read([online], RULES, lambda key: False).changes == []
    rules = Rules("square", SKUS.get, sale_states=("SOLD", "SOLD_ONLINE"))
    assert read([online], rules, lambda key: False).changes[0].kind == "decrement"


def test_an_unknown_variation_keeps_its_square_id_for_the_dead_letter():
    sale = adjustment("IN_STOCK", "SOLD")
    sale["adjustment"]["catalog_object_id"] = "UNKNOWN9"
    assert read([sale], RULES, lambda key: False).changes[0].item == "UNKNOWN9"


def test_latest_is_the_newest_created_at():
    reading = read([adjustment("IN_STOCK", "SOLD"), count()], RULES, lambda key: False)
    assert reading.latest is not None and reading.latest.isoformat() == "2026-11-30T10:00:01+00:00"
