"""Shopify as a channel: availability out with ``inventorySetQuantities``, orders in by webhook.

Each row is a compare-and-set: ``changeFromQuantity`` is the quantity Shopify is known to hold
(``observed`` from our own sets and reads, else the figure we last pushed, else a fresh read), so
a sale made in Shopify since then makes the row fail with ``CHANGE_FROM_QUANTITY_STALE`` instead
of being overwritten. Such a row is re-read and retried later, when the dispatcher recomputes the
figure (the sale's webhook may have landed by then): never a blind overwrite.

The ``@idempotent`` key is a uuid5 of the request's content, so a retry of the same request
(after a timeout, say) carries the same key and Shopify applies it once, while any other content
gets another key (Shopify refuses a key reused with different variables).
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any
from urllib.parse import urlsplit

from ...domain import Decrement, Delivered, Figure, Increment, Result
from ...errors import BridgeError, ConfigError, NotAttempted, RejectedError, RetryableError
from ...mapping.compile import UnmappedError, auth_headers
from ...mapping.engine import build_requests
from ...mapping.lookups import LookupTable
from ...mapping.schema import SystemMapping, UnitRule
from ...mapping.wire import HttpRequest
from ..base import Capability
from ..runtime.context import ConnectorContext
from . import webhooks
from .graphql import Transport

log = logging.getLogger(__name__)

#: fixed, so the same content gives the same key in every process and after a restart
KEY_NAMESPACE = uuid.UUID("5f0c3a62-2f4e-4c1e-9a53-7b1d0f6e2b10")
DRAFT_ID = "00000000-0000-0000-0000-000000000000"
MAX_ROWS = 250  # Shopify input arrays take at most 250 items
READ_BATCH = 50
STALE_RETRY_S = 1.0
UNSENT_DELAY_S = 1.0
STALE = "CHANGE_FROM_QUANTITY_STALE"
#: user-error codes that say "not now" rather than "never": the same request (same @idempotent
#: key) is sent again later. IDEMPOTENCY_CONCURRENT_REQUEST: the key's first request is still
#: running at Shopify; once it is done, a repeat returns its result.
RETRYABLE_CODES = {"IDEMPOTENCY_CONCURRENT_REQUEST": 2.0}
READ_FIELD = ('r{i}: inventoryItem(id: $i{i}) {{ inventoryLevel(locationId: $l{i}) '
              '{{ quantities(names: ["available"]) {{ name quantity }} }} }}')

Key = tuple[str, str]  # (inventory item gid, location gid): Shopify's own ids


@dataclass(eq=False)
class Row:
    """One figure on its way: where it goes in Shopify, what it sets, what it compares with."""

    index: int
    figure: Figure
    key: Key
    quantity: int
    base: int | None = None  # changeFromQuantity

    def name(self) -> str:
        return f"SKU {self.figure.item} at {self.figure.location} ({self.key[0]} @ {self.key[1]})"


class ShopifyConnector:
    capabilities = frozenset({Capability.PUSH_AVAILABILITY, Capability.VERIFY_WEBHOOK, Capability.READ_LISTED,
                              Capability.VERIFIES_WITHOUT_IO})  # verify_webhook stores and calls nothing

    def __init__(self, mapping: SystemMapping, transport: Transport, *, lookup: LookupTable | None = None,
                 webhook_secret: str | None = None):
        _check_units(mapping)
        self.name = mapping.system
        self._mapping, self._transport = mapping, transport
        self._lookups = {mapping.system: lookup} if lookup is not None else None
        self._webhook_secret = webhook_secret
        self._batch_size = min(mapping.writes.batch_size, MAX_ROWS)
        self._url = f"{mapping.connection.base_url}/graphql.json"
        self._headers = auth_headers(mapping.connection.auth)
        #: what Shopify is known to hold, from our successful sets and our reads
        self.observed: dict[Key, int] = {}
        #: confirmed sets per key: a later identical set (3->5 again) must not reuse an old key
        self._generation: dict[Key, int] = {}
        self._lock = threading.Lock()

    # -- availability out -----------------------------------------------------------------------

    def push_availability(self, figures: Sequence[Figure]) -> list[Result]:
        outcomes: list[Any] = [None] * len(figures)
        rows = [r for r in (self._row(i, f, outcomes) for i, f in enumerate(figures)) if r is not None]
        self._know_bases(rows, outcomes)
        batches = self._batches([r for r in rows if outcomes[r.index] is None])
        for n, batch in enumerate(batches):
            failure = self._push(batch, outcomes)
            if failure is not None:  # down or throttled: the rest would fare the same
                for row in (r for later in batches[n + 1:] for r in later):
                    outcomes[row.index] = NotAttempted(failure, after=failure.after or UNSENT_DELAY_S)
                break
        return outcomes

    def _row(self, index: int, figure: Figure, outcomes: list) -> Row | None:
        """Where the mapping sends ``figure``, learnt from the engine's own request."""
        try:
            line = _lines(self._build([figure], DRAFT_ID))[0]
        except UnmappedError as exc:
            outcomes[index] = RejectedError(f"Shopify: cannot map SKU {figure.item} at {figure.location}: {exc}")
            return None
        return Row(index, figure, (str(line["inventoryItemId"]), str(line["locationId"])), int(line["quantity"]))

    def _know_bases(self, rows: list[Row], outcomes: list) -> None:
        """What Shopify shows now per row: what this process saw or set last, else the figure the
        bridge pushed last; read from Shopify when the bridge knows of no push (a first push, or
        reconciliation found the channel edited: then what this process saw is stale too)."""
        for row in rows:
            if row.figure.previous is None:
                row.base = None
                continue
            row.base = self.observed.get(row.key)
            if row.base is None:
                row.base = int(row.figure.previous.to_integral_value(rounding=ROUND_FLOOR))
        unknown = [r for r in rows if r.base is None]
        read = self._read(list(dict.fromkeys(r.key for r in unknown))) if unknown else {}
        for row in unknown:
            if isinstance(read, BridgeError):
                outcomes[row.index] = read
            elif read.get(row.key) is None:
                outcomes[row.index] = RejectedError(f"Shopify does not stock {row.name()}: connect the "
                                                    f"item to the location in Shopify or fix the mapping")
            else:
                row.base = read[row.key]

    def _batches(self, rows: list[Row]) -> list[list[Row]]:
        """Up to batch_size rows each; a key seen twice starts a new batch so that its second row
        compares with what the first one set."""
        batches: list[list[Row]] = [[]]
        for row in rows:
            if len(batches[-1]) == self._batch_size or row.key in {r.key for r in batches[-1]}:
                batches.append([])
            batches[-1].append(row)
        return [b for b in batches if b]

    def _push(self, batch: list[Row], outcomes: list) -> RetryableError | None:
        """Send one batch; returns the error when Shopify is down or throttling."""
        batch = self._changed(batch, outcomes)
        while batch:
            reply = self._send_set(batch)
            if isinstance(reply, BridgeError):
                for row in batch:
                    outcomes[row.index] = reply
                return reply if isinstance(reply, RetryableError) else None
            result = (reply.get("data") or {}).get("inventorySetQuantities")
            if not result or not result.get("userErrors"):
                self._settled(batch, result, outcomes)
                return None
            self._refused(batch, result["userErrors"], outcomes)
            clean = [r for r in batch if outcomes[r.index] is None]
            if result.get("inventoryAdjustmentGroup"):
                self._settled(clean, result, outcomes)
                return None
            batch = clean  # Shopify applied nothing: the clean rows go again, on their own
        return None

    def _changed(self, batch: list[Row], outcomes: list) -> list[Row]:
        todo = []
        for row in batch:
            row.base = self.observed.get(row.key, row.base)  # an earlier batch may have set it
            if row.quantity == row.base:
                outcomes[row.index] = Delivered("unchanged")
            else:
                todo.append(row)
        return todo

    def _settled(self, rows: list[Row], result: dict | None, outcomes: list) -> None:
        if result is None:
            for row in rows:
                outcomes[row.index] = RejectedError(f"Shopify returned no inventorySetQuantities result for {row.name()}")
            return None
        with self._lock:
            for row in rows:
                self.observed[row.key] = row.quantity
                self._generation[row.key] = self._generation.get(row.key, 0) + 1
                outcomes[row.index] = Delivered("set")
        return None

    def _refused(self, batch: list[Row], errors: list[dict], outcomes: list) -> None:
        stale: list[Row] = []
        for error in errors:
            for row in _rows_named(batch, error):
                if outcomes[row.index] is not None or row in stale:
                    continue
                if error.get("code") == STALE:
                    stale.append(row)
                elif error.get("code") in RETRYABLE_CODES:
                    outcomes[row.index] = RetryableError(
                        f"Shopify: {error.get('code')} for {row.name()}: {error.get('message')}",
                        after=RETRYABLE_CODES[error["code"]])
                else:
                    outcomes[row.index] = RejectedError(
                        f"Shopify refused {row.name()}: {error.get('code') or 'error'}: {error.get('message')}")
        if stale:
            self._stale(stale, outcomes)

    def _stale(self, rows: list[Row], outcomes: list) -> None:
        """Someone else changed these quantities (a sale in Shopify): learn the real figure and let
        the dispatcher recompute, since the sale may not have reached the bridge yet."""
        with self._lock:
            for row in rows:
                self.observed.pop(row.key, None)
        read = self._read(list(dict.fromkeys(r.key for r in rows)))
        for row in rows:
            actual = "unknown" if isinstance(read, BridgeError) else read.get(row.key)
            outcomes[row.index] = RetryableError(
                f"Shopify holds {actual} for {row.name()}, not {row.base} ({STALE}: changed in Shopify "
                f"meanwhile); the figure is recomputed at the next attempt", after=STALE_RETRY_S)

    def _send_set(self, batch: list[Row]) -> dict | BridgeError:
        figures = [replace(r.figure, previous=None if r.base is None else Decimal(r.base)) for r in batch]
        draft = self._build(figures, DRAFT_ID)
        generations = [self._generation.get(r.key, 0) for r in batch]
        content = json.dumps([list(draft.keys), draft.json_body(), generations])
        request = self._build(figures, str(uuid.uuid5(KEY_NAMESPACE, content)))
        return self._transport.send(request.url, request.headers, request.json_body() or "", "mutation")

    def _build(self, figures: list[Figure], request_id: str) -> HttpRequest:
        # bodies come from the mapping engine only; ``now`` stays out of the key (see _send_set)
        return build_requests(figures, self._mapping, self._lookups, now=datetime.now(UTC),
                              new_id=lambda: request_id)[0]

    def _read(self, keys: list[Key]) -> dict[Key, int | None] | BridgeError:
        """Shopify's current ``available`` per key (None: not stocked there); updates observed."""
        found: dict[Key, int | None] = {}
        for start in range(0, len(keys), READ_BATCH):
            chunk = keys[start:start + READ_BATCH]
            reply = self._transport.send(self._url, self._headers, json.dumps(read_query(chunk)), "query")
            if isinstance(reply, BridgeError):
                return reply
            data = reply.get("data") or {}
            found.update((key, _available(data.get(f"r{i}"))) for i, key in enumerate(chunk))
        with self._lock:
            self.observed.update((k, v) for k, v in found.items() if v is not None)
        return found

    def read_listed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decimal]:
        """What Shopify shows now (``available``) per (SKU, internal location), for reconciliation;
        keys the mapping cannot map or Shopify does not stock there are absent."""
        where: dict[tuple[str, str], Key] = {}
        for sku, location in keys:
            try:
                line = _lines(self._build([Figure(sku, location, Decimal(0))], DRAFT_ID))[0]
            except UnmappedError:
                continue
            where[(sku, location)] = (str(line["inventoryItemId"]), str(line["locationId"]))
        read = self._read(list(dict.fromkeys(where.values())))
        if isinstance(read, BridgeError):
            raise read
        return {key: Decimal(found) for key, at in where.items() if (found := read.get(at)) is not None}

    # -- webhooks in ----------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, url: str) -> list[Decrement | Increment]:
        """Verified and normalised, in Shopify's terms (item = SKU, location = Shopify location);
        raises webhooks.WebhookRejected(status, reason) for a delivery to refuse."""
        if self._webhook_secret is None or self._mapping.webhooks is None:
            raise ConfigError(f"{self.name}: the mapping has no webhooks.secret to verify deliveries with")
        delivery = webhooks.verify(self._webhook_secret, headers, body, shop_domain=self.shop_domain)
        codes = {e.code for e in self._mapping.locations.map}
        changes = [_at(c, webhooks.location_code(c.location, codes))
                   for c in webhooks.normalise(delivery, self.name, self._mapping.webhooks.default_location)]
        for location in sorted({c.location for c in changes} - codes):
            log.warning("%s: %s order %s at location %s, which is not in mappings/%s.yaml locations.map: add "
                        "{internal: <the stock location it sells from>, code: %s}; its lines are queued and "
                        "dead-letter until then (replay them after the fix)", self.name,
                        "POS" if delivery.payload.get("source_name") == "pos" else "an", delivery.payload.get("id"),
                        location, self.name, location, extra={"target": self.name})
        return changes

    @property
    def shop_domain(self) -> str | None:
        """The shop's myshopify domain, from the Admin API URL (deliveries name it in a header)."""
        host = urlsplit(self._mapping.connection.base_url).hostname
        return host.lower() if host and host.endswith(".myshopify.com") else None

    def close(self) -> None:
        self._transport.close()


