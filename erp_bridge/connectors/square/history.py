"""Square's inventory change history -> what the bridge does with each change. Pure: no I/O.

Square keeps an absolute count per (variation, location, state) and a history of the changes that
made it. Subtracting counts would double count (two notifications for one sale, a count that moved
because of the bridge's own push). The history says what happened, each change with its own id:

- an ``ADJUSTMENT`` from ``IN_STOCK`` to a sale state (``SOLD``) is a sale: one decrement, keyed
  by the adjustment id, so a change read twice (overlapping polls, redelivered notifications)
  is one queue entry;
- an ``ADJUSTMENT`` to ``IN_STOCK`` from a return state (``SOLD``, ``RETURNED_BY_CUSTOMER``) is a
  restocked return: one increment, keyed the same way;
- a ``PHYSICAL_COUNT`` whose ``reference_id`` starts with ``erp-bridge:`` is the bridge's own push
  coming back (an echo): ignored;
- any other change that moves stock in or out of ``IN_STOCK`` (a recount in Square, waste, a
  receipt) is *reported* and not applied: the system of record owns the stock, and a count typed
  into a till must not silently overwrite it. The next push sets Square back to the true figure.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from ...domain import ChannelChange, Decrement, Increment
from ..runtime.classify import finite_decimal

ECHO_PREFIX = "erp-bridge:"
IN_STOCK = "IN_STOCK"
SALE_STATES = ("SOLD",)
RETURN_STATES = ("SOLD", "RETURNED_BY_CUSTOMER")
#: states a sale or a return can name (Square's InventoryState, less IN_STOCK and the placeholders)
STATES = ("CUSTOM", "SOLD", "RETURNED_BY_CUSTOMER", "RESERVED_FOR_SALE", "SOLD_ONLINE", "ORDERED_FROM_VENDOR",
          "RECEIVED_FROM_VENDOR", "IN_TRANSIT_TO", "NONE", "WASTE", "UNLINKED_RETURN", "COMPOSED", "DECOMPOSED",
          "IN_TRANSIT")



@dataclass(frozen=True)
class Rules:
    channel: str
    #: Square catalog_object_id -> SKU (None: unknown; the id is kept so the dead letter names it)
    sku_of: Callable[[str], str | None]
    sale_states: tuple[str, ...] = SALE_STATES
    return_states: tuple[str, ...] = RETURN_STATES


@dataclass
class Reading:
    """What one pass over the history found."""

    changes: list[ChannelChange] = field(default_factory=list)
    #: human-readable lines for recounts and other movements the bridge does not apply
    reports: list[str] = field(default_factory=list)
    echoes: int = 0
    #: ids of every change read (so a re-read one is skipped) and the newest created_at
    ids: list[str] = field(default_factory=list)
    latest: datetime | None = None


def change_id(change: Mapping[str, Any]) -> str:
    """The key a history entry is remembered by (``ADJUSTMENT:<id>``)."""
    kind = change.get("type")
    body = change.get("adjustment") if kind == "ADJUSTMENT" else change.get("physical_count")
    return f"{kind}:{body.get('id')}" if isinstance(body, Mapping) else ""


def read(changes: Sequence[Mapping[str, Any]], rules: Rules, seen: Callable[[str], bool]) -> Reading:
    """Classify ``changes`` (Square InventoryChange objects), skipping ids ``seen`` says are done."""
    out = Reading()
    for change in changes:
        kind = change.get("type")
        body = change.get("adjustment") if kind == "ADJUSTMENT" else change.get("physical_count")
        if not isinstance(body, Mapping) or not body.get("id"):
            continue  # TRANSFER (not requested) or a malformed entry: nothing to key it by
        change_id = f"{kind}:{body['id']}"
        out.latest = _later(out.latest, body.get("created_at"))
        if seen(change_id) or change_id in out.ids:
            continue
        out.ids.append(change_id)
        if kind == "ADJUSTMENT":
            _adjustment(body, rules, out)
        else:
            _count(body, rules, out)
    return out


def _adjustment(adj: Mapping[str, Any], rules: Rules, out: Reading) -> None:
    source, target = adj.get("from_state"), adj.get("to_state")
    if IN_STOCK not in (source, target):
        return  # e.g. SOLD -> RETURNED_BY_CUSTOMER: on-hand stock did not move
    quantity = finite_decimal(adj.get("quantity"))
    common = _common(adj, rules, quantity)
    if common is None:
        out.reports.append(f"adjustment {adj['id']}: unreadable quantity {adj.get('quantity')!r}; not applied")
    elif source == IN_STOCK and target in rules.sale_states:
        out.changes.append(Decrement(order=str(adj.get("transaction_id") or adj["id"]), **common))
    elif target == IN_STOCK and source in rules.return_states:
        order = adj.get("refund_id") or adj.get("transaction_id") or adj["id"]
        out.changes.append(Increment(order=str(order), reason="return", **common))
    else:
        out.reports.append(f"{_what(adj, rules)}: {quantity} moved {source} -> {target} in Square "
                           f"(adjustment {adj['id']}{_by(adj)}); not applied to the system of record")


def _count(count: Mapping[str, Any], rules: Rules, out: Reading) -> None:
    if str(count.get("reference_id") or "").startswith(ECHO_PREFIX):
        out.echoes += 1
        return
    if count.get("state") != IN_STOCK:
        return
    out.reports.append(f"{_what(count, rules)}: recounted to {count.get('quantity')} in Square "
                       f"(physical count {count['id']}{_by(count)}); not applied to the system of record: "
                       f"if Square is right, correct the stock there; the next push sets Square to its figure")


def _common(body: Mapping[str, Any], rules: Rules, quantity: Decimal | None) -> dict[str, Any] | None:
    if quantity is None or quantity <= 0:
        return None
    item = str(body.get("catalog_object_id") or "")
    common: dict[str, Any] = {"channel": rules.channel, "line": str(body["id"]), "item": rules.sku_of(item) or item,
                              "location": str(body.get("location_id") or ""), "quantity": quantity}
    occurred = _time(body.get("occurred_at"))
    if occurred is not None:
        common["occurred_at"] = occurred
    return common


def _what(body: Mapping[str, Any], rules: Rules) -> str:
    item = str(body.get("catalog_object_id"))
    sku = rules.sku_of(item)
    what = f"SKU {sku}" if sku else "catalog object"
    return f"{rules.channel}: {what} ({item}) at location {body.get('location_id')}"


def _by(body: Mapping[str, Any]) -> str:
    source = body.get("source") or {}
    who = source.get("name") or source.get("product")
    return f", by {who}" if who else ""



def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _later(current: datetime | None, value: Any) -> datetime | None:
    moment = _time(value)
    if moment is None or moment.tzinfo is None:
        return current
    return moment if current is None or moment > current else current
