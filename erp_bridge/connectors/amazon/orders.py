"""Amazon orders (Orders API v0) -> the bridge's stock changes. Pure: no I/O.

An order comes back every time it changes (Pending -> Unshipped -> Shipped, or Canceled) and the
poll's overlap re-reads it again, so everything is keyed:

- an order in a sale status (default Pending, Unshipped, PartiallyShipped, Shipped,
  InvoiceUnconfirmed) is one decrement per order item, keyed by AmazonOrderId + OrderItemId: a
  Pending order read again as Shipped counts nothing twice. Once its lines are queued the order is
  remembered as ``order:<id>:sale``, so a re-read does not even fetch its items again;
- an order in a restock status (default Canceled) gives back only the lines counted before: an
  increment per line whose decrement key the poller has seen. A Pending order cancelled before the
  bridge ever read it counts nothing either way;
- orders Amazon fulfils (FulfillmentChannel AFN, FBA) leave Amazon's warehouse, not the
  merchant's: they are skipped; so are statuses that are neither (PendingAvailability pre-orders,
  Unfulfillable) until they change.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from ...domain import ChannelChange, Decrement, Increment
from ..runtime.polling import parse_time

SALE_STATUSES = ("Pending", "Unshipped", "PartiallyShipped", "Shipped", "InvoiceUnconfirmed")
RESTOCK_STATUSES = ("Canceled",)
#: Amazon's OrderStatus enum (ordersV0.json)
STATUSES = ("Pending", "Unshipped", "PartiallyShipped", "Shipped", "Canceled", "Unfulfillable",
            "InvoiceUnconfirmed", "PendingAvailability")
AMAZON_FULFILLED = "AFN"
Kind = Literal["sale", "restock"]


@dataclass(frozen=True)
class Rules:
    channel: str
    sale_statuses: tuple[str, ...] = SALE_STATUSES
    restock_statuses: tuple[str, ...] = RESTOCK_STATUSES

    def kind(self, order: Mapping[str, Any]) -> Kind | None:
        """What an order means for the merchant's stock now, or None (not the merchant's, not yet)."""
        if order.get("FulfillmentChannel") == AMAZON_FULFILLED or not order.get("AmazonOrderId"):
            return None  # Amazon's stock, or nothing to key the order by
        status = order.get("OrderStatus")
        if status in self.sale_statuses:
            return "sale"
        return "restock" if status in self.restock_statuses else None


def done_id(order: Mapping[str, Any], kind: Kind) -> str:
    """The seen id an order is remembered by once its lines of ``kind`` are queued."""
    return f"order:{order['AmazonOrderId']}:{kind}"


@dataclass
class Reading:
    """What one pass found: the changes, the ids to remember, lines not applied."""

    changes: list[ChannelChange] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)


def sales(order: Mapping[str, Any], items: Sequence[Mapping[str, Any]], rules: Rules) -> list[ChannelChange]:
    """One decrement per order item with a quantity (a line cancelled alone has QuantityOrdered 0)."""
    return [Decrement(**common) for common in _lines(order, items, rules, "sale")]


def restocks(order: Mapping[str, Any], items: Sequence[Mapping[str, Any]], rules: Rules,
             counted: Callable[[Sequence[str]], dict[str, Decimal]]) -> list[ChannelChange]:
    """An increment per line whose sale was counted, of the quantity counted: ``counted`` maps the
    decrement keys queued before to their quantities (a cancelled line may say QuantityOrdered 0)."""
    lines = {Decrement(**common).idempotency_key: common for common in _lines(order, items, rules, "restock")}
    known = counted(list(lines))
    return [Increment(reason="cancel", **{**common, "quantity": known[key]}) for key, common in lines.items()
            if key in known]


def quantity_ids(change: ChannelChange) -> list[str]:
    """The seen id that remembers how many a queued decrement counted (for its cancellation)."""
    return [f"qty:{change.idempotency_key}:{change.quantity}"] if isinstance(change, Decrement) else []


def quantity_candidates(key: str, upto: int) -> list[str]:
    return [f"qty:{key}:{n}" for n in range(1, upto + 1)]


def _lines(order: Mapping[str, Any], items: Sequence[Mapping[str, Any]], rules: Rules,
           kind: Kind) -> list[dict[str, Any]]:
    out = []
    for item in items:
        quantity = Decimal(int(item.get("QuantityOrdered") or 0))
        if (quantity <= 0 and kind == "sale") or not item.get("OrderItemId"):
            continue  # a line cancelled alone, or nothing to key it by
        common: dict[str, Any] = {
            "channel": rules.channel, "order": str(order["AmazonOrderId"]), "line": str(item["OrderItemId"]),
            # no SellerSKU (rare): the ASIN is kept so the dead letter names the listing
            "item": str(item.get("SellerSKU") or f"asin:{item.get('ASIN')}"),
            "location": str(order.get("MarketplaceId") or ""), "quantity": max(quantity, Decimal(1))}
        when = parse_time(order.get("PurchaseDate"))
        if when is not None:
            common["occurred_at"] = when
        out.append(common)
    return out
