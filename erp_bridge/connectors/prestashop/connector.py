"""PrestaShop as a channel: ``stock_availables`` out, orders polled in (docs/connectors/prestashop.md).

What is PrestaShop's own, and all that is here:
- out: the ``stock_available`` of (id_product, id_product_attribute) in the shop is read
  (``display=full``) and PUT back whole with the new quantity: PrestaShop's PUT replaces the
  resource, so a partial body would blank or be refused. A quantity already equal is not written.
  There is no compare-and-set: the set is absolute, and one push per item is in flight (dispatcher);
- in: open-source PrestaShop has no webhooks, so orders are polled by ``date_upd`` on the runtime's
  PollWindow (cursor, overlap, seen line keys, status), their lines read from ``order_details``,
  and each order's ``current_state`` turned into decrements / returns (orders.py);
- its XML envelope and error body (webservice.py), and the shop's time zone (``PS_TIMEZONE``).
Sender, HTTP Basic with the key as username, ``on_status``, ``Retry-After`` and redaction are the runtime's.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta, tzinfo
from decimal import ROUND_FLOOR, Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ...domain import Delivered, Figure, Result
from ...errors import BridgeError, ConfigError, RejectedError, RetryableError
from ...mapping.binder import Binder
from ...mapping.compile import UnmappedError, compiled, convert
from ...mapping.lookups import LookupTable
from ...mapping.schema import SystemMapping
from ..base import Capability, Polled
from ..runtime.batch import until_down
from ..runtime.inbox import Inbox
from ..runtime.polling import PollWindow, WindowPolled
from ..runtime.sender import Reply, Sender
from . import orders, webservice

PAGE = 100  # orders / order_details per page (``limit=offset,100``)
MAX_PAGES = 50
IDS_PER_CALL = 50  # order ids in one ``filter[id_order]=[1|2|...]``
UNTIL = "9999-12-31 23:59:59"  # the open end of a date interval
MAX_QUANTITY = 2_147_483_647  # isInt
#: line keys are remembered longer than an order can be cancelled after it was placed
KEEP_SEEN_S = 400 * 86400.0
ORDER_FIELDS = "[id,current_state,date_upd,id_shop]"
DETAIL_FIELDS = "[id,id_order,product_id,product_attribute_id,product_quantity,product_reference]"
XML = {"Output-Format": "XML"}
Where = tuple[int, int, str]  # (id_product, id_product_attribute, id_shop)


class PrestaShopConnector(WindowPolled):
    capabilities = frozenset({Capability.PUSH_AVAILABILITY, Capability.POLL_CHANGES, Capability.READ_LISTED})

    def __init__(self, mapping: SystemMapping, sender: Sender, inbox: Inbox, binder: Binder,
                 clock: Callable[[], float] = time.time):
        self.name, self._mapping, self._sender = mapping.system, mapping, sender
        self._inbox, self._binder = inbox, binder
        self._base = str(mapping.connection.base_url).rstrip("/")
        polling = mapping.polling
        overlap = timedelta(seconds=polling.overlap_s if polling else 300)
        self._window = PollWindow(inbox, "orders", overlap, KEEP_SEEN_S, clock, seen_kind="line")
        self._rules = orders.Rules(
            mapping.system, binder.sku_of,
            tuple(polling.sale_statuses) if polling and polling.sale_statuses else orders.SALE_STATES,
            tuple(polling.restock_statuses) if polling and polling.restock_statuses else orders.RESTOCK_STATES,
            mapping.locations.map[0].code)
        self._zone: tzinfo | None = None
        self._wake: Callable[[], None] = lambda: None

    # -- availability out -----------------------------------------------------------------------
    def push_availability(self, figures: Sequence[Figure]) -> list[Result]:
        return list(until_down(figures, self._push_one))

    def _push_one(self, figure: Figure) -> Result:
        where = self._where(figure.item, figure.location)
        if isinstance(where, BridgeError):
            return where
        held = self._stock_available(where)
        if isinstance(held, BridgeError):
            return held
        quantity = self._quantity(figure)
        if isinstance(quantity, BridgeError):
            return quantity
        if held.get("quantity") == str(quantity):
            return Delivered("unchanged")
        return self._put(held, quantity, where)

    def _where(self, sku: str, location: str) -> Where | BridgeError:
        return locate(self._binder, sku, location)

    def _quantity(self, figure: Figure) -> int | BridgeError:
        return whole_units(self._mapping, figure, self._binder.file)

    def _stock_available(self, where: Where) -> dict[str, str] | BridgeError:
        product, attribute, shop = where
        params = {"filter[id_product]": f"[{product}]", "filter[id_product_attribute]": f"[{attribute}]",
                  "display": "full", "id_shop": shop}
        rows = self._list("stock_availables", "stock_available", params)
        if isinstance(rows, BridgeError):
            return rows
        mine = [r for r in rows if r.get("id_shop") == shop] if len(rows) > 1 else rows
        if len(mine) != 1:
            what = "no stock_available" if not mine else f"{len(mine)} stock_availables"
            return RejectedError(f"PrestaShop has {what} for product {product}, combination {attribute} in shop "
                                 f"{shop}: check the item code in {self._binder.file} (Catalog > Products in "
                                 "PrestaShop shows the ids) and the shop id in locations.map")
        return mine[0]

    def _put(self, held: dict[str, str], quantity: int, where: Where) -> Result:
        body = webservice.resource_body("stock_available", {**held, "quantity": str(quantity)})
        url = f"{self._base}/stock_availables/{held['id']}"
        reply = self._sender.call("PUT", url, body=body, params={"id_shop": where[2]}, what="PUT /stock_availables",
                                  headers={**XML, "Content-Type": "application/xml"})
        if isinstance(reply, BridgeError):
            return reply
        try:
            kept = webservice.resource(reply.content, "stock_available").get("quantity")
        except webservice.NotWebserviceXml as exc:
            return RetryableError(f"PrestaShop answered PUT /stock_availables/{held['id']} with {exc}")
        if kept != str(quantity):
            return RejectedError(f"PrestaShop kept quantity {kept} for stock_available {held['id']} (product "
                                 f"{where[0]}, combination {where[1]}), not {quantity}")
        return Delivered("set")

    def read_listed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decimal]:
        """What the shop shows now per (SKU, internal location), for reconciliation."""
        shown: dict[tuple[str, str], Decimal] = {}
        for sku, location in keys:
            where = self._where(sku, location)
            held = where if isinstance(where, BridgeError) else self._stock_available(where)
            if isinstance(held, RetryableError):
                raise held
            if not isinstance(held, BridgeError):
                shown[(sku, location)] = Decimal(held.get("quantity") or 0)
        return shown

    # -- sales in -------------------------------------------------------------------------------
    def poll_changes(self) -> Polled:
        zone = self._shop_zone()
        start = self._window.since()
        found = self._orders_since(orders.shop_time(start, zone))
        counted = [o for o in found if self._rules.counted(o.get("current_state", ""))]
        reading = orders.changes(counted, self._details([o["id"] for o in counted]), self._rules)
        return self._window.polled(reading.changes, orders.latest(found, zone), reading.reports)

    def _orders_since(self, since: str) -> list[dict[str, str]]:
        """Every order updated at or after ``since`` (shop time), oldest first. Each page starts at
        the last ``date_upd`` read and skips the orders read there (an offset would skip one
        whenever an order moves to the end, being updated while the pass reads)."""
        found: dict[str, dict[str, str]] = {}
        boundary, at_boundary = since, 0
        for _ in range(MAX_PAGES):
            size = at_boundary + PAGE
            page = self._must(self._list("orders", "order", {
                "display": ORDER_FIELDS, "filter[date_upd]": f"[{boundary},{UNTIL}]", "date": "1",
                "sort": "[date_upd_ASC,id_ASC]", "limit": f"0,{size}"}))
            found.update((o["id"], o) for o in page)
            if len(page) < size:
                break
            boundary = page[-1].get("date_upd", "")
            at_boundary = sum(1 for o in page if o.get("date_upd") == boundary)
        return list(found.values())  # after MAX_PAGES, the next pass goes on from the newest read

    def _details(self, order_ids: list[str]) -> dict[str, list[dict[str, str]]]:
        by_order: dict[str, list[dict[str, str]]] = {i: [] for i in order_ids}
        for start in range(0, len(order_ids), IDS_PER_CALL):
            chunk = "|".join(order_ids[start:start + IDS_PER_CALL])
            for offset in range(0, PAGE * MAX_PAGES, PAGE):
                page = self._must(self._list("order_details", "order_detail", {
                    "display": DETAIL_FIELDS, "filter[id_order]": f"[{chunk}]", "sort": "[id_ASC]",
                    "limit": f"{offset},{PAGE}"}))
                for line in page:
                    by_order.setdefault(line.get("id_order", ""), []).append(line)
                if len(page) < PAGE:
                    break
            else:
                raise RetryableError(f"PrestaShop: more than {PAGE * MAX_PAGES} order_details for orders {chunk}")
        return by_order

    def _shop_zone(self) -> tzinfo:
        """The shop's PS_TIMEZONE, read once: its dates are written in it."""
        if self._zone is None:
            rows = self._must(self._list("configurations", "configuration",
                                         {"display": "[name,value]", "filter[name]": "[PS_TIMEZONE]"}))
            name = next((r.get("value", "") for r in rows if r.get("name") == "PS_TIMEZONE"), "")
            try:
                self._zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"{self.name}: cannot read the shop's time zone (PS_TIMEZONE {name!r}); give the "
                                  "webservice key GET on configurations (Advanced Parameters > Webservice)") from None
        return self._zone

    def on_notice(self, wake: Callable[[], None]) -> None:
        self._wake = wake  # PrestaShop sends no notifications: only the interval wakes the poller

    # -- the webservice -------------------------------------------------------------------------
    def _list(self, plural: str, singular: str, params: Mapping[str, Any]) -> list[dict[str, str]] | BridgeError:
        reply = self._sender.call("GET", f"{self._base}/{plural}", params=params, headers=XML,
                                  what=f"GET /{plural}")
        if isinstance(reply, BridgeError):
            return reply
        return _listing(reply, plural, singular)

    @staticmethod
    def _must(result: list[dict[str, str]] | BridgeError) -> list[dict[str, str]]:
        if isinstance(result, BridgeError):
            raise result
        return result


