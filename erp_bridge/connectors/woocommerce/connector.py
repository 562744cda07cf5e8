"""WooCommerce as a channel: ``stock_quantity`` out through the batch endpoints, orders in by webhook.

What is WooCommerce's own, and all that is here (docs/connectors/woocommerce.md):
- products and variations are written through different endpoints: ``POST /products/batch`` and
  ``POST /products/<parent>/variations/batch``, at most 100 objects a call; so an item code is
  ``<product id>`` or ``<parent id>:<variation id>``;
- a batch answers 200 with one entry per object, each the written object or ``{"id", "error":
  {"code", "message"}}``: one refused object is that item's error, not the batch's;
- ``{"code", "message", "data": {"status"}}`` is its error envelope;
- a delivery is the whole order: it is checked, stored in the runtime's inbox before the 2xx and
  turned into stock changes by the inbox poller, which also drops lines counted before (every
  ``order.updated`` repeats them, weeks later too).
WooCommerce has no compare-and-set and no idempotency key: a set is absolute, so sending it twice
is harmless, and the dispatcher keeps one push per item in flight with the figure read at dispatch
time. Sender, Basic auth, ``on_status``, ``Retry-After`` and redaction are the runtime's.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import requests

from ...domain import Decrement, Delivered, Figure, Increment, Result
from ...errors import BridgeError, ConfigError, RejectedError, RetryableError
from ...mapping.compile import UnmappedError
from ...mapping.engine import build_requests
from ...mapping.lookups import LookupTable
from ...mapping.schema import SystemMapping
from ...mapping.wire import HttpRequest
from ..base import Capability
from ..runtime.batch import not_attempted
from ..runtime.classify import json_or_none
from ..runtime.context import ConnectorContext
from ..runtime.inbox import Inbox, Reference
from ..runtime.sender import Reply, Sender
from ..runtime.webhooks import check_order_statuses, order_location
from . import webhooks

#: "By default it's limited to up to 100 objects to be created, updated or deleted" (_products.md)
MAX_BATCH = 100


@dataclass(frozen=True)
class Row:
    index: int
    figure: Figure
    endpoint: str  # "/products/batch" or "/products/<parent>/variations/batch"
    object_id: int
    line: dict[str, Any]  # what the mapping's request made of the figure, with the object's own id

    def name(self) -> str:
        return f"SKU {self.figure.item} ({self.endpoint.removesuffix('/batch')}/{self.object_id})"


def woo_message(response: requests.Response) -> str | None:
    body = json_or_none(response)
    if isinstance(body, dict) and "code" in body and "message" in body:
        return f"WooCommerce {body['code']}: {body['message']}"
    return None


class WooCommerceConnector:
    capabilities = frozenset({Capability.PUSH_AVAILABILITY, Capability.VERIFY_WEBHOOK, Capability.INBOX,
                              Capability.READ_LISTED})

    def __init__(self, mapping: SystemMapping, sender: Sender, inbox: Inbox, lookup: LookupTable | None = None,
                 webhook_secret: str | None = None):
        self.name, self.mapping, self.sender, self.inbox = mapping.system, mapping, sender, inbox
        self.on_stored: Callable[[], None] = lambda: None  # the inbox poller's nudge
        self._lookups = {mapping.system: lookup} if lookup is not None else None
        self._file = f"mappings/{mapping.system}.yaml"
        self.base_url = str(mapping.connection.base_url).rstrip("/")
        self._batch_size = min(mapping.writes.batch_size, MAX_BATCH)
        self._webhook_secret = webhook_secret

    # -- availability out -----------------------------------------------------------------------
    def push_availability(self, figures: Sequence[Figure]) -> list[Result]:
        outcomes: list[Result | None] = [None] * len(figures)
        rows = [r for r in (self._row(i, f, outcomes) for i, f in enumerate(figures)) if r is not None]
        batches = _batches(rows, self._batch_size)
        for n, batch in enumerate(batches):
            failure = self._push(batch, outcomes)
            if failure is not None:  # down or throttled: the rest would fare the same
                for row in (r for later in batches[n + 1:] for r in later):
                    outcomes[row.index] = not_attempted(failure)
                break
        return [o for o in outcomes if o is not None]  # every figure has one by now

    def _row(self, index: int, figure: Figure, outcomes: list[Result | None]) -> Row | None:
        """The line the mapping's request makes of ``figure``, sent to its product's endpoint."""
        try:
            request = build_requests(figure, self.mapping, self._lookups, now=datetime.now(UTC),
                                     new_id=lambda: "")[0]
            line = dict(_lines(request)[0])
            endpoint, line["id"] = parse_code(str(line.get("id")))
        except UnmappedError as exc:
            outcomes[index] = RejectedError(f"WooCommerce: cannot map SKU {figure.item} at {figure.location} "
                                            f"({self._file}): {exc}")
            return None
        except ConfigError as exc:  # a malformed item code in the table, or a request of another shape
            outcomes[index] = ConfigError(f"{self._file}, SKU {figure.item}: {exc}")
            return None
        return Row(index, figure, endpoint, line["id"], line)

    def _push(self, batch: list[Row], outcomes: list[Result | None]) -> RetryableError | None:
        body = {"update": [r.line for r in batch]}
        endpoint = batch[0].endpoint
        reply = self.sender.call("POST", self.base_url + endpoint, body=body, what=f"POST {endpoint}")
        if isinstance(reply, BridgeError):
            for row in batch:
                outcomes[row.index] = reply
            return reply if isinstance(reply, RetryableError) else None
        answered = _answers(reply)
        for row in batch:
            outcomes[row.index] = _outcome(row, answered.get(row.object_id), endpoint)
        return None

    def read_listed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decimal]:
        """What WooCommerce shows now (``stock_quantity`` of a product or variation that manages
        stock) per (SKU, internal location), for reconciliation: one ``GET /products?include=`` (or
        ``/products/<parent>/variations``) per 100 ids; keys it cannot map or keeps no stock for
        are absent. Raises the classified error when WooCommerce fails."""
        where: dict[tuple[str, str], tuple[str, int]] = {}
        for key in keys:
            row = self._row(0, Figure(key[0], key[1], Decimal(0)), [None])
            if row is not None:
                where[key] = (row.endpoint.removesuffix("/batch"), row.object_id)
        held: dict[tuple[str, int], Decimal] = {}
        for listing, ids in _by_listing(list(dict.fromkeys(where.values()))).items():
            held.update(self._listed(listing, ids))
        return {key: held[at] for key, at in where.items() if at in held}

    def _listed(self, listing: str, ids: list[int]) -> dict[tuple[str, int], Decimal]:
        found: dict[tuple[str, int], Decimal] = {}
        for start in range(0, len(ids), MAX_BATCH):
            chunk = ids[start:start + MAX_BATCH]
            params = {"include": ",".join(map(str, chunk)), "per_page": len(chunk)}
            reply = self.sender.call("GET", self.base_url + listing, params=params, what=f"GET {listing}")
            if isinstance(reply, BridgeError):
                raise reply
            found.update(((listing, o["id"]), Decimal(str(o["stock_quantity"]))) for o in reply.body or []
                         if isinstance(o, dict) and o.get("manage_stock") and o.get("stock_quantity") is not None)
        return found

    # -- webhooks in ----------------------------------------------------------------------------
    def verify_webhook(self, headers: Mapping[str, str], body: bytes, url: str) -> list[Decrement | Increment]:
        """Verify and check the order (401/400 as WebhookRejected), then store it in the inbox,
        durably, before the 2xx; the inbox poller turns it into stock changes (``resolve``)."""
        if self._webhook_secret is None or self.mapping.webhooks is None:
            raise ConfigError(f"{self.name}: the mapping has no webhooks.secret to verify deliveries with")
        if webhooks.is_ping(headers, body):
            return []
        _topic, order = webhooks.verify(self._webhook_secret, headers, body)
        self.changes(order)  # a malformed order is refused now (400), not found out later
        if self.inbox.add(hashlib.sha256(body).hexdigest(), {"order": order}):
            self.on_stored()
        return []

    def resolve(self, reference: Reference) -> list[Decrement | Increment]:
        return self.changes(reference.payload["order"])

    def changes(self, order: Mapping[str, Any]) -> list[Decrement | Increment]:
        """What the order's current status means, in WooCommerce's terms (item = SKU)."""
        hooks = self.mapping.webhooks
        sale, restock = (hooks.sale_statuses, hooks.restock_statuses) if hooks else (None, None)
        statuses = webhooks.STATUSES.of(sale, restock)
        return webhooks.normalise(order, self.name, order_location(self.mapping), statuses)

    def close(self) -> None:
        self.sender.close()
        self.inbox.close()


def parse_code(code: str) -> tuple[str, int]:
    """(batch endpoint, object id) of an item code: ``<product>`` or ``<parent>:<variation>``."""
    parent, _, variation = code.partition(":")
    try:
        if variation:
            return f"/products/{int(parent)}/variations/batch", int(variation)
        return "/products/batch", int(parent)
    except ValueError:
        raise ConfigError(f"WooCommerce item code {code!r} must be <product id> or "
                          "<parent id>:<variation id>") from None


def _by_listing(places: list[tuple[str, int]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for listing, object_id in places:
        grouped.setdefault(listing, []).append(object_id)
    return grouped


def _batches(rows: list[Row], size: int) -> list[list[Row]]:
    """Per endpoint, up to ``size`` rows each; an id seen twice starts a new batch (last one wins)."""
    batches: list[list[Row]] = []
    open_: dict[str, list[Row]] = {}
    for row in rows:
        batch = open_.get(row.endpoint)
        if batch is None or len(batch) == size or any(r.object_id == row.object_id for r in batch):
            batch = open_[row.endpoint] = []
            batches.append(batch)
        batch.append(row)
    return batches


def _answers(reply: Reply) -> dict[int, dict[str, Any]]:
    entries = (reply.body or {}).get("update") if isinstance(reply.body, dict) else None
    found: dict[int, dict[str, Any]] = {}
    for entry in entries or []:
        if isinstance(entry, dict) and isinstance(entry.get("id"), int):
            found[entry["id"]] = entry
    return found


def _outcome(row: Row, entry: dict[str, Any] | None, endpoint: str) -> Result:
    if entry is None:  # the set is absolute, so sending it again is harmless
        return RetryableError(f"WooCommerce answered POST {endpoint} without an entry for {row.name()}")
    error = entry.get("error")
    if isinstance(error, dict):
        return RejectedError(f"WooCommerce refused {row.name()}: {error.get('code')}: {error.get('message')}")
    held, sent = entry.get("stock_quantity"), row.line.get("stock_quantity")
    if held != sent:
        return RejectedError(f"WooCommerce kept stock_quantity {held} for {row.name()}, not {sent}: "
                             "enable stock management for it (on the parent product for a variation)")
    return Delivered("set")


def from_context(ctx: ConnectorContext) -> WooCommerceConnector:
    mapping = ctx.mapping
    auth = mapping.connection.auth
    if auth.kind != "basic":  # the loader has checked that basic names username and password
        raise ConfigError(f"{mapping.system}: WooCommerce takes auth kind basic with secrets.username (the "
                          "consumer key) and secrets.password (the consumer secret), over HTTPS")
    if mapping.items.lookup is not None and ctx.table is None:
        raise ConfigError(f"{mapping.system}: items.lookup names {mapping.items.lookup.file} but no table was loaded")
    check_order_statuses(mapping)
    secret = ctx.secret(mapping.webhooks.secret) if mapping.webhooks else None
    inbox = Inbox(ctx.storage_url, mapping.system)
    return WooCommerceConnector(mapping, ctx.sender(message=woo_message), inbox, ctx.table, webhook_secret=secret)


def _lines(request: HttpRequest) -> list[dict[str, Any]]:
    body = request.body
    lines = body.get("update") if isinstance(body, dict) else None
    if not isinstance(lines, list) or not lines or not isinstance(lines[0], dict):
        raise ConfigError("the WooCommerce mapping's request body must be {update: {lines: {id: ..., "
                          "stock_quantity: ...}}} (the batch endpoints' shape)")
    return lines
