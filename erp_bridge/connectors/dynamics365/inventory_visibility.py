"""Dynamics 365 Inventory Visibility as a mirror (each move is one on-hand change event) and a
system of record (availability from the on-hand index query; channel sales as change events).
Facts: ../shared/specs/dynamics365/inventory-visibility-api.md; guide: docs/connectors/dynamics365.md.

What is Inventory Visibility's own, and all that is here:
- exactly once by the service itself: a change event's ``id`` is de-duplicated ("the same event
  won't be counted twice"), and the mapping puts the event key there (``writes.idempotency:
  {strategy: body_id, field: id}``), so a replay, a retry or a lost answer is simply sent again;
- bulk: ``<path>/bulk`` takes up to 512 events; a bulk refused as a whole is re-sent event by
  event so that only the bad event is rejected (the ids make the re-send harmless);
- the on-hand read: ``POST /onhand/indexquery`` grouped by site and location; ``on_hand`` and
  ``free`` are the ``iv`` data source's calculated measures ``OnHand`` and ``AvailableToReserve``
  of Microsoft's default configuration (they must include the data source the bridge posts to);
- the two-step token (iv_auth.py).
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from ...domain import Availability, Count, Decrement, Delivered, Increment, Result, StockMove
from ...errors import BridgeError, ConfigError, MappingError, RejectedError, RetryableError
from ...mapping.binder import Binder
from ...mapping.compile import UnmappedError, compiled
from ...mapping.engine import build_requests
from ...mapping.lookups import LookupTable
from ...mapping.schema import SystemMapping
from ...mapping.wire import HttpRequest
from ..base import Capability
from ..runtime.batch import until_down
from ..runtime.context import ConnectorContext
from ..runtime.sender import Reply, Sender
from . import iv_auth
from .errors import d365_message

#: the bulk API takes at most this many events per request
BULK_MAX = 512
#: products per on-hand query (the service takes up to 5,000)
QUERY_PRODUCTS = 1000
#: calculated measures of the default configuration (data source ``iv``), compared case-insensitively
ON_HAND_MEASURE, FREE_MEASURE = ("iv", "onhand"), ("iv", "availabletoreserve")
CAPABILITIES = {"mirror": {Capability.POST_MOVES},
                "system_of_record": {Capability.READ_AVAILABILITY, Capability.APPLY_STOCK_CHANGES}}
Built = dict[str, "HttpRequest | BridgeError"]
Lookups = Mapping[str, LookupTable] | None
WriteEvent = StockMove | Decrement | Increment


class InventoryVisibilityConnector:
    def __init__(self, mapping: SystemMapping, sender: Sender, lookups: Lookups = None):
        self.name, self.mapping, self.sender = mapping.system, mapping, sender
        self.base_url = str(mapping.connection.base_url)
        self.organization_id = organization_id(mapping)
        self.capabilities = frozenset(c for role in mapping.roles for c in CAPABILITIES.get(role, ()))
        self._lookups = lookups
        self._binder = Binder(mapping, (lookups or {}).get(mapping.system))
        self._bulk = min(mapping.writes.batch_size, BULK_MAX)

    # --- writes ---------------------------------------------------------------------------------
    def post_moves(self, moves: Sequence[StockMove]) -> list[Result]:
        return self._send(moves)

    def apply_stock_changes(self, changes: Sequence[Decrement | Increment | Count]) -> list[Result]:
        sent = iter(self._send([c for c in changes if isinstance(c, (Decrement, Increment))]))
        refused = RejectedError(f"{self.name} takes change events (decrements, increments), not absolute counts")
        return [refused if isinstance(c, Count) else next(sent) for c in changes]

    def _send(self, events: Sequence[WriteEvent]) -> list[Result]:
        built = {e.idempotency_key: self._build(e) for e in events}
        ready = [r for r in built.values() if isinstance(r, HttpRequest)]
        outcome: dict[str, Result] = {}  # per event, when a bulk was re-sent event by event
        batches = chunks(ready, self._bulk)
        for chunk, result in zip(batches, until_down(batches, lambda c: self._send_chunk(c, outcome)), strict=True):
            for request in chunk:
                outcome.setdefault(request.key, result)
        return [outcome.get(e.idempotency_key) or _failed(built[e.idempotency_key]) for e in events]

    def _build(self, event: WriteEvent) -> HttpRequest | BridgeError:
        try:
            return build_requests(event, self.mapping, self._lookups, now=datetime.now(UTC),
                                  new_id=lambda: str(uuid.uuid4()))[0]
        except UnmappedError as exc:
            return RejectedError(f"cannot map to {self.name}: {exc}")
        except MappingError as exc:
            return exc

    def _send_chunk(self, chunk: list[HttpRequest], outcome: dict[str, Result]) -> Result:
        """One request for the chunk: its result stands for every event of it. A refused bulk goes
        one by one: each event's result lands in ``outcome``; a retryable one stops the batch."""
        if len(chunk) == 1:
            return self._one(chunk[0])
        reply = self.sender.send(bulk_of(chunk))
        if not isinstance(reply, RejectedError):
            return _result(reply)
        for request, result in zip(chunk, until_down(chunk, self._one), strict=True):
            outcome[request.key] = result
        down = [outcome[r.key] for r in chunk if isinstance(outcome[r.key], RetryableError)]
        return down[0] if down else Delivered("sent one by one")

    def _one(self, request: HttpRequest) -> Result:
        return _result(self.sender.send(request))

    # --- system of record: reads ----------------------------------------------------------------
    def read_availability(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Availability]:
        wanted: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
        for sku, location in keys:
            entry = self.mapping.location_entry(location)
            try:
                code = self._binder.item_code(sku)
            except UnmappedError:
                continue
            if entry is not None and self.mapping.internal_location(entry.code) == location:
                wanted.setdefault((code, entry.attrs.get("site", ""), entry.code), []).append((sku, location))
        rows: dict[tuple[str, str, str], dict] = {}
        codes = sorted({k[0] for k in wanted})
        for start in range(0, len(codes), QUERY_PRODUCTS):
            rows.update(self._query(set(codes[start:start + QUERY_PRODUCTS]), {k[1] for k in wanted},
                                    {k[2] for k in wanted}))
        result = {}
        for (code, site, warehouse), asked in wanted.items():
            row = rows.get((code, site, warehouse))
            if row is None:
                continue
            for sku, location in asked:
                result[(sku, location)] = self._figure(sku, location, row)
        return result

    def _query(self, codes: set[str], sites: set[str], locations: set[str]) -> dict[tuple[str, str, str], dict]:
        body = {"filters": {"organizationId": [self.organization_id], "productId": sorted(codes),
                            "siteId": sorted(sites), "locationId": sorted(locations)},
                "groupByValues": ["siteId", "locationId"], "returnNegative": True}
        reply = self.sender.call("POST", f"{self.base_url}/onhand/indexquery", body=body, what="POST onhand/indexquery")
        if isinstance(reply, BridgeError):
            raise reply
        found = {}
        for row in reply.body if isinstance(reply.body, list) else []:
            dims = {str(k).lower(): str(v) for k, v in (row.get("dimensions") or {}).items()}
            found[(str(row.get("productId")), dims.get("siteid", ""), dims.get("locationid", ""))] = row
        return found

    def _figure(self, sku: str, location: str, row: dict) -> Availability:
        factor = compiled(self.mapping).units(sku, None)[0]
        on_hand, free = (_measure(row, m) / factor for m in (ON_HAND_MEASURE, FREE_MEASURE))
        return Availability(item=sku, location=location, on_hand=on_hand, reserved=max(on_hand - free, Decimal(0)),
                            free=free)

    def close(self) -> None:
        self.sender.close()


