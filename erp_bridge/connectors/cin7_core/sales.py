"""Cin7 Core (formerly DEAR Inventory) sales -> the bridge's stock changes. Pure: no I/O.

``GET saleList`` says which sales changed (``Updated``) and their statuses; ``GET sale?ID=`` gives
the lines. A sale's order lines have no line id, so a sale counts once per product: its order
lines of one ``ProductID`` are summed, keyed ``SaleID`` + ``ProductID``. Statuses (the blueprint's
"Available Order Statuses"):

- an order ``AUTHORISED`` (or ``AUTH_NO_ALLOC``, ``FULFILLED``, ``CLOSED``) sold its lines: one
  decrement per product;
- a ``VOIDED`` sale gives them back: the decrements *and* their cancellations, both keyed, so it
  nets to zero whether or not the bridge saw it authorised before;
- an ``AUTHORISED`` credit note restocks its ``Restock`` lines: one increment each, keyed by the
  credit note's ``TaskID`` and the product;
- anything else (a quote, a draft order) has sold nothing yet.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ...domain import Decrement, Increment
from ..runtime.classify import finite_decimal
from ..runtime.polling import Reading
from ..runtime.webhooks import by_status

SOLD = ("AUTHORISED", "AUTH_NO_ALLOC", "FULFILLED", "CLOSED")
VOIDED = "VOIDED"


@dataclass(frozen=True)
class Rules:
    channel: str
    #: Cin7 SKU -> internal SKU (None: unknown; the Cin7 SKU is kept so the dead letter names it)
    sku_of: Callable[[str], str | None]




def updated(summary: Mapping[str, Any]) -> datetime | None:
    """A sale's ``Updated`` (UTC, with or without the ``Z``)."""
    return parse_utc(summary.get("Updated"))


def parse_utc(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # the API's dates are UTC


def worth_reading(summary: Mapping[str, Any]) -> bool:
    """Whether a listed sale can mean a stock change (its detail costs a call of the 60 a minute)."""
    return (summary.get("OrderStatus") in SOLD or VOIDED in (summary.get("Status"), summary.get("OrderStatus"))
            or summary.get("CreditNoteStatus") == "AUTHORISED")


def marker(summary: Mapping[str, Any]) -> str:
    """This version of the sale: read once, then skipped until Cin7 updates it again."""
    return f"sale:{summary.get('SaleID')}@{summary.get('Updated')}"


def read(sale: Mapping[str, Any], rules: Rules) -> Reading:
    out = Reading()
    if sale.get("ServiceOnly") is True or not sale.get("ID"):
        return out
    given = sale.get("Order")
    order: Mapping[str, Any] = given if isinstance(given, dict) else {}
    status = VOIDED if VOIDED in (sale.get("Status"), order.get("Status")) else str(order.get("Status") or "")
    sold = _sold(sale, order, rules, out)
    out.changes += by_status(sold, status, SOLD, (VOIDED,))
    for note in sale.get("CreditNotes") or []:
        if isinstance(note, dict) and note.get("Status") == "AUTHORISED" and status != VOIDED:
            out.changes += _restocked(sale, note, rules, out)
    return out


def _sold(sale: Mapping[str, Any], order: Mapping[str, Any], rules: Rules, out: Reading) -> list[Decrement]:
    totals: dict[str, Decimal] = {}
    skus: dict[str, str] = {}
    for line in order.get("Lines") or []:
        product, quantity = _product(line), finite_decimal(line.get("Quantity"))
        if product is None or quantity is None or quantity <= 0:
            out.reports.append(f"{rules.channel}: sale {sale['ID']}: order line {line.get('SKU')!r} without a product "
                               f"or a positive Quantity ({line.get('Quantity')!r}); not applied")
            continue
        totals[product] = totals.get(product, Decimal(0)) + quantity
        skus[product] = str(line.get("SKU") or product)
    location = str(sale.get("Location") or "")
    return [Decrement(**_common(sale, rules, product, skus[product], location, quantity))
            for product, quantity in totals.items()]


def _restocked(sale: Mapping[str, Any], note: Mapping[str, Any], rules: Rules, out: Reading) -> list[Increment]:
    back: list[Increment] = []
    for line in note.get("Restock") or []:
        product, quantity = _product(line), finite_decimal(line.get("Quantity"))
        if product is None or quantity is None or quantity <= 0:
            out.reports.append(f"{rules.channel}: sale {sale['ID']}: credit note {note.get('TaskID')} restock line "
                               f"{line.get('SKU')!r} unreadable; not applied")
            continue
        common = _common(sale, rules, product, str(line.get("SKU") or product),
                         str(line.get("Location") or sale.get("Location") or ""), quantity)
        back.append(Increment(**{**common, "line": f"{note.get('TaskID')}/{product}"}, reason="return"))
    return back


def _common(sale: Mapping[str, Any], rules: Rules, product: str, sku: str, location: str,
            quantity: Decimal) -> dict[str, Any]:
    common: dict[str, Any] = {"channel": rules.channel, "order": str(sale["ID"]), "line": product,
                              "item": rules.sku_of(sku) or sku, "location": location, "quantity": quantity}
    moment = parse_utc(sale.get("LastModifiedOn"))
    if moment is not None:
        common["occurred_at"] = moment
    return common


def _product(line: Any) -> str | None:
    if not isinstance(line, dict):
        return None
    product = line.get("ProductID") or line.get("SKU")
    return str(product).lower() if product else None  # Cin7 writes GUIDs in either case

