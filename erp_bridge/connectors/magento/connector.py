"""Magento 2 / Adobe Commerce as a channel: availability out per source, sales in by polling orders.

Out (docs/connectors/magento.md):
- Multi-Source Inventory: ``POST /V1/inventory/source-items`` with ``{sku, source_code, quantity,
  status}`` per (SKU, source), status 1 when the quantity is above 0. A set is absolute (no
  compare-and-set, no idempotency key), so a resend is harmless and the dispatcher keeps one push per
  item in flight. Magento validates the whole call and saves none of it when one item is refused
  (400 ``Validation Failed`` with one ``errors[]`` entry per problem): a refused batch is sent again
  item by item, so the bad item dead-letters with Magento's message and the others go through. At
  most 20 items a call: the default "Input List Limit" when the store enables web API input limits;
- single-source shops without MSI (``writes.single_source``): ``PUT
  /V1/products/{sku}/stockItems/{itemId}`` with ``{stockItem: {qty, is_in_stock}}``; the item id
  comes from ``GET /V1/stockItems/{sku}`` once per SKU (it never changes).
Quantities are whole numbers (rounded down: never show stock that is not there) unless the
mapping's ``quantity_policy.integer`` is false (decimal-quantity products).

In: orders.py says what an order means; this module reads them by ``updated_at`` on the runtime's
PollWindow (cursor with overlap, seen keys, status), in bounded pages.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any
from urllib.parse import quote

import requests

from ...domain import Delivered, Figure, Result
from ...errors import BridgeError, ConfigError, RejectedError, RetryableError
from ...mapping.binder import Binder
from ...mapping.compile import UnmappedError
from ...mapping.engine import build_requests
from ...mapping.schema import SystemMapping
from ...mapping.wire import HttpRequest
from ..base import Capability, Polled
from ..runtime.batch import not_attempted, until_down
from ..runtime.classify import json_or_none
from ..runtime.inbox import Inbox
from ..runtime.polling import PollWindow, WindowPolled, parse_time, rfc3339
from ..runtime.sender import Sender
from . import orders as magento_orders
from .search import criteria

SOURCE_ITEMS = "/V1/inventory/source-items"
#: Magento's default "Input List Limit" (web API input limits, when the store enables them)
MAX_SOURCE_ITEMS = 20
#: orders per page; Magento's default "Maximum Page Size" is 300 when input limits are on
PAGE_SIZE = 100
#: pages per pass; the rest is read by the next pass, which is started at once
MAX_PAGES = 10
#: ... while the pages are still the overlap read again (or one second of a mass action): up to this many
HARD_MAX_PAGES = 100
#: re-read this much before the cursor: an order saved late with an earlier updated_at is still read
OVERLAP = timedelta(minutes=5)
#: an order is updated for months (shipping, credit memos): its sale must not be counted again then
KEEP_SEEN_S = 400 * 86400.0
RESOURCE = "orders"
STARTED = f"{RESOURCE}:started"


@dataclass(frozen=True)
class Row:
    index: int
    sku: str
    source: str
    quantity: Decimal

    def line(self) -> dict[str, Any]:
        return {"sku": self.sku, "source_code": self.source, "quantity": self.quantity,
                "status": 1 if self.quantity > 0 else 0}

    def name(self) -> str:
        return f"SKU {self.sku} at source {self.source}"


class MagentoConnector(WindowPolled):
    capabilities = frozenset({Capability.PUSH_AVAILABILITY, Capability.POLL_CHANGES})

    def __init__(self, mapping: SystemMapping, sender: Sender, inbox: Inbox, binder: Binder,
                 rules: magento_orders.Rules, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.name, self._mapping, self._sender, self._inbox, self._binder = mapping.system, mapping, sender, inbox, binder
        self._base = str(mapping.connection.base_url).rstrip("/")
        self._batch_size = min(mapping.writes.batch_size, MAX_SOURCE_ITEMS)
        self._decimals = mapping.quantity_policy is not None and not mapping.quantity_policy.integer
        self._window = PollWindow(inbox, RESOURCE, OVERLAP, KEEP_SEEN_S, lambda: clock().timestamp())
        self._rules, self._clock = rules, clock
        self._tables = {mapping.system: binder.table} if binder.table is not None else None
        self._item_ids: dict[str, str] = {}
        self._wake: Callable[[], None] = lambda: None

    # -- availability out -----------------------------------------------------------------------

    def push_availability(self, figures: Sequence[Figure]) -> list[Result]:
        outcomes: list[Result | None] = [None] * len(figures)
        rows = [r for r in (self._row(i, f, outcomes) for i, f in enumerate(figures)) if r is not None]
        if self._mapping.writes.single_source:
            for row, result in zip(rows, until_down(rows, self._put_stock_item), strict=True):
                outcomes[row.index] = result
        else:
            self._post_batches(rows, outcomes)
        return [o if o is not None else RetryableError("not pushed in this attempt") for o in outcomes]

    def _row(self, index: int, figure: Figure, outcomes: list[Result | None]) -> Row | None:
        """The line the mapping's request makes of ``figure`` (SKU, source code, quantity)."""
        try:
            request = build_requests(figure, self._mapping, self._tables, now=self._clock(), new_id=lambda: "")[0]
            line = _line(request)
        except UnmappedError as exc:
            outcomes[index] = RejectedError(f"Magento: cannot map SKU {figure.item} at {figure.location} "
                                            f"({self._binder.file}): {exc}")
            return None
        except ConfigError as exc:  # a request of another shape: the integrator must fix the file
            outcomes[index] = ConfigError(f"{self._binder.file}: {exc}")
            return None
        quantity = max(Decimal(str(line["quantity"])), Decimal(0))
        if not self._decimals:
            quantity = quantity.to_integral_value(ROUND_FLOOR)
        return Row(index, str(line["sku"]), str(line["source_code"]), quantity)

    def _post_batches(self, rows: list[Row], outcomes: list[Result | None]) -> None:
        batches = _batches(rows, self._batch_size)
        for n, batch in enumerate(batches):
            down = self._post(batch, outcomes)
            if down is not None:  # throttled, down or refusing the token: the rest would fare the same
                for row in (r for later in batches[n + 1:] for r in later):
                    outcomes[row.index] = not_attempted(down) if isinstance(down, RetryableError) else down
                return

    def _post(self, batch: list[Row], outcomes: list[Result | None]) -> RetryableError | ConfigError | None:
        reply = self._sender.call("POST", self._base + SOURCE_ITEMS, body={"sourceItems": [r.line() for r in batch]},
                                  what=f"POST {SOURCE_ITEMS}")
        if isinstance(reply, RejectedError) and len(batch) > 1:  # nothing was saved: find the refused item
            for n, row in enumerate(batch):
                down = self._post([row], outcomes)
                if down is not None:
                    for rest in batch[n + 1:]:
                        outcomes[rest.index] = not_attempted(down) if isinstance(down, RetryableError) else down
                    return down
            return None
        for row in batch:
            outcomes[row.index] = _named(reply, row) if isinstance(reply, BridgeError) else Delivered("set")
        return reply if isinstance(reply, (RetryableError, ConfigError)) else None

    def _put_stock_item(self, row: Row) -> Result:
        item_id = self._stock_item_id(row)
        if isinstance(item_id, BridgeError):
            return item_id
        path = f"/V1/products/{quote(row.sku, safe='')}/stockItems/{quote(item_id, safe='')}"
        body = {"stockItem": {"qty": row.quantity, "is_in_stock": row.quantity > 0}}
        reply = self._sender.call("PUT", self._base + path, body=body, what="PUT /V1/products/{sku}/stockItems")
        return _named(reply, row) if isinstance(reply, BridgeError) else Delivered("set")

    def _stock_item_id(self, row: Row) -> str | BridgeError:
        if row.sku not in self._item_ids:
            reply = self._sender.call("GET", f"{self._base}/V1/stockItems/{quote(row.sku, safe='')}",
                                      what="GET /V1/stockItems/{sku}")
            if isinstance(reply, BridgeError):
                return _named(reply, row)
            item_id = reply.body.get("item_id") if isinstance(reply.body, dict) else None
            if item_id is None:
                return RejectedError(f"Magento has no stock item for {row.name()} (GET /V1/stockItems answered "
                                     "without item_id): is it a product whose stock Magento manages?")
            self._item_ids[row.sku] = str(item_id)
        return self._item_ids[row.sku]

    # -- sales in -------------------------------------------------------------------------------

    def poll_changes(self) -> Polled:
        stored = self._window.cursor()
        since = self._window.since()
        rules = self._started_rules()
        found, more = self._read_orders(since, stored or since)
        reading = magento_orders.read(found, rules)
        if rules.refunds_restock:
            by_id = {str(o.get("entity_id")): o for o in found}
            for order_id in reading.refunded:
                magento_orders.refunds(by_id[order_id], self._credit_memos(order_id), rules, reading)
        if more:
            self._wake()  # the rest of the backlog: the next pass starts at once
        return self._window.polled(reading.changes, magento_orders.latest(found), reading.reports)

    def _started_rules(self) -> magento_orders.Rules:
        """The rules with the moment polling started (kept: sales before it are the SoR's already)."""
        started = parse_time(self._inbox.cursor(STARTED))
        if started is None:
            # Magento's times have whole seconds: an order of the starting second counts
            started = (self._window.cursor() or self._window.since()).replace(microsecond=0)
            self._inbox.advance(STARTED, rfc3339(started))
        return replace(self._rules, started=started)

    def _read_orders(self, since: datetime, cursor: datetime) -> tuple[list[dict[str, Any]], bool]:
        """Orders updated at or after ``since`` (the cursor less the overlap), oldest first (True:
        more remain, after the newest one read). Pages up to the cursor's second are the overlap
        read again (or a mass action's one second): they do not count towards MAX_PAGES, so every
        pass moves the cursor by up to MAX_PAGES pages; HARD_MAX_PAGES bounds the walk. Magento
        answers a page past the end with the last page again: a page with no order not read yet
        ends the walk, so it never loops or counts twice."""
        found: dict[str, dict[str, Any]] = {}
        floor, fresh_pages = cursor.replace(microsecond=0), 0
        for page in range(1, HARD_MAX_PAGES + 1):
            body = self._get("/V1/orders", criteria("updated_at", magento_orders.as_magento_time(since), "gteq",
                                                    page=page, size=PAGE_SIZE, sort="updated_at"))
            new = [o for o in body.get("items") or [] if str(o.get("entity_id")) not in found]
            found.update((str(o.get("entity_id")), o) for o in new)
            total = body.get("total_count")
            if not new or not isinstance(total, int) or page >= math.ceil(total / PAGE_SIZE):
                return list(found.values()), False
            fresh_pages += (magento_orders.latest(new) or floor) > floor
            if fresh_pages >= MAX_PAGES:
                return list(found.values()), True
        raise RetryableError(f"Magento: more than {HARD_MAX_PAGES * PAGE_SIZE} orders updated between "
                             f"{magento_orders.as_magento_time(since)} and the cursor's second; the poller cannot "
                             "move past them (raise the overlap's page bound)")

    def _credit_memos(self, order_id: str) -> list[dict[str, Any]]:
        body = self._get("/V1/creditmemos", criteria("order_id", order_id, "eq", page=1, size=PAGE_SIZE))
        return [m for m in body.get("items") or [] if isinstance(m, dict)]

    def _get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        reply = self._sender.call("GET", self._base + path, params=params, what=f"GET {path}")
        if isinstance(reply, BridgeError):
            raise reply
        if not isinstance(reply.body, dict):
            raise RetryableError(f"Magento answered GET {path} without a JSON object (a maintenance page?)")
        return reply.body

    def on_notice(self, wake: Callable[[], None]) -> None:
        self._wake = wake


