"""Zoho Inventory on the connector runtime: a mirror (moves -> inventory adjustments) and a system
of record (stock per location from ``/itemdetails``; channel sales applied as adjustments).

What is Zoho's own, and all that is here (docs/connectors/zoho_inventory.md):
- the data centre: the API host (``www.zohoapis.<dc>``) and the accounts host that issues tokens
  must be of the same DC (tokens are issued per DC); checked at start;
- the ``organization_id`` query parameter on every call, taken from the mapping's requests;
- the ``{"code": ..., "message": ...}`` error envelope (``code`` 0 is success, also on HTTP 200);
- exactly once without an idempotency key: the runtime's ledger plus ``reference_number``. The
  list endpoint documents no ``reference_number`` filter, so a lost answer is settled by paging
  the adjustments newest first and stopping a day before the adjustment's own date (a bounded
  date window, at most SETTLE_MAX_PAGES pages);
- Zoho Accounts' token throttle (HTTP 400 ``Access Denied``) is a wait, not wrong credentials.
OAuth 2 refresh-token flow, ``on_status``, ``Retry-After`` and redaction are the runtime's.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests

from ..domain import Availability, Count, Decrement, Increment, Result, StockMove
from ..errors import BridgeError, ConfigError, RejectedError
from ..mapping.binder import Binder
from ..mapping.compile import compiled
from ..mapping.lookups import LookupTable
from ..mapping.schema import SystemMapping
from .base import Capability
from .runtime.classify import json_or_none, vendor_decimal
from .runtime.context import ConnectorContext
from .runtime.documents import DocumentTarget, DocumentWriter
from .runtime.ledger import Intent, Ledger
from .runtime.paginate import PageNumber
from .runtime.sender import Reply, Sender

#: API host suffix -> the accounts server of the same data centre (Zoho's "Multiple Data Centers")
ACCOUNTS = {"com": "accounts.zoho.com", "eu": "accounts.zoho.eu", "in": "accounts.zoho.in",
            "com.au": "accounts.zoho.com.au", "jp": "accounts.zoho.jp", "ca": "accounts.zohocloud.ca",
            "com.cn": "accounts.zoho.com.cn", "sa": "accounts.zoho.sa"}
#: Zoho Accounts' answer (HTTP 400) past 10 access tokens per refresh token in 10 minutes
TOKEN_THROTTLED = "Access Denied"
#: /itemdetails takes a comma-separated id list; stay well under URL limits
READ_BATCH = 50
#: how far past an intent's date the settle search pages back, and at most how many pages
SETTLE_WINDOW_DAYS = 1
SETTLE_MAX_PAGES = 20
#: one object of Zoho's JSON answers (an item, a location row), as parsed
ZohoObject = dict[str, Any]
# a mirror's stock is read too: for reconciliation (docs/reconciliation.md), never for the rule
CAPABILITIES = {"mirror": {Capability.POST_MOVES, Capability.READ_AVAILABILITY},
                "system_of_record": {Capability.READ_AVAILABILITY, Capability.APPLY_STOCK_CHANGES}}


def zoho_message(response: requests.Response) -> str | None:
    """``Zoho error <code>: <message>`` from Zoho's envelope, or None when the body is not it."""
    body = json_or_none(response)
    if isinstance(body, dict) and "code" in body:
        return f"Zoho error {body.get('code')}: {body.get('message') or ''}".rstrip()
    return None


