"""Lightspeed Retail (R-Series) sales -> the bridge's stock changes. Pure: no I/O.

A completed ``Sale`` carries its ``SaleLines``; each line sold ``unitQuantity`` of ``itemID`` at the
sale's ``shopID``. A line with a negative ``unitQuantity`` is an item taken back (a return or
refund rung up at the till): one increment. Keys are the sale and the line (``saleID`` +
``saleLineID``), so a sale read again (the poll's overlap, a crash before the cursor moved) is the
same queue entry. A voided sale nets to zero: its decrements *and* their cancellations are keyed,
whichever of them the bridge saw before.

Lightspeed's JSON gives a one-element list as a bare object and numbers as strings; both are
read here, nowhere else.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ...domain import ChannelChange, Decrement, Increment
from ..runtime.classify import finite_decimal
from ..runtime.polling import Reading, parse_time


@dataclass(frozen=True)
class Rules:
    channel: str
    #: Lightspeed itemID -> SKU (None: unknown; the id is kept so the dead letter names it)
    sku_of: Callable[[str], str | None]




def listed(value: Any) -> list[dict[str, Any]]:
    """A Lightspeed collection: absent, one object, or a list of objects."""
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def read(sales: list[dict[str, Any]], rules: Rules) -> Reading:
    out = Reading()
    for sale in sales:
        moment = parse_time(sale.get("timeStamp"))
        if moment is not None and (out.latest is None or moment > out.latest):
            out.latest = moment
        if _flag(sale.get("completed")) and sale.get("saleID"):
            _sale(sale, rules, out)
    return out


def _sale(sale: Mapping[str, Any], rules: Rules, out: Reading) -> None:
    voided = _flag(sale.get("voided"))
    when = parse_time(sale.get("completeTime")) or parse_time(sale.get("timeStamp"))
    for line in listed((sale.get("SaleLines") or {}).get("SaleLine")):
        quantity = finite_decimal(line.get("unitQuantity"))
        item = str(line.get("itemID") or "")
        where = f"sale {sale['saleID']} line {line.get('saleLineID')}"
        if quantity is None or not line.get("saleLineID"):
            out.reports.append(f"{rules.channel}: {where}: unreadable unitQuantity {line.get('unitQuantity')!r} "
                               f"or no saleLineID; not applied")
            continue
        if quantity == 0 or item in ("", "0"):
            continue  # a note or a miscellaneous charge: no item, no stock moved
        common: dict[str, Any] = {
            "channel": rules.channel, "order": str(sale["saleID"]), "line": str(line["saleLineID"]),
            "item": rules.sku_of(item) or item, "location": str(line.get("shopID") or sale.get("shopID") or ""),
            "quantity": abs(quantity)}
        if when is not None:
            common["occurred_at"] = when
        out.changes.extend(_line_changes(common, quantity, voided))


def _line_changes(common: dict[str, Any], quantity: Decimal, voided: bool) -> list[ChannelChange]:
    if quantity < 0:  # taken back: comes into stock; a voided return gives it back again
        back = Increment(**common, reason="return")
        return [back, Decrement(**{**common, "line": f"{common['line']}/void"})] if voided else [back]
    sold = Decrement(**common)
    return [sold, Increment(**common, reason="cancel")] if voided else [sold]


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"