def _at(change: Decrement | Increment, location: str) -> Decrement | Increment:
    """``change`` at ``location``; the same object when it is there already (a pydantic copy per
    change cost more than the rest of its normalisation; issue 15)."""
    return change if change.location == location else change.model_copy(update={"location": location})


def read_query(keys: Sequence[Key]) -> dict:
    """One query for many levels, one alias each; ids travel as variables, never in the text."""
    params = ", ".join(f"$i{i}: ID!, $l{i}: ID!" for i in range(len(keys)))
    fields = " ".join(READ_FIELD.format(i=i) for i in range(len(keys)))
    variables = {name: value for i, (item, location) in enumerate(keys)
                 for name, value in ((f"i{i}", item), (f"l{i}", location))}
    return {"query": f"query ReadAvailable({params}) {{ {fields} }}", "variables": variables}


def _available(node: dict | None) -> int | None:
    level = (node or {}).get("inventoryLevel")
    if not level:
        return None
    return next((int(q["quantity"]) for q in level.get("quantities") or [] if q.get("name") == "available"), None)


def _lines(request: HttpRequest) -> list[dict]:
    try:
        return request.body["variables"]["input"]["quantities"]
    except (KeyError, TypeError):
        raise ConfigError("the Shopify mapping's request body must be {query, variables: {input: "
                          "{quantities: [...]}}} (inventorySetQuantities)") from None