class ZohoInventoryConnector:
    def __init__(self, mapping: SystemMapping, sender: Sender, ledger: Ledger,
                 lookups: Mapping[str, LookupTable] | None = None, *, settle_s: float | None = None,
                 clock: Callable[[], float] = time.time):
        self.name, self.mapping, self.sender = mapping.system, mapping, sender
        self.ledger = ledger
        self.base_url = str(mapping.connection.base_url)
        self.organization_id = organization_id(mapping)
        self.capabilities = frozenset(c for role in mapping.roles for c in CAPABILITIES.get(role, ()))
        self._binder = Binder(mapping, (lookups or {}).get(mapping.system))
        #: event key -> the date its adjustment carries, while a write settles (the search window)
        self._dates: dict[str, date] = {}
        settle = settle_s if settle_s is not None else 3 * sender.timeout[1]
        target = DocumentTarget(self._find, _adjustment_id, refused=_refused)
        self._documents = DocumentWriter(mapping, lookups, sender, ledger, target, settle_s=settle, clock=clock)

    # --- mirror and system of record: writes -------------------------------------------------------
    def post_moves(self, moves: Sequence[StockMove]) -> list[Result]:
        return self._dated(moves, self._documents.write)

    def apply_stock_changes(self, changes: Sequence[Decrement | Increment | Count]) -> list[Result]:
        return self._dated(changes, self._documents.write_changes)

    def _dated(self, events: Sequence[Any], write: Callable[[Sequence[Any]], list[Result]]) -> list[Result]:
        """``write`` (the DocumentWriter's), with each event's date at hand for the settle search."""
        dates = {e.idempotency_key: e.occurred_at.astimezone(UTC).date() for e in events}
        self._dates.update(dates)  # keys are distinct per call: one delivery per key is in flight
        try:
            return write(events)
        finally:
            for key in dates:
                self._dates.pop(key, None)

    # --- system of record: reads -------------------------------------------------------------------
    def read_availability(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Availability]:
        """Per (SKU, location) from ``/itemdetails``: on_hand = location_stock_on_hand, free =
        location_actual_available_stock (on hand less what sales orders committed). Items and
        locations Zoho does not know are absent."""
        by_code = self._binder.by_item_code(keys)
        codes, result = list(by_code), {}
        for start in range(0, len(codes), READ_BATCH):
            for item in self._item_details(codes[start:start + READ_BATCH]):
                for sku, location in by_code.get(str(item.get("item_id")), []):
                    figure = self._figure(sku, location, item)
                    if figure is not None:
                        result[(sku, location)] = figure
        return result

    def close(self) -> None:
        self.sender.close()
        self.ledger.close()

    def _item_details(self, item_ids: list[str]) -> list[ZohoObject]:
        reply = self.sender.call("GET", f"{self.base_url}/itemdetails", what="GET itemdetails",
                                 params={"item_ids": ",".join(item_ids), "organization_id": self.organization_id})
        if isinstance(reply, BridgeError):
            raise reply
        envelope_error(reply, "GET itemdetails")
        return list((reply.body or {}).get("items") or [])

    def _figure(self, sku: str, location: str, item: ZohoObject) -> Availability | None:
        code = self._binder.location_code(location)
        row = next((r for r in item.get("locations") or [] if str(r.get("location_id")) == code), None)
        if row is None or self.mapping.internal_location(code or "") != location:
            return None
        factor = compiled(self.mapping).units(sku, None)[0]
        on_hand = vendor_decimal(row.get("location_stock_on_hand")) / factor
        free = vendor_decimal(row.get("location_actual_available_stock", row.get("location_available_stock"))) / factor
        return Availability(item=sku, location=location, on_hand=on_hand, reserved=on_hand - free, free=free)

    # --- settling a lost answer ----------------------------------------------------------------------
    def _find(self, intent: Intent) -> str | None:
        """The adjustment carrying ``intent``'s key in ``reference_number``. The list is newest
        date first and documents no reference filter, so page back to the day before the
        adjustment's own date (the event's date, which can be days before the post); a page
        wholly older than that ends the search: it is not there."""
        oldest = self._window_start(intent)
        paginator = PageNumber(has_more=_has_more)
        pages = self.sender.pages("GET", f"{self.base_url}/inventoryadjustments", paginator,
                                  what="GET inventoryadjustments (search)", max_pages=SETTLE_MAX_PAGES + 1,
                                  params={"organization_id": self.organization_id})
        for number, page in enumerate(pages, 1):
            adjustments = (page.body or {}).get("inventory_adjustments") or []
            found = next((a for a in adjustments if a.get("reference_number") == intent.document_key), None)
            if found is not None:
                return str(found.get("inventory_adjustment_id") or "?")
            if adjustments and all(_date(a.get("date")) < oldest for a in adjustments):
                return None
            if number == SETTLE_MAX_PAGES:
                raise RejectedError(
                    f"cannot tell whether Zoho has the adjustment with reference_number {intent.document_key}: "
                    f"{SETTLE_MAX_PAGES} pages of adjustments dated since {oldest} did not reach it. Search for "
                    "that reference number in Zoho Inventory: if it is there, the event is applied and this dead "
                    "letter can be discarded; if not, apply it by hand (a replay would search the same way)")
        return None

    def _window_start(self, intent: Intent) -> date:
        posted = datetime.fromtimestamp(intent.created_at, UTC).date()
        dates = [self._dates[k] for k in intent.keys if k in self._dates]
        return min([posted, *dates]) - timedelta(days=SETTLE_WINDOW_DAYS)


