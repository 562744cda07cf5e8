"""Clover as a channel: ``item_stocks`` out per item, orders in by webhook (ids only: stored first,
resolved by the inbox poller).

What is Clover's own, and all that is here (docs/connectors/clover.md):
- the merchant id is in every path: ``connection.base_url`` is ``https://<host>/v3/merchants/<mId>``
  and the host picks sandbox (``apisandbox.dev.clover.com``) or production (``api.clover.com``,
  ``api.eu.clover.com``, ``api.la.clover.com``);
- ``POST /v3/merchants/{mId}/item_stocks/{itemId}`` with ``{"quantity": N}`` sets an item's stock
  (absolute; ``stockCount`` is deprecated): read at dispatch time, one push per item in flight,
  safe to send again after a lost answer;
- one stock per merchant: the mapping has one location, its code the merchant id;
- ``{"message": ...}`` is its error envelope; 16 requests/s and 5 in flight per token, a 429
  (with ``retry-after`` on concurrency limits) waits as the runtime is told;
- the verification POST, ``X-Clover-Auth`` and id-only notifications (webhooks.py); an order is
  read with ``GET /orders/{orderId}?expand=lineItems`` when its reference is resolved.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import requests

from ...domain import Decrement, Delivered, Figure, Increment, Result
from ...errors import BridgeError, ConfigError, RejectedError
from ...mapping.binder import Binder
from ...mapping.compile import UnmappedError
from ...mapping.engine import build_requests
from ...mapping.schema import SystemMapping
from ..base import Capability
from ..runtime.batch import until_down
from ..runtime.classify import json_or_none, vendor_decimal
from ..runtime.context import ConnectorContext
from ..runtime.inbox import Inbox, Reference
from ..runtime.sender import Sender
from ..runtime.webhooks import check_order_statuses, order_location
from . import webhooks

log = logging.getLogger(__name__)
MERCHANT_URL = re.compile(r"^https?://[^/]+/v3/merchants/([A-Za-z0-9]+)$")
HOSTS = ("api.clover.com", "api.eu.clover.com", "api.la.clover.com", "apisandbox.dev.clover.com")


def clover_message(response: requests.Response) -> str | None:
    body = json_or_none(response)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return f"Clover: {body['message']}"
    return None


class CloverConnector:
    capabilities = frozenset({Capability.PUSH_AVAILABILITY, Capability.VERIFY_WEBHOOK, Capability.INBOX,
                              Capability.READ_LISTED})

    def __init__(self, mapping: SystemMapping, sender: Sender, inbox: Inbox, binder: Binder,
                 auth_code: str | None = None):
        self.name, self.mapping, self.sender, self.inbox = mapping.system, mapping, sender, inbox
        self.on_stored: Callable[[], None] = lambda: None  # the inbox poller's nudge
        self._binder, self._auth_code = binder, auth_code
        self.base_url, self.merchant = merchant_url(str(mapping.connection.base_url))
        hooks = mapping.webhooks
        self.statuses = webhooks.STATUSES.of(hooks.sale_statuses if hooks else None,
                                             hooks.restock_statuses if hooks else None)

    # -- availability out -----------------------------------------------------------------------
    def push_availability(self, figures: Sequence[Figure]) -> list[Result]:
        return list(until_down(figures, self._push_one))

    def _push_one(self, figure: Figure) -> Result:
        tables = {self.name: self._binder.table} if self._binder.table is not None else None
        try:
            [request] = build_requests(figure, self.mapping, tables, now=datetime.now(UTC), new_id=lambda: "")
        except UnmappedError as exc:
            return RejectedError(f"Clover: cannot map SKU {figure.item} at {figure.location} ({self._binder.file}): "
                                 f"{exc}")
        reply = self.sender.send(request, what=f"POST item_stocks of SKU {figure.item}")
        return reply if isinstance(reply, BridgeError) else Delivered("set")

    def read_listed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decimal]:
        """What Clover shows now per (SKU, internal location): ``GET /items/{itemId}?expand=itemStock``
        per item (``itemStock.quantity``); keys the mapping cannot map, or items without stock, are absent."""
        where: dict[tuple[str, str], str] = {}
        for sku, location in keys:
            try:
                if self._binder.location_code(location) is not None:
                    where[(sku, location)] = self._binder.item_code(sku)
            except UnmappedError:
                continue
        shown: dict[str, Decimal] = {}
        for item in dict.fromkeys(where.values()):
            reply = self.sender.call("GET", f"{self.base_url}/items/{item}", params={"expand": "itemStock"},
                                     what=f"GET /items/{item}?expand=itemStock")
            if isinstance(reply, BridgeError):
                raise reply
            stock = reply.body.get("itemStock") if isinstance(reply.body, dict) else None
            if isinstance(stock, dict) and stock.get("quantity") is not None:
                shown[item] = vendor_decimal(stock["quantity"])
        return {key: shown[item] for key, item in where.items() if item in shown}

    # -- orders in ------------------------------------------------------------------------------
    def verify_webhook(self, headers: Mapping[str, str], body: bytes, url: str) -> list[Decrement | Increment]:
        """Answer the verification POST (the code is logged for the developer to paste), or check
        ``X-Clover-Auth`` and store this merchant's order references durably; nothing to route yet."""
        if self.mapping.webhooks is None:
            raise ConfigError(f"{self.name}: the mapping has no webhooks section (webhooks.secret names the "
                              "Clover auth code)")
        notice = webhooks.read(self._auth_code, self.merchant, headers, body)
        if notice.verification_code is not None:
            log.warning("Clover webhook verification code for %s: %s (paste it in the Developer Dashboard, App "
                        "Settings > Webhooks, then set the auth code it shows as secret %s)", self.name,
                        notice.verification_code, self.mapping.webhooks.secret, extra={"system": self.name})
            return []
        if notice.other_merchants:
            log.info("Clover notification for merchants %s ignored: this mapping is for %s",
                     ", ".join(notice.other_merchants), self.merchant, extra={"system": self.name})
        stored = [ref for ref, payload in notice.references if self.inbox.add(ref, payload)]
        if stored:
            self.on_stored()
        return []

    def resolve(self, reference: Reference) -> list[Decrement | Increment]:
        """The stock changes an order event stands for, from the order as it is now."""
        order_id = str(reference.payload["order_id"])
        what = f"GET /orders/{order_id}?expand=lineItems"
        reply = self.sender.call("GET", f"{self.base_url}/orders/{order_id}", params={"expand": "lineItems"},
                                 what=what)
        if isinstance(reply, BridgeError):
            if reply.status == 404:  # deleted: Clover does not say its stock returns, so nothing does
                log.warning("Clover order %s is gone (%s event): nothing counted for it now", order_id,
                            reference.payload.get("type"), extra={"system": self.name})
                return []
            raise reply
        if not isinstance(reply.body, dict) or "id" not in reply.body:
            raise RejectedError(f"Clover answered {what} without an order")
        try:
            return webhooks.normalise(reply.body, self.name, order_location(self.mapping), self.statuses, self._item)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise RejectedError(f"Clover order {order_id}: a line item is malformed: {exc}") from None

    def _item(self, item_id: str) -> str:
        return self._binder.sku_of(item_id) or item_id

    def close(self) -> None:
        self.sender.close()
        self.inbox.close()


