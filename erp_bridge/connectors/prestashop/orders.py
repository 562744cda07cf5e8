"""PrestaShop orders -> stock changes, and the shop's clock. Pure: no I/O.

An order's ``current_state`` (an order state id) says what its lines mean. A sale state: one
decrement per ``order_detail``, keyed ``prestashop:<order id>:<order_detail id>``. A restock state
(Canceled): the decrements *and* one return each (runtime.webhooks.by_status), so a cancelled order
nets to zero whether or not the bridge saw it while it still counted, and whatever order the passes
read its states in. The return's reason is always ``cancel``: a second restock state later (Canceled,
then Refunded) has the same key and gives nothing back twice.

PrestaShop writes ``date_upd`` in the shop's own time zone (its ``PS_TIMEZONE`` setting) without
saying which, as ``YYYY-MM-DD HH:MM:SS``; the poller's cursor is UTC, so times are converted here.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal

from ...domain import Decrement
from ..runtime.polling import Reading
from ..runtime.webhooks import by_status

#: PrestaShop's default order states (Orders > Statuses; a shop may add its own): 1 awaiting check
#: payment, 2 payment accepted, 3 processing in progress, 4 shipped, 5 delivered, 9 on backorder
#: (paid), 10 awaiting bank wire, 11 remote payment accepted, 12 on backorder (not paid), 13 awaiting
#: cash on delivery: PrestaShop has taken the stock in all of them
SALE_STATES = ("1", "2", "3", "4", "5", "9", "10", "11", "12", "13")
#: 6 canceled: PrestaShop puts the stock back (7 refunded and 8 payment error do not by default)
RESTOCK_STATES = ("6",)
SHOP_TIME = "%Y-%m-%d %H:%M:%S"



@dataclass(frozen=True)
class Rules:
    channel: str
    #: item code (``<id_product>`` or ``<id_product>:<id_product_attribute>``) -> SKU, None: unknown
    sku_of: Callable[[str], str | None]
    sale: tuple[str, ...] = SALE_STATES
    restock: tuple[str, ...] = RESTOCK_STATES
    #: the location code (a shop id) of an order that names no id_shop
    default_location: str = "1"

    def counted(self, state: str) -> bool:
        return state in self.sale or state in self.restock


class BadOrder(ValueError):
    """An order or line PrestaShop sent that cannot be read; the message names the field."""


def item_code(product: str, attribute: str) -> str:
    """The mapping's item code of a product (``12``) or one of its combinations (``12:34``)."""
    return product if attribute in ("", "0") else f"{product}:{attribute}"


def split_code(code: str) -> tuple[int, int]:
    """(id_product, id_product_attribute) of an item code; ValueError when it is not one."""
    product, _, attribute = code.partition(":")
    ids = (int(product), int(attribute or 0))
    if ids[0] <= 0 or ids[1] < 0 or code.strip() != code:
        raise ValueError(code)
    return ids




def changes(orders: Sequence[Mapping[str, str]], details: Mapping[str, Sequence[Mapping[str, str]]],
            rules: Rules) -> Reading:
    """What each order's current state means for its lines (``details`` by order id)."""
    out = Reading()
    for order in orders:
        state = order.get("current_state", "")
        if not rules.counted(state):
            continue
        try:
            sold = [_line(order, d, rules) for d in details.get(order["id"], [])]
        except BadOrder as exc:
            out.reports.append(f"{rules.channel}: {exc}; order not applied, correct it in PrestaShop")
            continue
        out.changes += by_status([d for d in sold if d.quantity > 0], state, rules.sale, rules.restock, "cancel")
    return out


def _line(order: Mapping[str, str], detail: Mapping[str, str], rules: Rules) -> Decrement:
    code = item_code(detail.get("product_id", ""), detail.get("product_attribute_id", ""))
    try:
        quantity = int(detail.get("product_quantity", ""))
    except ValueError:
        raise BadOrder(f"order {order['id']}, order_detail {detail.get('id')}: product_quantity "
                       f"{detail.get('product_quantity')!r} is not a whole number") from None
    if quantity < 0:
        raise BadOrder(f"order {order['id']}, order_detail {detail.get('id')}: product_quantity {quantity} < 0")
    return Decrement(channel=rules.channel, order=order["id"], line=detail["id"], item=rules.sku_of(code) or code,
                     location=order.get("id_shop") or rules.default_location, quantity=Decimal(quantity))


def shop_time(moment: datetime, zone: tzinfo) -> str:
    """A UTC moment as the shop writes its dates (its zone, to the second, rounded down)."""
    return moment.astimezone(zone).strftime(SHOP_TIME)


def from_shop_time(value: str, zone: tzinfo) -> datetime | None:
    """A shop date as an aware datetime; None for an empty or zero date (``0000-00-00 00:00:00``)."""
    try:
        return datetime.strptime(value, SHOP_TIME).replace(tzinfo=zone)
    except ValueError:
        return None


def latest(orders: Sequence[Mapping[str, str]], zone: tzinfo) -> datetime | None:
    moments = [m for o in orders if (m := from_shop_time(o.get("date_upd", ""), zone)) is not None]
    return max(moments, default=None)