def _has_more(body: object) -> bool:
    context = body.get("page_context") if isinstance(body, dict) else None
    return bool(isinstance(context, dict) and context.get("has_more_page"))


def envelope_error(reply: Reply, what: str) -> None:
    """Zoho says success with ``code`` 0; anything else in a 2xx body is a refusal."""
    refused = _refused(reply, what)
    if refused is not None:
        raise refused


def _refused(reply: Reply, what: str = "POST inventoryadjustments") -> RejectedError | None:
    """A 2xx whose envelope says it failed. A status ``on_status`` said to ignore stays ignored."""
    body = reply.body
    if 200 <= reply.status < 300 and isinstance(body, dict) and body.get("code") not in (0, None):
        return RejectedError(f"HTTP {reply.status} from {what}: Zoho error {body.get('code')}: {body.get('message')}")
    return None


def _adjustment_id(reply: Reply) -> str | None:
    body = reply.body if isinstance(reply.body, dict) else {}
    adjustment = body.get("inventory_adjustment") or {}
    found = adjustment.get("inventory_adjustment_id")
    return str(found) if found is not None else None


def _date(value: object) -> date:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return date.max  # unreadable: keep paging rather than conclude "not there"


def organization_id(mapping: SystemMapping) -> str:
    """The organization_id every request of the mapping sends (Zoho needs it on every call)."""
    found = {str(spec.query["organization_id"].const) for spec in mapping.requests.values()
             if "organization_id" in spec.query and spec.query["organization_id"].kind == "const"}
    every = all("organization_id" in spec.query for spec in mapping.requests.values())
    if len(found) != 1 or not every:
        raise ConfigError(f"{mapping.system}: every request needs the same constant query.organization_id "
                          "(Zoho requires it on every call; GET /organizations lists yours)")
    return found.pop()


def check_data_centre(mapping: SystemMapping) -> None:
    """The token's accounts host must belong to the API host's data centre."""
    api_host = urlsplit(str(mapping.connection.base_url)).hostname or ""
    token_url = mapping.connection.auth.token_url or ""
    token_host = urlsplit(token_url).hostname or ""
    if not api_host.startswith("www.zohoapis."):
        return  # a proxy or a test double: nothing to compare
    expected = ACCOUNTS.get(api_host.removeprefix("www.zohoapis."))
    if expected is None:
        raise ConfigError(f"{mapping.system}: connection.base_url host {api_host} is not a Zoho data centre "
                          f"({', '.join('www.zohoapis.' + dc for dc in ACCOUNTS)})")
    if token_host != expected:
        raise ConfigError(f"{mapping.system}: connection.auth.token_url must be https://{expected}/oauth/v2/token "
                          f"for the data centre of {api_host} (tokens are issued per data centre)")


def from_context(ctx: ConnectorContext, *, settle_s: float | None = None,
                 clock: Callable[[], float] = time.time) -> ZohoInventoryConnector:
    mapping = ctx.mapping
    if mapping.connection.auth.kind != "oauth2_refresh_token":
        raise ConfigError(f"{mapping.system}: Zoho Inventory takes auth kind oauth2_refresh_token")
    check_data_centre(mapping)
    sender = ctx.sender(message=zoho_message, transient_token_errors=(TOKEN_THROTTLED,))
    return ZohoInventoryConnector(mapping, sender, ctx.ledger(clock), ctx.lookups, settle_s=settle_s, clock=clock)
