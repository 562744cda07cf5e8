"""Lightspeed Retail X-Series (Vend) as a channel: inventory per product per outlet out, sales in by
the ``sale.update`` webhook (stored first, resolved by the inbox poller).

What is X-Series' own, and all that is here (docs/connectors/lightspeed_x.md):
- API 2.0 reads inventory (``GET /2.0/inventory``, ``/2.0/products/{id}/inventory``) but has no
  endpoint that writes it; the documented write is API 2.1's product update, ``PUT
  /2.1/products/{product_id}`` with ``details.inventory: [{outlet_id, current_amount}]`` (the
  X-Series Postman collection). An absolute set: the figure is read at dispatch time, one push per
  item in flight, and sending it again after a lost answer is harmless;
- an outlet is a location (``locations.map`` code = outlet id); a sale names its register, and the
  register its outlet (``GET /2.0/registers/{id}``, remembered per register);
- the ``{"error", "message"|"details"}`` envelope, and the limit of 300 × registers + 50 requests per
  5 minutes: a 429 carries ``Retry-After`` as an HTTP date, which the runtime honours;
- the webhook's signature and form body (webhooks.py).
Sender, bearer token (personal token, or OAuth with refresh), ``on_status``, redaction and the
inbox are the runtime's.
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

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
from ..runtime.webhooks import check_order_statuses
from . import webhooks

AUTH_KINDS = ("bearer", "oauth2_refresh_token")


def lightspeed_message(response: requests.Response) -> str | None:
    body = json_or_none(response)
    if not isinstance(body, dict) or not body.get("error"):
        return None
    detail = body.get("message") or body.get("details")
    return f"Lightspeed X-Series: {body['error']}" + (f": {detail}" if detail else "")


class LightspeedXConnector:
    capabilities = frozenset({Capability.PUSH_AVAILABILITY, Capability.VERIFY_WEBHOOK, Capability.INBOX,
                              Capability.READ_LISTED})

    def __init__(self, mapping: SystemMapping, sender: Sender, inbox: Inbox, binder: Binder,
                 webhook_secret: str | None = None):
        self.name, self.mapping, self.sender, self.inbox = mapping.system, mapping, sender, inbox
        self.on_stored: Callable[[], None] = lambda: None  # the inbox poller's nudge
        self._binder, self._secret = binder, webhook_secret
        self.api_url = api_url(str(mapping.connection.base_url))
        self._outlets: dict[str, str] = {}  # register id -> outlet id (a register never moves outlet)
        self._lock = threading.Lock()
        hooks = mapping.webhooks
        self.statuses = webhooks.STATUSES.of(hooks.sale_statuses if hooks else None,
                                             hooks.restock_statuses if hooks else None)

    # -- availability out -----------------------------------------------------------------------
    def push_availability(self, figures: Sequence[Figure]) -> list[Result]:
        return list(until_down(figures, self._push_one))

    def _push_one(self, figure: Figure) -> Result:
        try:
            [request] = build_requests(figure, self.mapping, self._tables(), now=datetime.now(UTC), new_id=lambda: "")
        except UnmappedError as exc:
            return RejectedError(f"Lightspeed X-Series: cannot map SKU {figure.item} at {figure.location} "
                                 f"({self._binder.file}): {exc}")
        reply = self.sender.send(request, what=f"PUT product inventory of SKU {figure.item}")
        return reply if isinstance(reply, BridgeError) else Delivered("set")

    def read_listed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decimal]:
        """What each outlet shows now (``inventory_level``) per (SKU, internal location), one
        ``GET /2.0/products/{id}/inventory`` per product; keys the mapping cannot map are absent."""
        where = {key: at for key in keys if (at := self._product_outlet(*key)) is not None}
        levels: dict[tuple[str, str], Decimal] = {}
        for product in dict.fromkeys(p for p, _ in where.values()):
            reply = self.sender.call("GET", f"{self.api_url}/2.0/products/{product}/inventory",
                                     what=f"GET /2.0/products/{product}/inventory")
            if isinstance(reply, BridgeError):
                raise reply
            rows = reply.body.get("data") if isinstance(reply.body, dict) else None
            for row in rows if isinstance(rows, list) else []:
                if isinstance(row, dict) and row.get("inventory_level") is not None:
                    levels[(product, str(row.get("outlet_id")))] = vendor_decimal(row["inventory_level"])
        return {key: levels[at] for key, at in where.items() if at in levels}

    def _product_outlet(self, sku: str, location: str) -> tuple[str, str] | None:
        outlet = self._binder.location_code(location)
        try:
            return (self._binder.item_code(sku), outlet) if outlet is not None else None
        except UnmappedError:
            return None

    def _tables(self) -> dict[str, Any] | None:
        return {self.name: self._binder.table} if self._binder.table is not None else None

    # -- sales in -------------------------------------------------------------------------------
    def verify_webhook(self, headers: Mapping[str, str], body: bytes, url: str) -> list[Decrement | Increment]:
        """Verify and check the sale (401/400 as WebhookRejected), then store it in the inbox,
        durably, before the 2xx; the inbox poller turns it into stock changes (``resolve``)."""
        if self._secret is None or self.mapping.webhooks is None:
            raise ConfigError(f"{self.name}: the mapping has no webhooks.secret to verify deliveries with")
        sale = webhooks.sale_of(webhooks.verify(self._secret, headers, body))
        if sale is None:
            return []  # another topic (product.update...): verified, nothing to count
        webhooks.lines(sale)  # a malformed line is refused now (400), not found out later
        if self.inbox.add(hashlib.sha256(body).hexdigest(), {"sale": sale}):
            self.on_stored()
        return []

    def resolve(self, reference: Reference) -> list[Decrement | Increment]:
        sale = reference.payload["sale"]
        if str(sale.get("status")) not in (*self.statuses.sale, *self.statuses.restock):
            return []  # parked, or a status the mapping does not count: no register read needed
        outlet = self._outlet(sale)
        return webhooks.normalise(sale, self.name, outlet, self.statuses, self._item)

    def _item(self, line: webhooks.Line) -> str:
        """The SKU the line's product stands for: the mapping's table or overrides by product id,
        else the SKU the sale carries, else the product id (refused by the router, naming it)."""
        return self._binder.sku_of(line.product_id) or line.sku or line.product_id

    def _outlet(self, sale: Mapping[str, Any]) -> str:
        if sale.get("outlet_id"):
            return str(sale["outlet_id"])
        register = str(sale.get("register_id") or "")
        if not register:
            raise RejectedError(f"Lightspeed X-Series sale {sale.get('id')} names neither outlet_id nor register_id")
        with self._lock:
            known = self._outlets.get(register)
        if known is None:
            known = self._register_outlet(register)
            with self._lock:
                self._outlets[register] = known
        return known

    def _register_outlet(self, register: str) -> str:
        reply = self.sender.call("GET", f"{self.api_url}/2.0/registers/{register}",
                                 what=f"GET /2.0/registers/{register}")
        if isinstance(reply, BridgeError):
            raise reply
        data = reply.body.get("data") if isinstance(reply.body, dict) else None
        if not isinstance(data, dict) or not data.get("outlet_id"):
            raise RejectedError(f"Lightspeed X-Series register {register} has no outlet_id in its answer")
        return str(data["outlet_id"])

    def close(self) -> None:
        self.sender.close()
        self.inbox.close()


def api_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if not base.endswith("/api"):
        raise ConfigError(f"Lightspeed X-Series connection.base_url must be https://<domain prefix>.retail."
                          f"lightspeed.app/api (the versions are in the request paths), got {base_url}")
    return base


def from_context(ctx: ConnectorContext) -> LightspeedXConnector:
    m = ctx.mapping
    if m.connection.auth.kind not in AUTH_KINDS:
        raise ConfigError(f"{m.system}: Lightspeed X-Series takes auth kind bearer (a personal token) or "
                          f"oauth2_refresh_token (an OAuth application), not {m.connection.auth.kind}")
    if m.items.lookup is not None and ctx.table is None:
        raise ConfigError(f"{m.system}: items.lookup names {m.items.lookup.file} but no table was loaded")
    check_order_statuses(m)
    api_url(str(m.connection.base_url))
    secret = ctx.secret(m.webhooks.secret) if m.webhooks else None
    return LightspeedXConnector(m, ctx.sender(message=lightspeed_message), ctx.inbox(), Binder(m, ctx.table),
                                webhook_secret=secret)
