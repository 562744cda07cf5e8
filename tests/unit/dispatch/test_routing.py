from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from erp_bridge.connectors.base import Capability
from erp_bridge.dispatch.routing import capability_for, entry_for, event_of
from erp_bridge.domain import AvailabilityChanged, Count, Decrement, Increment, StockMove
from erp_bridge.errors import RejectedError
from erp_bridge.queue.base import Entry, State

AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("event, kind, quantity, coalesce, key", [
    (Decrement(channel="web", order="o1", line="2", item="S", location="WH", quantity=Decimal("1.5")),
     "decrement", Decimal("-1.5"), False, "web:o1:2"),
    (Increment(channel="web", order="o1", line="2", item="S", location="WH", quantity=Decimal(1), reason="refund"),
     "increment", Decimal(1), False, "web:o1:2:refund"),
    (Count(system="pos", item="S", location="WH", quantity=Decimal(7), reference="c9"), "count", None, False,
     "pos:count:c9"),
    (StockMove(system="odoo", move_id="m1", item="S", quantity=Decimal(2), from_location="WH",
               to_location="Out", location="WH", direction="out"), "move", Decimal(-2), False, "odoo:move:m1"),
    (AvailabilityChanged(system="odoo", item="S", location="WH", sequence=42), "availability", None, True,
     "odoo:availability:S@WH:42"),
    (AvailabilityChanged(system="odoo", item="S", location="WH", occurred_at=AT), "availability", None, True,
     f"odoo:availability:S@WH:{AT.timestamp():.6f}"),
], ids=["decrement-negative", "increment-positive", "count-is-absolute", "move-signed", "marker-with-sequence",
        "marker-without-sequence-keyed-by-time"])
def test_entry_for(event, kind, quantity, coalesce, key):
    new = entry_for("t", event)
    assert (new.kind, new.quantity, new.coalesce, new.idempotency_key, new.item, new.location) == (
        kind, quantity, coalesce, key, "S", "WH")
    assert event_of(_stored(new)) == event


def _stored(new):
    return Entry(id=1, target=new.target, kind=new.kind, item=new.item, location=new.location,
                 idempotency_key=new.idempotency_key, payload=new.payload, quantity=new.quantity,
                 state=State.PENDING, attempts=0, available_at=AT, created_at=AT, updated_at=AT)


@pytest.mark.parametrize("kind, capability", [
    ("decrement", Capability.APPLY_STOCK_CHANGES), ("move", Capability.POST_MOVES),
    ("availability", Capability.PUSH_AVAILABILITY)])
def test_capability_for(kind, capability):
    assert capability_for(kind) is capability


def test_unknown_kind_is_rejected():
    with pytest.raises(RejectedError):
        capability_for("teleport")
