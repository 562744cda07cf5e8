"""Fan-out and translation: pure, from the mapping files."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest

from erp_bridge.domain import Decrement, Increment, StockMove
from erp_bridge.errors import RejectedError
from erp_bridge.sync.router import Router, prepare
from erp_bridge.sync.translate import to_internal


def sale(location="web-1", item="007", **kw) -> Decrement:
    return Decrement(channel="shop", order="1001", line="1", item=item, location=location, quantity=Decimal(2), **kw)


@pytest.mark.parametrize("location, expected", [
    pytest.param("WH/Stock", [("pos", "WH/Stock"), ("shop", "WH/Stock")], id="sold-by-two-channels"),
    pytest.param("WH2/Stock", [("shop", "WH/Stock")], id="aggregated-onto-the-primary"),
    pytest.param("WH3/Stock", [], id="sold-by-none"),
])
def test_availability_goes_to_every_channel_of_the_location(mappings, location, expected):
    entries = Router(mappings).availability("odoo", "007", location, cause="marker:41")
    assert [(e.target, e.location) for e in entries] == expected
    assert all(e.coalesce and e.kind == "availability" and e.item == "007" for e in entries)
    assert [e.idempotency_key for e in entries] == [f"{t}:odoo:availability:007@{rep}:marker:41" for t, rep in expected]


def test_a_sale_goes_to_the_system_of_record_and_refreshes_every_channel(mappings):
    entries = Router(mappings).channel_change(sale())
    first, *rest = entries
    assert (first.target, first.kind, first.item, first.location, first.quantity, first.idempotency_key) == (
        "odoo", "decrement", "007", "WH/Stock", Decimal(-2), "shop:1001:1")
    assert first.payload["location"] == "web-1"  # kept in channel terms: translated at delivery
    assert [(e.target, e.idempotency_key) for e in rest] == [
        ("pos", "pos:odoo:availability:007@WH/Stock:change:shop:1001:1"),
        ("shop", "shop:odoo:availability:007@WH/Stock:change:shop:1001:1")]


@pytest.mark.parametrize("change, reason", [
    pytest.param(sale(location="web-404"), "shop location 'web-404' is not in ", id="unknown-location"),
    pytest.param(sale(item="NOPE"), "SKU 'NOPE' is not listed for shop", id="unlisted-sku"),
    pytest.param(sale(item="variant:123"), "shop line has no SKU (variant:123)", id="no-sku"),
])
def test_an_unmappable_sale_is_still_queued_and_dead_letters_with_its_reason(mappings, change, reason):
    entries = Router(mappings).channel_change(change)
    assert [(e.target, e.idempotency_key) for e in entries] == [("odoo", "shop:1001:1")]
    with pytest.raises(RejectedError, match=re.escape(reason)):
        prepare(mappings, change)


def test_translation_keeps_the_key_and_quantity(mappings):
    internal = to_internal(mappings, Increment(channel="shop", order="9", line="refund-line-3", item="007",
                                               location="web-1", quantity=Decimal(1), reason="return"))
    assert (internal.item, internal.location, internal.idempotency_key, internal.quantity) == (
        "007", "WH/Stock", "shop:9:refund-line-3:return", Decimal(1))


def move(origin=None, location="WH/Stock") -> StockMove:
    return StockMove(system="odoo", move_id="77", item="007", quantity=Decimal(3), from_location=location,
                     to_location="Partners/Customers", location=location, direction="out", origin=origin)


@pytest.mark.parametrize("m, targets", [
    pytest.param(move(), ["sap"], id="mirrored"),
    pytest.param(move(location="WH2/Stock"), [], id="location-not-mirrored"),
    pytest.param(move(origin="bridge:sap"), [], id="echo-of-the-mirror-itself"),
    pytest.param(move(origin="bridge:shop"), ["sap"], id="caused-by-a-channel-still-mirrored"),
])
def test_moves_go_to_mirrors_never_back_to_their_cause(mappings, m, targets):
    entries = Router(mappings).moves(m)
    assert [e.target for e in entries] == targets
    assert all(e.idempotency_key == "sap:odoo:move:77" and not e.coalesce and e.quantity == Decimal(-3)
               for e in entries)