def merchant_url(base_url: str) -> tuple[str, str]:
    """(base URL, merchant id) of ``https://<host>/v3/merchants/<mId>``."""
    base = base_url.rstrip("/")
    match = MERCHANT_URL.match(base)
    if match is None:
        raise ConfigError(f"Clover connection.base_url must be https://<host>/v3/merchants/<merchant id> (host "
                          f"{' or '.join(HOSTS)}), got {base_url}")
    return base, match.group(1)


def from_context(ctx: ConnectorContext) -> CloverConnector:
    m = ctx.mapping
    if m.connection.auth.kind != "bearer":
        raise ConfigError(f"{m.system}: Clover takes auth kind bearer (a merchant API token or an app's OAuth "
                          f"access token), not {m.connection.auth.kind}")
    if m.items.lookup is not None and ctx.table is None:
        raise ConfigError(f"{m.system}: items.lookup names {m.items.lookup.file} but no table was loaded")
    _, merchant = merchant_url(str(m.connection.base_url))
    if len(m.locations.map) != 1 or m.locations.map[0].code != merchant:
        raise ConfigError(f"{m.system}: Clover keeps one stock per merchant: locations.map needs exactly one entry "
                          f"whose code is the merchant id {merchant}")
    check_order_statuses(m)
    return CloverConnector(m, ctx.sender(message=clover_message), ctx.inbox(), Binder(m, ctx.table),
                           auth_code=_auth_code(ctx))


def _auth_code(ctx: ConnectorContext) -> str | None:
    """The webhook auth code, which exists only after the verification POST: until it is set the
    connector answers that POST and refuses notifications, saying which secret to set."""
    hooks = ctx.mapping.webhooks
    if hooks is None:
        return None
    try:
        return ctx.secret(hooks.secret)
    except ConfigError:
        log.warning("%s: secret %s (the Clover webhook auth code) is not set: verification requests are answered, "
                    "notifications refused until it is", ctx.system, hooks.secret, extra={"system": ctx.system})
        return None