def _rows_named(batch: list[Row], error: dict) -> list[Row]:
    """The row a userError's ``field`` points at (input.quantities.N...), else every row."""
    path = error.get("field") or []
    if len(path) >= 3 and path[1] == "quantities" and str(path[2]).isdigit() and int(path[2]) < len(batch):
        return [batch[int(path[2])]]
    return list(batch)


def _check_units(mapping: SystemMapping) -> None:
    # changeFromQuantity is Shopify's own count; a conversion would skew the compare-and-set
    units = mapping.units
    if units.default != UnitRule() or units.uoms or units.items:
        raise ConfigError(f"{mapping.system}: the shopify connector sends whole units as listed; "
                          f"remove the units section (conversions would skew changeFromQuantity)")


def from_context(ctx: ConnectorContext) -> ShopifyConnector:
    """Registry factory: the token from the context's secrets, the SKU table from its lookups."""
    m = ctx.mapping
    token_name = m.connection.auth.secrets.get("token")
    if m.connection.auth.kind != "header" or not token_name:
        raise ConfigError(f"{m.system}: Shopify takes auth kind header (X-Shopify-Access-Token) with secrets.token")
    if m.items.lookup is not None and ctx.table is None:
        raise ConfigError(f"{m.system}: items.lookup names {m.items.lookup.file} but the connector got no lookup tables")
    webhook_secret = ctx.secret(m.webhooks.secret) if m.webhooks else None
    transport = Transport({token_name: ctx.secret(token_name)}, token_name, timeout_s=float(m.connection.timeout_s))
    return ShopifyConnector(m, transport, lookup=ctx.table, webhook_secret=webhook_secret)
