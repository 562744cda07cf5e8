"""Magento orders and credit memos -> the bridge's stock changes. Pure: no I/O.

What is Magento's own here:
- **times** (``created_at``, ``updated_at``) are ``YYYY-MM-DD HH:MM:SS`` with no zone: Magento stores
  and answers them in UTC (the admin shows them in the store's zone, the API does not), and a
  ``searchCriteria`` filter value is compared in that same form;
- **which lines hold stock**: a configurable product is ordered as a parent line (the configurable)
  plus a child line (the simple product, ``parent_item_id`` = the parent's ``item_id``), both with
  the simple's SKU and quantity; a bundle is a parent plus one child per option. Only lines without
  children are counted, so the simple product is decremented once, not twice. Magento records a
  configurable's cancel and refund on the parent line, so a child takes them from its parent;
- **what counts as a sale**: Magento reserves salable quantity when an order is placed, whatever
  its state, and gives it back only when the order is cancelled. So every state but ``canceled``
  counts (``closed`` too: a closed order was sold, then refunded); ``qty_canceled`` always goes
  back to stock (one increment per line, keyed ``:cancel``: an order is cancelled once);
- **refunds** go back to stock only when the merchant ticks "Return to Stock" on the credit memo
  (or the store returns them automatically), which the REST API does not say: they count as
  returns only when the mapping lists ``refunded`` in ``webhooks.restock_statuses``; then each
  credit memo line is one increment keyed by the credit memo, so later refunds add up exactly once.

Keys: ``magento:<order entity_id>:<item_id>`` for the sale; ``...:cancel`` for the cancelled
quantity; ``...:refund:<credit memo id>`` per credit memo. An order placed before the bridge started
polling is already in the system of record's stock: its sale is not counted again, its cancels and
refunds are.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ...domain import ChannelChange, Decrement, Increment, make_key
from ..runtime import polling

#: every state but canceled holds a reservation (Magento order states; custom statuses map onto them)
SALE_STATES = ("new", "pending", "pending_payment", "payment_review", "processing", "holded", "complete", "closed")
RESTOCK_STATES = ("canceled",)
#: a pseudo status for webhooks.restock_statuses: credit memo lines go back to stock
REFUNDED = "refunded"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"



@dataclass(frozen=True)
class Rules:
    channel: str
    #: the channel location code orders count at (Magento picks a source only when it ships)
    location: str
    #: a Magento SKU -> the mapping's SKU (None: unknown; the Magento SKU is kept so it dead-letters)
    sku_of: Callable[[str], str | None]
    sale: tuple[str, ...] = SALE_STATES
    restock: tuple[str, ...] = RESTOCK_STATES
    #: orders created before this moment are in the system of record's stock already
    started: datetime | None = None

    @property
    def refunds_restock(self) -> bool:
        return REFUNDED in self.restock


@dataclass(frozen=True)
class Line:
    item_id: str
    sku: str
    ordered: Decimal
    canceled: Decimal
    refunded: Decimal


@dataclass
class Reading(polling.Reading):
    #: entity_ids of the orders with refunded lines (their credit memos are read when refunds restock)
    refunded: list[str] = field(default_factory=list)


def magento_time(value: Any) -> datetime | None:
    """A Magento time (UTC without a zone), or None when it is not one."""
    try:
        return datetime.strptime(str(value), TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def as_magento_time(moment: datetime) -> str:
    """``moment`` as a filter value: UTC, whole seconds (floored, so ``gteq`` never skips one)."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def read(orders: Iterable[Mapping[str, Any]], rules: Rules) -> Reading:
    out = Reading()
    for order in orders:
        try:
            _order(order, rules, out)
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            out.reports.append(f"{rules.channel}: order {order.get('increment_id') or order.get('entity_id')!r} "
                               f"is malformed ({exc!r}); not applied: check it in Magento's admin")
    return out