def _line(request: HttpRequest) -> Mapping[str, Any]:
    body = request.body
    lines = body.get("sourceItems") if isinstance(body, dict) else None
    if not isinstance(lines, list) or not lines or not isinstance(lines[0], dict) \
            or not {"sku", "source_code", "quantity"} <= set(lines[0]):
        raise ConfigError("the Magento mapping's request body must be {sourceItems: {lines: {sku: ..., source_code: "
                          "..., quantity: ...}}} (POST /V1/inventory/source-items)")
    return lines[0]


def _batches(rows: list[Row], size: int) -> list[list[Row]]:
    """Up to ``size`` rows each; a (SKU, source) seen twice starts a new batch (the later figure wins)."""
    batches: list[list[Row]] = []
    for row in rows:
        if not batches or len(batches[-1]) == size or any((r.sku, r.source) == (row.sku, row.source)
                                                           for r in batches[-1]):
            batches.append([])
        batches[-1].append(row)
    return batches


def _named(error: BridgeError, row: Row) -> BridgeError:
    """The error with the item it is about, so a dead letter says which one to fix."""
    if isinstance(error, RejectedError):
        refused = RejectedError(f"Magento refused {row.name()}: {error}")
        refused.status = getattr(error, "status", None)
        return refused
    return error


def magento_message(response: requests.Response) -> str | None:
    """Magento's error envelope: ``{"message", "parameters"}`` with ``%name`` / ``%1`` placeholders
    filled from ``parameters``, and ``errors[]`` of the same shape for each validation problem."""
    body = json_or_none(response)
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return None
    text = _fill(body["message"], body.get("parameters"))
    details = [_fill(str(e.get("message")), e.get("parameters")) for e in body.get("errors") or [] if isinstance(e, dict)]
    return f"{text}: {'; '.join(details)}" if details else text


def _fill(message: str, parameters: Any) -> str:
    if isinstance(parameters, list):
        parameters = {str(n + 1): v for n, v in enumerate(parameters)}
    if isinstance(parameters, dict):
        for name in sorted(parameters, key=len, reverse=True):  # %10 before %1
            message = message.replace(f"%{name}", str(parameters[name]))
    return message
