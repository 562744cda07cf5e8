"""Square as a channel: availability out as physical counts, sales in from the change history.

Out: ``BatchChangeInventory`` with one ``PHYSICAL_COUNT`` per (variation, location), built by the
mapping engine from the mapping's ``requests`` (decimal-string quantity, ``occurred_at`` = now,
``reference_id`` starting with ``erp-bridge:`` so the count is recognised when it comes back). Square
orders changes by ``occurred_at``, so a till sale made after the figure was read still applies on
top of the count. The ``idempotency_key`` is a uuid5 of the request's content: the same request
sent again is applied once, and any other content gets another key (Square refuses a reused key
with another body). Counts already equal in Square (``BatchRetrieveInventoryCounts``) are not sent.

In: see webhooks.py (verified notifications are stored, then nudge the poller) and history.py
(what a change in Square's history means).
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import requests

from ...domain import Decrement, Delivered, Figure, Increment, Result
from ...errors import BridgeError, ConfigError, RejectedError, RetryableError
from ...mapping.binder import Binder
from ...mapping.compile import UnmappedError
from ...mapping.engine import build_requests
from ...mapping.schema import SystemMapping
from ...mapping.wire import HttpRequest
from ..base import Capability, Polled
from ..runtime.batch import in_batches, unsent_rows
from ..runtime.inbox import Inbox
from ..runtime.polling import PollWindow, WindowPolled, rfc3339
from ..runtime.sender import Reply, Sender
from . import history, webhooks

KEY_NAMESPACE = uuid.UUID("0b6f7a52-52e1-4c8e-8f8a-3c2d5e9b7a41")
DRAFT_ID = "00000000-0000-0000-0000-000000000000"
MAX_CHANGES = 100  # BatchChangeInventory takes at most 100 changes
DECIMALS = 5  # Square quantities carry at most 5 decimals: round down (never show stock that is not there)
PAGE = 1000  # BatchRetrieveInventoryCounts/Changes: limit 1..1000
MAX_PAGES = 50
#: re-read this much history before the cursor: Square may record a change a little late
OVERLAP = timedelta(minutes=5)
KEEP_SEEN_S = 86400.0
COUNTS_URL, CHANGES_URL = "/v2/inventory/counts/batch-retrieve", "/v2/inventory/changes/batch-retrieve"
Key = tuple[str, str]  # (catalog_object_id, location_id)


@dataclass(frozen=True)
class Row:
    index: int
    figure: Figure
    key: Key
    quantity: Decimal


class SquareConnector(WindowPolled):
    capabilities = frozenset({Capability.PUSH_AVAILABILITY, Capability.VERIFY_WEBHOOK, Capability.POLL_CHANGES,
                              Capability.READ_LISTED})

    def __init__(self, mapping: SystemMapping, sender: Sender, inbox: Inbox, *, binder: Binder,
                 webhook_key: str | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.name, self._mapping, self._sender, self._inbox = mapping.system, mapping, sender, inbox
        self._binder, self._webhook_key, self._clock = binder, webhook_key, clock
        self._window = PollWindow(inbox, "changes", OVERLAP, KEEP_SEEN_S, lambda: clock().timestamp(),
                                  seen_kind="change")
        self._base = str(mapping.connection.base_url).rstrip("/")
        self._batch_size = min(mapping.writes.batch_size, MAX_CHANGES)
        hooks = mapping.webhooks
        sale = tuple(hooks.sale_statuses) if hooks and hooks.sale_statuses else history.SALE_STATES
        back = tuple(hooks.restock_statuses) if hooks and hooks.restock_statuses else history.RETURN_STATES
        self._rules = history.Rules(self.name, binder.sku_of, sale, back)
        self._wake: Callable[[], None] = lambda: None

    # -- availability out -----------------------------------------------------------------------

    def push_availability(self, figures: Sequence[Figure]) -> list[Result]:
        outcomes: list[Result | None] = [None] * len(figures)
        rows = [r for r in (self._row(i, f, outcomes) for i, f in enumerate(figures)) if r is not None]
        held = self._counts(list(dict.fromkeys(r.key for r in rows)))
        if isinstance(held, BridgeError):
            return [o if o is not None else held for o in outcomes]
        todo = [r for r in rows if not self._unchanged(r, held, outcomes)]
        in_batches(todo, self._batch_size, lambda batch: self._push(batch, outcomes), unsent_rows(outcomes))
        # every row has its outcome by now; should one not, it is retried rather than dropped
        return [o if o is not None else RetryableError("not pushed in this attempt") for o in outcomes]

    def read_listed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decimal]:
        """What Square shows now (the IN_STOCK count) per (SKU, internal location), for
        reconciliation; keys the mapping cannot map or Square counts nothing for are absent."""
        where: dict[tuple[str, str], Key] = {}
        for sku, location in keys:
            row = self._row(0, Figure(sku, location, Decimal(0)), [None])
            if row is not None:
                where[(sku, location)] = row.key
        held = self._counts(list(dict.fromkeys(where.values())))
        if isinstance(held, BridgeError):
            raise held
        return {key: held[at] for key, at in where.items() if at in held}

    def _row(self, index: int, figure: Figure, outcomes: list) -> Row | None:
        if figure.quantity.as_tuple().exponent < -DECIMALS:  # type: ignore[operator]
            figure = replace(figure, quantity=figure.quantity.quantize(Decimal(1).scaleb(-DECIMALS), ROUND_FLOOR))
        try:
            change = _changes(self._build([figure], DRAFT_ID))[0]["physical_count"]
        except UnmappedError as exc:
            outcomes[index] = RejectedError(f"Square: cannot map SKU {figure.item} at {figure.location}: {exc}")
            return None
        return Row(index, figure, (change["catalog_object_id"], change["location_id"]), Decimal(change["quantity"]))

    def _unchanged(self, row: Row, held: Mapping[Key, Decimal], outcomes: list) -> bool:
        if held.get(row.key) == row.quantity:
            outcomes[row.index] = Delivered("unchanged")
            return True
        return False

    def _push(self, batch: list[Row], outcomes: list) -> RetryableError | None:
        """One BatchChangeInventory; a batch Square refuses is retried row by row, so a bad row
        dead-letters with Square's own message and the others go through."""
        reply = self._send_counts(batch)
        if isinstance(reply, RejectedError) and len(batch) > 1:
            return in_batches(batch, 1, lambda one: self._push(one, outcomes), unsent_rows(outcomes))
        for row in batch:
            outcomes[row.index] = reply if isinstance(reply, BridgeError) else Delivered("counted")
        return reply if isinstance(reply, RetryableError) else None

    def _send_counts(self, batch: list[Row]) -> Reply | BridgeError:
        figures = [r.figure for r in batch]
        now = self._clock()
        draft = self._build(figures, DRAFT_ID, now)
        key = str(uuid.uuid5(KEY_NAMESPACE, json.dumps(draft.json_body(), sort_keys=True, default=str)))
        return self._sender.send(self._build(figures, key, now), what="BatchChangeInventory")

    def _build(self, figures: list[Figure], key: str, now: datetime | None = None) -> HttpRequest:
        tables = {self.name: self._binder.table} if self._binder.table else None
        request = build_requests(figures, self._mapping, tables, now=now or self._clock(), new_id=lambda: key)[0]
        _check_echo_marker(self.name, request)
        return request

    def _counts(self, keys: list[Key]) -> dict[Key, Decimal] | BridgeError:
        """Square's IN_STOCK count per key (absent: Square tracks none there yet)."""
        found: dict[Key, Decimal] = {}
        for start in range(0, len(keys), PAGE):
            chunk = keys[start:start + PAGE]
            body = {"catalog_object_ids": sorted({k[0] for k in chunk}), "location_ids": sorted({k[1] for k in chunk}),
                    "states": [history.IN_STOCK], "limit": PAGE}
            for page in self._pages(COUNTS_URL, body, "BatchRetrieveInventoryCounts"):
                if isinstance(page, BridgeError):
                    return page
                found.update(((c["catalog_object_id"], c["location_id"]), Decimal(c["quantity"]))
                             for c in page.get("counts") or [] if c.get("state") == history.IN_STOCK)
        return found

    def _pages(self, path: str, body: dict[str, Any], what: str) -> Iterator[dict[str, Any] | BridgeError]:
        """Square's POST listings: the cursor goes back in the body until the answer has none."""
        for _ in range(MAX_PAGES):
            reply = self._sender.call("POST", self._base + path, body=body, what=what)
            if isinstance(reply, BridgeError):
                yield reply
                return
            page = reply.body if isinstance(reply.body, dict) else {}
            yield page
            if not page.get("cursor"):
                return
            body = {**body, "cursor": page["cursor"]}
        yield RetryableError(f"{what}: more than {MAX_PAGES} pages in one pass; the rest comes next pass")

    # -- sales in -------------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes,
                       url: str) -> list[Decrement | Increment]:
        """Verify, store the notification durably, nudge the poller. Returns no stock changes:
        those come from the history (history.py), so a notification can never count a sale.
        ``url`` (what the bridge saw) is not signed: behind a proxy or TLS terminator it differs
        from the subscription's URL, so the configured ``webhooks.notification_url`` is."""
        hooks = self._mapping.webhooks
        if self._webhook_key is None or hooks is None or not hooks.notification_url:
            raise webhooks.WebhookRejected(404, f"{self.name}: the mapping has no webhooks section, so notifications "
                                                f"are not taken (the history is polled); add webhooks to take them")
        notice = webhooks.verify(self._webhook_key, hooks.notification_url, headers, body, self._clock())
        if self._inbox.record("notice", [notice.event_id]):
            self._wake()
        return []

    def on_notice(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def poll_changes(self) -> Polled:
        start = self._window.since()
        body = {"location_ids": sorted({e.code for e in self._mapping.locations.map}),
                "types": ["ADJUSTMENT", "PHYSICAL_COUNT"], "updated_after": rfc3339(start), "limit": PAGE}
        changes: list[dict] = []
        for page in self._pages(CHANGES_URL, body, "BatchRetrieveInventoryChanges"):
            if isinstance(page, BridgeError):
                raise page
            changes += page.get("changes") or []
        seen = self._window.seen([history.change_id(c) for c in changes])
        reading = history.read(changes, self._rules, seen.__contains__)
        return self._window.polled(reading.changes, reading.latest, reading.reports, ids=reading.ids)

    def commit_poll(self, polled: Polled) -> None:
        super().commit_poll(polled)
        self._inbox.forget("notice", KEEP_SEEN_S * 2)


def _changes(request: HttpRequest) -> list[dict]:
    try:
        changes = request.body["changes"]
        assert all(c["type"] == "PHYSICAL_COUNT" and c["physical_count"]["quantity"] for c in changes)
        return changes
    except (KeyError, TypeError, AssertionError):
        raise ConfigError("the Square mapping's request body must be {idempotency_key, changes: [{type: "
                          "PHYSICAL_COUNT, physical_count: {catalog_object_id, location_id, state, quantity, "
                          "occurred_at, reference_id}}]} (BatchChangeInventory)") from None


def _check_echo_marker(system: str, request: HttpRequest) -> None:
    for change in _changes(request):
        if not str(change["physical_count"].get("reference_id") or "").startswith(history.ECHO_PREFIX):
            raise ConfigError(f"{system}: physical_count.reference_id must start with {history.ECHO_PREFIX!r} "
                              "(the bridge recognises its own counts by it; without it they come back as recounts)")


def square_message(response: requests.Response) -> str | None:
    """Square's error envelope: ``{"errors": [{"category", "code", "detail", "field"}]}``."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return None
    if not isinstance(errors, list) or not errors:
        return None
    return "; ".join(f"{e.get('code')}: {e.get('detail') or e.get('category')}"
                     + (f" (field {e['field']})" if e.get("field") else "") for e in errors if isinstance(e, dict))
