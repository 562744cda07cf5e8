"""SCAPI orders (``GET /checkout/orders/v1/organizations/{organizationId}/orders``) -> stock changes.
Pure: no I/O.

An order's ``status`` says what its product lines mean for stock (../shared/specs/sfcc-oci/
orders-oas-v1-public.yaml, "Order Status"): ``created`` is not placed yet and ``failed`` never was
(B2C releases its reservations), so neither is a sale; ``new`` (placed) and ``completed`` are sales;
``cancelled`` gives the stock back ("the system releases the order's inventory reservations").
Every product line is keyed by order no + product line item id (``itemId``): an order read again
(every change to it, an export or payment status too, moves ``lastModified`` and brings it back
into the poll window) queues nothing new, and a cancelled order adds its returns once whatever
the bridge saw before (runtime/webhooks.by_status).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ...domain import MAX_CHANNEL_QUANTITY, Decrement
from ..runtime.classify import finite_decimal
from ..runtime.polling import Reading, parse_time
from ..runtime.webhooks import by_status

#: the OrderStatus enum of the orders OAS
STATUSES = ("created", "new", "completed", "cancelled", "failed")
SALE_STATUSES = ("new", "completed")
RESTOCK_STATUSES = ("cancelled",)



@dataclass(frozen=True)
class Rules:
    channel: str
    #: the channel location code (an OCI location id) the site's orders count at
    location: str
    #: SFCC product id -> SKU (None: not listed; the product id is kept so the dead letter names it)
    sku_of: Callable[[str], str | None]




def read(orders: Sequence[Mapping[str, Any]], rules: Rules) -> Reading:
    out = Reading()
    for order in orders:
        moment = parse_time(order.get("lastModified"))
        if moment is not None and (out.latest is None or moment > out.latest):
            out.latest = moment
        number = str(order.get("orderNo") or "")
        if not number:
            out.reports.append(f"{rules.channel}: an order without orderNo was skipped")
            continue
        sold = _lines(order, number, rules, out.reports)
        out.changes += by_status(sold, str(order.get("status")), SALE_STATUSES, RESTOCK_STATUSES, "cancel")
    return out


def _lines(order: Mapping[str, Any], number: str, rules: Rules, reports: list[str]) -> list[Decrement]:
    sold = []
    occurred = parse_time(order.get("creationDate"))
    for line in order.get("productItems") or []:
        if not isinstance(line, Mapping):
            continue
        product, line_id = str(line.get("productId") or ""), str(line.get("itemId") or "")
        quantity = _quantity(line.get("quantity"))
        if not product or not line_id or quantity is None:
            reports.append(f"{rules.channel}: order {number} line {line_id or '?'} ({product or 'no productId'}): "
                           f"quantity {line.get('quantity')!r} cannot be counted; not applied")
            continue
        if quantity == 0:
            continue  # a line reduced to nothing sold nothing
        common: dict[str, Any] = {"channel": rules.channel, "order": number, "line": line_id,
                                  "item": rules.sku_of(product) or product, "location": rules.location,
                                  "quantity": quantity}
        if occurred is not None:
            common["occurred_at"] = occurred
        sold.append(Decrement(**common))
    return sold


def _quantity(value: Any) -> Decimal | None:
    quantity = finite_decimal(value)
    return quantity if quantity is not None and 0 <= quantity <= MAX_CHANNEL_QUANTITY else None