def locate(binder: Binder, sku: str, location: str) -> Where | BridgeError:
    """(id_product, id_product_attribute, id_shop) of a SKU at an internal location."""
    try:
        code = binder.item_code(sku)
    except UnmappedError as exc:
        return RejectedError(f"PrestaShop: cannot map SKU {sku} ({binder.file}): {exc}")
    try:
        product, attribute = orders.split_code(code)
    except ValueError:
        return ConfigError(f"{binder.file}: the PrestaShop item code {code!r} of SKU {sku} must be <id_product> or "
                           "<id_product>:<id_product_attribute> (whole numbers)")
    shop = binder.location_code(location)
    if shop is None:
        return RejectedError(f"PrestaShop: location {location} is not in {binder.file} locations.map")
    return product, attribute, shop


def whole_units(mapping: SystemMapping, figure: Figure, file: str) -> int | BridgeError:
    """The figure in PrestaShop's units, rounded down to a whole number, never below 0."""
    rule = compiled(mapping).units(figure.item, None)
    units = convert(figure.quantity, rule, ROUND_FLOOR).to_integral_value(rounding=ROUND_FLOOR)
    if units > MAX_QUANTITY:
        return RejectedError(f"PrestaShop: {units} units of SKU {figure.item} do not fit its quantity field "
                             f"(at most {MAX_QUANTITY}); check the units in {file}")
    return max(int(units), 0)