def _order(order: Mapping[str, Any], rules: Rules, out: Reading) -> None:
    order_id = str(int(order["entity_id"]))
    states = {str(order.get("state") or ""), str(order.get("status") or "")}
    restock, sale = bool(states & set(rules.restock)), bool(states & set(rules.sale))
    if not (sale or restock):
        return  # a custom status the mapping does not count: nothing yet
    lines = counted_lines(order["items"])
    created = magento_time(order.get("created_at"))
    sold_before = rules.started is not None and created is not None and created < rules.started
    changes: list[ChannelChange] = []  # the whole order or nothing of it (a malformed line is reported)
    for line in lines:
        common = {"channel": rules.channel, "order": order_id, "line": line.item_id,
                  "item": rules.sku_of(line.sku) or line.sku, "location": rules.location}
        if line.ordered > 0 and not sold_before:
            changes.append(Decrement(quantity=line.ordered, **common))
        canceled = min(line.canceled or (line.ordered if restock else Decimal(0)), line.ordered)
        if canceled > 0:
            changes.append(Increment(quantity=canceled, reason="cancel", **common))
    out.changes += changes
    if any(line.refunded > 0 for line in lines):
        out.refunded.append(order_id)


def counted_lines(items: Sequence[Mapping[str, Any]]) -> list[Line]:
    """The order's lines that hold stock: those without children (see the module's docstring)."""
    by_id = {str(i["item_id"]): i for i in items}
    parents = {str(i["parent_item_id"]) for i in items if i.get("parent_item_id")}
    lines = []
    for item_id, item in by_id.items():
        if item_id in parents:
            continue
        parent = by_id.get(str(item.get("parent_item_id") or ""))
        carrier = parent if parent is not None and parent.get("product_type") == "configurable" else None
        lines.append(Line(item_id, str(item["sku"]), _qty(item, "qty_ordered"),
                          max(_qty(item, "qty_canceled"), _qty(carrier, "qty_canceled")),
                          max(_qty(item, "qty_refunded"), _qty(carrier, "qty_refunded"))))
    return lines


def refunds(order: Mapping[str, Any], memos: Sequence[Mapping[str, Any]], rules: Rules, out: Reading) -> None:
    """One increment per credit memo and counted line (a configurable's parent line is the child's)."""
    counted = {line.item_id: line for line in counted_lines(order["items"])}
    child_of = {str(i["parent_item_id"]): str(i["item_id"]) for i in order["items"] if i.get("parent_item_id")}
    order_id = str(int(order["entity_id"]))
    for memo in memos:
        try:
            _memo(memo, order_id, counted, child_of, rules, out)
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            out.reports.append(f"{rules.channel}: credit memo {memo.get('entity_id')!r} of order {order_id} is "
                               f"malformed ({exc!r}); not applied: check it in Magento's admin")


def _memo(memo: Mapping[str, Any], order_id: str, counted: Mapping[str, Line], child_of: Mapping[str, str],
          rules: Rules, out: Reading) -> None:
    memo_id = str(int(memo["entity_id"]))
    per_line: dict[str, Decimal] = {}
    for entry in memo.get("items") or []:
        item_id = str(entry.get("order_item_id"))
        item_id = item_id if item_id in counted else child_of.get(item_id, item_id)
        if item_id in counted:  # the parent and its child may both be listed: once
            per_line[item_id] = max(per_line.get(item_id, Decimal(0)), _qty(entry, "qty"))
    for item_id, qty in per_line.items():
        if qty > 0:
            sku = counted[item_id].sku
            out.changes.append(Increment(channel=rules.channel, order=order_id, line=item_id, reason="refund",
                                         item=rules.sku_of(sku) or sku, location=rules.location, quantity=qty,
                                         idempotency_key=make_key(rules.channel, order_id, item_id, "refund", memo_id)))


def latest(orders: Iterable[Mapping[str, Any]]) -> datetime | None:
    times = [t for t in (magento_time(o.get("updated_at")) for o in orders) if t is not None]
    return max(times, default=None)


def _qty(item: Mapping[str, Any] | None, name: str) -> Decimal:
    if item is None or item.get(name) is None:
        return Decimal(0)
    value = Decimal(str(item[name]))
    if not value.is_finite():
        raise ValueError(f"{name} is {item[name]!r}")
    # Magento answers quantities as floats (2.0): a whole one is passed on as a whole number
    return value.to_integral_value() if value == value.to_integral_value() else value
