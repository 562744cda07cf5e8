"""Lightspeed Retail (R-Series) as a channel: quantity on hand per shop out, till sales in.

Out: an item's stock per shop lives in its ``ItemShops`` (one ``ItemShop`` per shop, with its own
``itemShopID``; shopID 0 is the all-shops summary and is never written). The mapping's request
says which item and shop a figure goes to and its ``qoh`` (an integer: rounded down, never stock
that is not there); the connector reads the item's ItemShops once per item (``GET
Item/{itemID}.json?load_relations=["ItemShops"]``), skips shops already right, and sets the rest
in one ``PUT Item/{itemID}.json`` with ``ItemShops.ItemShop[{itemShopID, qoh}]``. qoh is absolute,
so a retried PUT sets the same figure again: harmless.

In: completed sales polled by ``timeStamp`` (see sales.py) on the one durable poller
(runtime/polling.PollWindow under sync/channel_poll.ChannelPoller): R-Series has no webhooks.
Pages follow the ``next`` URL in the answer's ``@attributes``.

Rate: a leaky bucket the sender's pacer keeps from overflowing, corrected from every answer's
``X-LS-API-Bucket-Level`` and ``X-LS-API-Drip-Rate`` (runtime/pacing.LeakyBucket).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import requests

from ...domain import Delivered, Figure, Result
from ...errors import BridgeError, ConfigError, RejectedError, RetryableError
from ...mapping.binder import Binder
from ...mapping.compile import UnmappedError
from ...mapping.engine import build_requests
from ...mapping.schema import SystemMapping
from ..base import Capability, Polled
from ..runtime.batch import not_attempted
from ..runtime.inbox import Inbox
from ..runtime.polling import PollWindow, WindowPolled
from ..runtime.sender import Reply, Sender
from . import sales

PAGE = 100  # R-Series V3 returns at most 100 records per page
MAX_PAGES = 20  # per pass; the rest comes next pass (the cursor is the newest sale read)
#: re-read this much before the cursor: a sale saved a moment late with an earlier timeStamp
OVERLAP = timedelta(minutes=5)
KEEP_SEEN_S = 7 * 86400.0
ITEM_PATH = re.compile(r"/Item/([^/?]+)\.json$")


@dataclass(frozen=True)
class Row:
    index: int
    figure: Figure
    item_id: str
    shop_id: str
    qoh: int


class LightspeedRConnector(WindowPolled):
    capabilities = frozenset({Capability.PUSH_AVAILABILITY, Capability.POLL_CHANGES})

    def __init__(self, mapping: SystemMapping, sender: Sender, inbox: Inbox, *, binder: Binder,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.name, self._mapping, self._sender, self._inbox = mapping.system, mapping, sender, inbox
        self._binder, self._clock = binder, clock
        self._base = str(mapping.connection.base_url).rstrip("/")
        self._window = PollWindow(inbox, "sales", OVERLAP, KEEP_SEEN_S, lambda: clock().timestamp())
        self._rules = sales.Rules(self.name, binder.sku_of)

    # -- availability out -----------------------------------------------------------------------

    def push_availability(self, figures: Sequence[Figure]) -> list[Result]:
        outcomes: list[Result | None] = [None] * len(figures)
        rows = [r for r in (self._row(i, f, outcomes) for i, f in enumerate(figures)) if r is not None]
        by_item: dict[str, list[Row]] = {}
        for row in rows:
            by_item.setdefault(row.item_id, []).append(row)
        groups = list(by_item.items())
        for n, (item_id, group) in enumerate(groups):
            down = self._push_item(item_id, group, outcomes)
            if down is not None:  # throttled or down: the other items would fare the same
                for later in (r for _, rest in groups[n + 1:] for r in rest):
                    outcomes[later.index] = not_attempted(down)
                break
        return [o if o is not None else RetryableError("not pushed in this attempt") for o in outcomes]

    def _row(self, index: int, figure: Figure, outcomes: list[Result | None]) -> Row | None:
        whole = replace(figure, quantity=max(Decimal(0), figure.quantity.to_integral_value(ROUND_FLOOR)))
        try:
            request = build_requests(whole, self._mapping, self._tables(), now=self._clock(), new_id=lambda: "")[0]
        except UnmappedError as exc:
            outcomes[index] = RejectedError(f"Lightspeed: cannot map SKU {figure.item} at {figure.location}: {exc}")
            return None
        item_id, shop = _target(self.name, request.url, request.body)
        return Row(index, figure, item_id, str(shop["shopID"]), int(Decimal(str(shop["qoh"]))))

    def _push_item(self, item_id: str, rows: list[Row], outcomes: list[Result | None]) -> RetryableError | None:
        url = f"{self._base}/Item/{item_id}.json"
        reply = self._sender.call("GET", url, params={"load_relations": '["ItemShops"]'}, what=f"GET Item {item_id}")
        if isinstance(reply, BridgeError):
            return _fail(rows, _missing_item(reply, item_id), outcomes)
        held = {str(s.get("shopID")): s for s in sales.listed(_item_shops(reply))}
        lines: dict[str, dict[str, Any]] = {}
        for row in rows:
            outcome = self._line(row, held.get(row.shop_id), lines)
            if outcome is not None:
                outcomes[row.index] = outcome
        todo = [r for r in rows if outcomes[r.index] is None]
        if not todo:
            return None
        sent = self._sender.call("PUT", url, body={"ItemShops": {"ItemShop": list(lines.values())}},
                                 what=f"PUT Item {item_id} (ItemShops)")
        if isinstance(sent, BridgeError):
            return _fail(todo, sent, outcomes)
        for row in todo:
            outcomes[row.index] = Delivered("qoh set")
        return None

    def _line(self, row: Row, shop: dict[str, Any] | None, lines: dict[str, dict[str, Any]]) -> Result | None:
        if row.shop_id == "0":
            return ConfigError(f"{self.name}: shopID 0 is Lightspeed's all-shops summary, not a shop: map the location "
                               f"{row.figure.location} to a real shopID")
        if shop is None or not shop.get("itemShopID"):
            return RejectedError(f"Lightspeed item {row.item_id} (SKU {row.figure.item}) has no ItemShop for shop "
                                 f"{row.shop_id}: check the shop id in locations.map, or stock the item at that shop")
        if row.shop_id not in lines and _number(shop.get("qoh")) == row.qoh:
            return Delivered("unchanged")
        lines[row.shop_id] = {"itemShopID": str(shop["itemShopID"]), "qoh": row.qoh}
        return None

    def _tables(self) -> dict | None:
        return {self.name: self._binder.table} if self._binder.table else None

    # -- sales in -------------------------------------------------------------------------------

    def poll_changes(self) -> Polled:
        start = self._window.since()
        params = {"completed": "true", "timeStamp": f">,{_ls_time(start)}", "sort": "timeStamp",
                  "load_relations": '["SaleLines"]', "limit": PAGE}
        found: list[dict[str, Any]] = []
        url: str | None = f"{self._base}/Sale.json"
        for _ in range(MAX_PAGES):
            if url is None:
                break
            reply = self._sender.call("GET", url, params=params, what="GET Sale (completed sales)")
            if isinstance(reply, BridgeError):
                raise reply
            body = reply.body if isinstance(reply.body, dict) else {}
            found += sales.listed(body.get("Sale"))
            url, params = _next(body), {}  # the next URL carries the query and its cursor itself
        reading = sales.read(found, self._rules)
        return self._window.polled(reading.changes, reading.latest, reading.reports)

    def on_notice(self, wake: Callable[[], None]) -> None:
        """R-Series sends no notifications: the poller runs on its interval alone."""


def _target(system: str, url: str, body: Any) -> tuple[str, dict[str, Any]]:
    """(itemID, the ItemShop line) from the request the mapping built; anything else is a mapping error."""
    match = ITEM_PATH.search(url.split("?")[0])
    try:
        shop = sales.listed(body["ItemShops"]["ItemShop"])[0]
        assert match is not None and "shopID" in shop and "qoh" in shop
    except (KeyError, TypeError, IndexError, AssertionError):
        raise ConfigError(f"{system}: the availability request must be PUT /Item/{{item_code}}.json with body "
                          "ItemShops: {ItemShop: [{shopID: location_code, qoh: quantity}]} "
                          "(see mappings/lightspeed_r.yaml)") from None
    return match.group(1), shop


def _item_shops(reply: Reply) -> Any:
    item = reply.body.get("Item") if isinstance(reply.body, dict) else None
    return ((item or {}).get("ItemShops") or {}).get("ItemShop") if isinstance(item, dict) else None


def _missing_item(error: BridgeError, item_id: str) -> BridgeError:
    if getattr(error, "status", None) == 404:
        return RejectedError(f"Lightspeed has no item {item_id} (HTTP 404): fix the itemID in the item table "
                             f"or the mapping's items section")
    return error


def _fail(rows: list[Row], error: BridgeError, outcomes: list[Result | None]) -> RetryableError | None:
    for row in rows:
        outcomes[row.index] = error
    return error if isinstance(error, RetryableError) else None


def _next(body: dict[str, Any]) -> str | None:
    attributes = body.get("@attributes")
    link = attributes.get("next") if isinstance(attributes, dict) else None
    return link if isinstance(link, str) and link.startswith(("http://", "https://")) else None


def _ls_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _number(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def lightspeed_message(response: requests.Response) -> str | None:
    """R-Series' error envelope: ``{"httpCode", "httpMessage", "message", "errorClass"}``."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not body.get("message"):
        return None
    name = body.get("httpMessage") or body.get("httpCode")
    return f"{name}: {body['message']}" if name else str(body["message"])