def describe(mapping: SystemMapping, table: LookupTable | None, figures: Sequence[Figure]) -> str:
    """What ``mappings preview`` shows: the read and the PUT of each figure (the PUT carries every
    field the read returned; only the quantity is the bridge's)."""
    binder, base = Binder(mapping, table), str(mapping.connection.base_url).rstrip("/")
    out = []
    for figure in figures:
        where, units = locate(binder, figure.item, figure.location), whole_units(mapping, figure, binder.file)
        error = where if isinstance(where, BridgeError) else units if isinstance(units, BridgeError) else None
        if error is not None or isinstance(where, BridgeError):
            out.append(f"# {mapping.system} SKU {figure.item} at {figure.location}: {error}")
            continue
        product, attribute, shop = where
        out.append(f"# {mapping.system} availability, SKU {figure.item} at {figure.location}\n"
                   f"GET {base}/stock_availables?filter[id_product]=[{product}]&filter[id_product_attribute]="
                   f"[{attribute}]&display=full&id_shop={shop}\n"
                   f"PUT {base}/stock_availables/<id read>?id_shop={shop}  (Content-Type: application/xml)\n"
                   f"<prestashop><stock_available>...every field as read...<quantity>{units}</quantity>"
                   "...</stock_available></prestashop>")
    return "\n\n".join(out) + "\n"


def _listing(reply: Reply, plural: str, singular: str) -> list[dict[str, str]] | BridgeError:
    try:
        return webservice.listing(reply.content, plural, singular)
    except webservice.NotWebserviceXml as exc:
        return RetryableError(f"PrestaShop answered GET /{plural} with {exc}: a PHP notice or a proxy's page; "
                              "check the shop's error log")