def chunks(requests: list[HttpRequest], size: int) -> list[list[HttpRequest]]:
    """Up to ``size`` requests per chunk, only requests to the same URL together, in order."""
    by_url: dict[str, list[HttpRequest]] = {}
    for request in requests:
        by_url.setdefault(request.url, []).append(request)
    return [same[i:i + size] for same in by_url.values() for i in range(0, len(same), size)]


def bulk_of(chunk: list[HttpRequest]) -> HttpRequest:
    """Several change events as one ``POST <path>/bulk`` of their bodies."""
    first = chunk[0]
    return HttpRequest("POST", f"{first.url}/bulk", first.headers, [r.body for r in chunk],
                       f"{first.key}+{len(chunk) - 1}", tuple(r.key for r in chunk), f"{first.name} bulk")


def as_sent(requests: list[HttpRequest], mapping: SystemMapping) -> list[HttpRequest]:
    """``mappings preview``: the requests as the connector sends them (bulk where several go)."""
    return [c[0] if len(c) == 1 else bulk_of(c) for c in chunks(requests, min(mapping.writes.batch_size, BULK_MAX))]


def _failed(built: HttpRequest | BridgeError) -> Result:
    return built if isinstance(built, BridgeError) else RetryableError("not sent")  # every built one is sent


def _result(reply: Reply | BridgeError) -> Result:
    return reply if isinstance(reply, BridgeError) else Delivered("sent (the service de-duplicates by id)")


def _measure(row: dict, measure: tuple[str, str]) -> Decimal:
    sources = {str(k).lower(): v for k, v in (row.get("quantities") or {}).items()}
    values = {str(k).lower(): v for k, v in (sources.get(measure[0]) or {}).items()}
    try:
        return Decimal(str(values.get(measure[1], 0)))
    except InvalidOperation:
        return Decimal(0)


def organization_id(mapping: SystemMapping) -> str:
    """The organizationId (the F&O company) every change event of the mapping sends."""
    found = {str(spec.body["organizationId"].const) for spec in mapping.requests.values()
             if spec.body and "organizationId" in spec.body and spec.body["organizationId"].kind == "const"}
    if len(found) != 1 or any(not s.body or "organizationId" not in s.body for s in mapping.requests.values()):
        raise ConfigError(f"{mapping.system}: every request needs the same constant body.organizationId "
                          "(the F&O company, e.g. usmf)")
    return found.pop()


def check_idempotency(mapping: SystemMapping) -> None:
    idem = mapping.writes.idempotency
    if idem.strategy != "body_id" or idem.field != "id":
        raise ConfigError(f"{mapping.system}: set writes.idempotency to {{strategy: body_id, field: id}}: the "
                          "event id is what Inventory Visibility de-duplicates")
    for name, spec in mapping.requests.items():
        node = (spec.body or {}).get("id")
        if node is None or node.kind != "field" or node.field != "key":
            raise ConfigError(f"{mapping.system}: request {name} must send the event key as its id "
                              "(id: {field: key})")


def from_context(ctx: ConnectorContext, *, token_clock: Callable[[], float] = time.monotonic
                 ) -> InventoryVisibilityConnector:
    mapping, conn = ctx.mapping, ctx.mapping.connection
    if conn.auth.kind != "inventory_visibility":
        raise ConfigError(f"{mapping.system}: Inventory Visibility takes auth kind inventory_visibility")
    check_idempotency(mapping)
    strategy = iv_auth.build(conn.auth, ctx.secret, str(conn.base_url), timeout_s=float(conn.timeout_s),
                             clock=token_clock)
    sender = ctx.sender(message=d365_message, auth=strategy)
    return InventoryVisibilityConnector(mapping, sender, ctx.lookups)
