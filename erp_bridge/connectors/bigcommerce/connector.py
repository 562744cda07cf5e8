"""BigCommerce as a channel: availability out with the Inventory API's absolute adjustments per
location, orders in by webhook (ids only: stored first, resolved by a worker).

What is BigCommerce's own, and all that is here (docs/connectors/bigcommerce.md):
- absolute, not relative, adjustments: the bridge reads the figure at dispatch time and keeps one
  push per item in flight; an absolute set is safe to send again after a lost answer, where a
  relative one (no idempotency key) would count twice, and it does not double BigCommerce's own
  decrement of a sale whose order the bridge then also counts;
- up to 2,000 items a payload, one ``422`` for the whole payload when one item is refused: the
  payload is then sent item by item so that only the refused item fails, with BigCommerce's title;
- the ``{"status", "title", "type", "errors"}`` problem envelope, and the rate-limit quota per
  30 s window: a 429 waits ``X-Rate-Limit-Time-Reset-Ms``;
- order callbacks carry ids only: ``verify_webhook`` stores the reference in the inbox (durable,
  before the 2xx) and ``resolve`` later reads the order's status and products (V2 Orders API).
Sender, X-Auth-Token, ``on_status``, redaction and the inbox store are the runtime's.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
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
from ..runtime.batch import until_down
from ..runtime.classify import json_or_none
from ..runtime.context import ConnectorContext
from ..runtime.inbox import Inbox, Reference
from ..runtime.paginate import PageNumber
from ..runtime.sender import Sender
from ..runtime.webhooks import check_order_statuses, order_location
from . import webhooks

MAX_ITEMS = 2000  # "Limit of 2000 items for payload length" (inventory.v3.yml)
PRODUCTS_PAGE = 250  # V2 list endpoints: limit <= 250
#: SKUs per GET /inventory/items (a comma-separated sku:in filter; "Limit of 1000 items for payload length")
LISTED_SKUS = 100


def problem_message(response: requests.Response) -> str | None:
    body = json_or_none(response)
    if isinstance(body, dict) and body.get("title"):
        return f"BigCommerce: {body['title']}"
    if isinstance(body, list) and body and isinstance(body[0], dict) and body[0].get("message"):
        return f"BigCommerce: {body[0]['message']}"  # the V2 API's [{"status", "message"}]
    return None


def reset_wait(response: requests.Response) -> float | None:
    """A 429 waits for the quota window to reset; every answer carries the header, a 5xx not
    caused by the quota must not wait for it."""
    value = response.headers.get("X-Rate-Limit-Time-Reset-Ms") if response.status_code == 429 else None
    return int(value) / 1000.0 if value and value.isdigit() else None


class BigCommerceConnector:
    capabilities = frozenset({Capability.PUSH_AVAILABILITY, Capability.VERIFY_WEBHOOK, Capability.INBOX,
                              Capability.READ_LISTED})

    def __init__(self, mapping: SystemMapping, sender: Sender, inbox: Inbox, lookup: LookupTable | None = None,
                 webhook_secret: str | None = None, clock: Callable[[], float] = time.time):
        self.name, self.mapping, self.sender, self.inbox = mapping.system, mapping, sender, inbox
        self._lookups = {mapping.system: lookup} if lookup is not None else None
        self._key = webhooks.signing_key(webhook_secret) if webhook_secret is not None else None
        self._clock = clock
        self.v2_url = v2_url(str(mapping.connection.base_url))
        self.on_stored: Callable[[], None] = lambda: None  # the inbox poller's nudge

    # -- availability out -----------------------------------------------------------------------
    def push_availability(self, figures: Sequence[Figure]) -> list[Result]:
        outcomes: list[Result | None] = [None] * len(figures)
        todo: list[int] = []
        for index, figure in enumerate(figures):
            try:
                self._build([figure])
                todo.append(index)
            except UnmappedError as exc:
                outcomes[index] = RejectedError(f"BigCommerce: cannot map SKU {figure.item} at {figure.location} "
                                                f"(mappings/{self.name}.yaml): {exc}")
        size = min(self.mapping.writes.batch_size, MAX_ITEMS)
        chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
        results = until_down(chunks, lambda chunk: self._send_chunk([figures[i] for i in chunk]))
        for chunk, result in zip(chunks, results):
            for index, outcome in zip(chunk, _spread(result, len(chunk))):
                outcomes[index] = outcome
        return [o for o in outcomes if o is not None]  # every figure has one by now

    def _send_chunk(self, figures: list[Figure]) -> list[Result] | BridgeError:
        """One payload. BigCommerce refuses a whole payload with one 422 for one bad item: the
        halves are sent again (absolute sets: harmless), down to the refused items alone."""
        reply = self.sender.send(self._build(figures))
        if not isinstance(reply, BridgeError):
            return [Delivered("set")] * len(figures)
        if reply.status != 422 or len(figures) == 1:
            return reply if len(figures) == 1 or isinstance(reply, RetryableError) else [reply] * len(figures)
        half = len(figures) // 2
        return [r for part in (figures[:half], figures[half:]) for r in _spread(self._send_chunk(part), len(part))]

    def _build(self, figures: list[Figure]) -> HttpRequest:
        requests_ = build_requests(figures, self.mapping, self._lookups, now=datetime.now(UTC),
                                   new_id=lambda: "")
        if len(requests_) != 1:
            raise ConfigError(f"{self.name}: the availability request must put every figure in one body "
                              "(items: {lines: ...}) with writes.batch_size up to 2000")
        return requests_[0]

    def read_listed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decimal]:
        """What BigCommerce holds now (``total_inventory_onhand``, what the absolute adjustments
        set) per (SKU, internal location), for reconciliation: ``GET /inventory/items`` per
        location and up to LISTED_SKUS SKUs; keys it cannot map or does not stock are absent."""
        where: dict[tuple[str, str], tuple[str, int]] = {}
        for key in keys:
            try:
                item = self._build([Figure(key[0], key[1], Decimal(0))]).body["items"][0]
            except (UnmappedError, KeyError, TypeError, IndexError):
                continue
            where[key] = (str(item["sku"]), int(item["location_id"]))
        skus_at: dict[int, list[str]] = {}
        for sku, location in dict.fromkeys(where.values()):
            skus_at.setdefault(location, []).append(sku)
        held: dict[tuple[str, int], Decimal] = {}
        for location, skus in skus_at.items():
            for start in range(0, len(skus), LISTED_SKUS):
                held.update(self._listed(location, skus[start:start + LISTED_SKUS]))
        return {key: held[at] for key, at in where.items() if at in held}

    def _listed(self, location: int, skus: list[str]) -> dict[tuple[str, int], Decimal]:
        params = {"sku:in": ",".join(skus), "location_id:in": location, "limit": len(skus), "page": 1}
        base = str(self.mapping.connection.base_url).rstrip("/")
        reply = self.sender.call("GET", f"{base}/inventory/items", params=params, what="GET /inventory/items")
        if isinstance(reply, BridgeError):
            raise reply
        found: dict[tuple[str, int], Decimal] = {}
        items = reply.body.get("data") if isinstance(reply.body, dict) else None
        for item in items if isinstance(items, list) else []:
            sku = str((item.get("identity") or {}).get("sku"))
            for at in item.get("locations") or []:
                if at.get("location_id") == location and at.get("total_inventory_onhand") is not None:
                    found[(sku, location)] = Decimal(at["total_inventory_onhand"])
        return found

    # -- webhooks in ----------------------------------------------------------------------------
    def verify_webhook(self, headers: Mapping[str, str], body: bytes, url: str) -> list[Decrement | Increment]:
        """Verify, then store an order reference durably; nothing to route yet (the inbox poller
        resolves it). Raises WebhookRejected to refuse the delivery."""
        if self._key is None or self.mapping.webhooks is None:
            raise ConfigError(f"{self.name}: the mapping has no webhooks.secret to verify deliveries with")
        msg_id, callback = webhooks.verify(self._key, headers, body, now=self._clock)
        ref = webhooks.reference(callback)
        if ref is not None and self.inbox.add(msg_id, ref):
            self.on_stored()
        return []

    def resolve(self, reference: Reference) -> list[Decrement | Increment]:
        """The stock changes an order callback stands for, from the order as it is now."""
        order_id = int(reference.payload["order_id"])
        order = self._get(f"{self.v2_url}/orders/{order_id}", f"GET /v2/orders/{order_id}")
        status = str(order.get("status_id")) if isinstance(order, dict) else ""
        hooks = self.mapping.webhooks
        sale = hooks.sale_statuses if hooks and hooks.sale_statuses is not None else webhooks.SALE_STATUSES
        restock = hooks.restock_statuses if hooks and hooks.restock_statuses is not None else webhooks.RESTOCK_STATUSES
        if status not in (*sale, *restock):
            return []
        products = self._products(order_id)
        try:
            location = order_location(self.mapping)
            return webhooks.normalise(order_id, status, products, self.name, location, sale, restock)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise RejectedError(f"BigCommerce order {order_id}: a product line is malformed: {exc!r}") from None

    def _products(self, order_id: int) -> list[dict[str, Any]]:
        paginator = PageNumber(has_more=lambda body: isinstance(body, list) and len(body) == PRODUCTS_PAGE,
                               size_param="limit", size=PRODUCTS_PAGE)
        pages = self.sender.pages("GET", f"{self.v2_url}/orders/{order_id}/products", paginator,
                                  what=f"GET /v2/orders/{order_id}/products")
        return [p for page in pages if isinstance(page.body, list) for p in page.body]

    def _get(self, url: str, what: str) -> Any:
        reply = self.sender.call("GET", url, what=what)
        if isinstance(reply, BridgeError):
            raise reply
        return reply.body

    def close(self) -> None:
        self.sender.close()
        self.inbox.close()


def _spread(result: list[Result] | BridgeError, n: int) -> list[Result]:
    return result if isinstance(result, list) else [result] * n


def v2_url(base_url: str) -> str:
    """The V2 API beside the V3 base URL (orders and their products live in V2)."""
    base = base_url.rstrip("/")
    if not base.endswith("/v3"):
        raise ConfigError(f"BigCommerce connection.base_url must end in /v3 (https://api.bigcommerce.com/stores/"
                          f"<store hash>/v3), got {base_url}")
    return base.removesuffix("/v3") + "/v2"


def from_context(ctx: ConnectorContext, clock: Callable[[], float] = time.time) -> BigCommerceConnector:
    mapping = ctx.mapping
    if mapping.connection.auth.kind != "header" or mapping.connection.auth.header != "X-Auth-Token":
        raise ConfigError(f"{mapping.system}: BigCommerce takes auth kind header with header X-Auth-Token and "
                          "secrets.token (a store API account's access token)")
    if mapping.items.lookup is not None and ctx.table is None:
        raise ConfigError(f"{mapping.system}: items.lookup names {mapping.items.lookup.file} but no table was loaded")
    check_order_statuses(mapping)
    secret = ctx.secret(mapping.webhooks.secret) if mapping.webhooks else None
    sender = ctx.sender(message=problem_message, wait=reset_wait)
    return BigCommerceConnector(mapping, sender, Inbox(ctx.storage_url, mapping.system, clock), ctx.table,
                                webhook_secret=secret, clock=clock)
