"""Salesforce B2C Commerce (SFCC) as a channel: availability out to Omnichannel Inventory (OCI),
sales in from the SCAPI orders of each site, polled. See docs/connectors/sfcc.md.

Out: OCI "Availability Records, Batch Update" (``POST .../availability-records/actions/batch-update``),
one record per (SKU, OCI location) with the absolute ``onHand``, built by the mapping engine from the
mapping's ``requests``. ``actionRequestId`` is OCI's idempotency id: a uuid5 of the record's content
(``effectiveDate`` = now included), so a record sent again is applied once and a new figure is a new
request. OCI reports partial success (a refused record in the answer's error section): each
figure gets its own outcome, and a batch refused as a whole is retried record by record so one bad
SKU dead-letters with OCI's message while the others go through.

In: orders.py says what an order means; ``poll_changes`` reads each site's orders modified since its
cursor (runtime/polling.PollWindow, one window per site) and sync/channel_poll.ChannelPoller
stores them before ``commit_poll`` moves the cursors.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from ...domain import Delivered, Figure, Result
from ...errors import BridgeError, ConfigError, RejectedError, RetryableError
from ...mapping.binder import Binder
from ...mapping.compile import UnmappedError
from ...mapping.engine import build_requests
from ...mapping.schema import SystemMapping
from ...mapping.wire import HttpRequest
from ..base import Capability, Polled
from ..runtime.batch import in_batches, unsent_rows
from ..runtime.inbox import Inbox
from ..runtime.polling import PollWindow, parse_time
from ..runtime.sender import Reply, Sender
from . import orders as order_rules

KEY_NAMESPACE = uuid.UUID("5f0c2a7e-9b41-4d8a-a3c6-1e2f7b9d0c55")
#: records per batch-update call: the bridge's own bound (OCI documents partial success, not a maximum)
MAX_RECORDS = 100
DECIMALS = 3  # onHand is a Double; OCI shows three decimals (25.000): round down, never show stock not there
PAGE = 200  # getOrders: limit 1..200, and offset + limit <= 10000
MAX_OFFSET = 10000
MAX_PAGES = 50  # per site and pass; the rest comes next pass (the cursor is the newest order read)
#: re-read this much before each site's cursor: an order saved late with an earlier lastModified
OVERLAP = timedelta(minutes=5)
#: an order comes back whenever it changes (shipped, completed, cancelled weeks later): its lines'
#: keys are kept as long as the inbox keeps delivery keys, longer than the queue keeps its entries
KEEP_SEEN_S = 400 * 86400.0
RECORD_FIELDS = ("stockKeepingUnit", "locationIdentifier", "onHand", "actionRequestId")


@dataclass(frozen=True)
class Row:
    index: int
    figure: Figure
    record: dict[str, Any]


@dataclass(frozen=True)
class Site:
    """A B2C site whose orders count at one channel location (``locations.map[].attrs.site``)."""

    id: str
    location: str
    window: PollWindow


class SfccConnector:
    def __init__(self, mapping: SystemMapping, sender: Sender, inbox: Inbox, *, binder: Binder, organization: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.name, self._mapping, self._sender, self._inbox = mapping.system, mapping, sender, inbox
        self._binder, self._clock = binder, clock
        self._base = str(mapping.connection.base_url).rstrip("/")
        self._orders_url = f"{self._base}/checkout/orders/v1/organizations/{organization}/orders"
        self._batch_size = min(mapping.writes.batch_size, MAX_RECORDS)
        self._sites = [Site(site, code, PollWindow(inbox, f"orders:{site}", OVERLAP, KEEP_SEEN_S,
                                                  lambda: clock().timestamp(), seen_kind="orders:line"))
                       for site, code in sites_of(mapping).items()]
        polls = {Capability.POLL_CHANGES} if self._sites else set()
        self.capabilities = frozenset({Capability.PUSH_AVAILABILITY, *polls})
        self._wake: Callable[[], None] = lambda: None

    # -- availability out -----------------------------------------------------------------------

    def push_availability(self, figures: Sequence[Figure]) -> list[Result]:
        outcomes: list[Result | None] = [None] * len(figures)
        now = self._clock()
        rows = [r for r in (self._row(i, f, now, outcomes) for i, f in enumerate(figures)) if r is not None]
        in_batches(rows, self._batch_size, lambda batch: self._push(batch, outcomes), unsent_rows(outcomes))
        return [o if o is not None else RetryableError("not pushed in this attempt") for o in outcomes]

    def _row(self, index: int, figure: Figure, now: datetime, outcomes: list) -> Row | None:
        if figure.quantity.as_tuple().exponent < -DECIMALS:  # type: ignore[operator]
            figure = replace(figure, quantity=figure.quantity.quantize(Decimal(1).scaleb(-DECIMALS), ROUND_FLOOR))
        try:
            request = self._build(figure, now)
        except UnmappedError as exc:
            outcomes[index] = RejectedError(f"{self.name}: cannot map SKU {figure.item} at {figure.location}: {exc}")
            return None
        record = _records(self.name, request)[0]
        draft = json.dumps({k: v for k, v in record.items() if k != "actionRequestId"}, sort_keys=True, default=str)
        return Row(index, figure, {**record, "actionRequestId": str(uuid.uuid5(KEY_NAMESPACE, draft))})

    def _build(self, figure: Figure, now: datetime) -> HttpRequest:
        tables = {self.name: self._binder.table} if self._binder.table else None
        return build_requests(figure, self._mapping, tables, now=now, new_id=lambda: "")[0]

    def _push(self, batch: list[Row], outcomes: list) -> RetryableError | None:
        """One batch-update; a batch refused as a whole (a 400, or an error that names no record)
        is sent again record by record, so each record gets its own outcome."""
        reply = _unattributed(self._send(batch))
        if isinstance(reply, RejectedError) and len(batch) > 1:
            return in_batches(batch, 1, lambda one: self._push(one, outcomes), unsent_rows(outcomes))
        if isinstance(reply, BridgeError):
            for row in batch:
                outcomes[row.index] = reply
            return reply if isinstance(reply, RetryableError) else None
        refused = refused_records(reply.body)
        for row in batch:
            reason = refused.get(row.record["actionRequestId"])
            outcomes[row.index] = Delivered("on hand set") if reason is None else RejectedError(
                f"{self.name}: OCI refused {row.record['stockKeepingUnit']} at "
                f"{row.record['locationIdentifier']}: {reason}")
        return None

    def _send(self, batch: list[Row]) -> Reply | BridgeError:
        request = self._build(batch[0].figure, self._clock())
        return self._sender.call(request.method, request.url, body={"records": [r.record for r in batch]},
                                 headers=self._sender.engine_headers(request.headers), what="OCI batch-update")

    # -- sales in -------------------------------------------------------------------------------

    def poll_changes(self) -> Polled:
        """Every site's orders modified since its cursor; raises the first failure (nothing is
        committed then, and the next pass reads the same orders again)."""
        passes = {site.id: self._poll_site(site) for site in self._sites}
        return Polled([c for p in passes.values() for c in p.changes], tuple(k for p in passes.values() for k in p.seen),
                      json.dumps({site: p.cursor for site, p in passes.items()}),
                      tuple(r for p in passes.values() for r in p.reports))

    def _poll_site(self, site: Site) -> Polled:
        start = site.window.since()
        rules = order_rules.Rules(self.name, site.location, self._binder.sku_of)
        found = order_rules.read(self._orders(site.id, start), rules)
        return site.window.polled(found.changes, found.latest, found.reports)

    def _orders(self, site: str, start: datetime) -> list[dict[str, Any]]:
        """Orders by lastModified ascending, from ``start``. Pages move the lower bound to the last
        order read (a keyset: an order modified meanwhile moves behind the reader instead of
        shifting the offsets under it); offset only steps over orders sharing one timestamp."""
        read: list[dict[str, Any]] = []
        since, offset = millis(start), 0
        for _ in range(MAX_PAGES):
            page = self._page(site, since, offset)
            read += page
            if len(page) < PAGE:
                return read
            newest = max((t for o in page if (t := parse_time(o.get("lastModified"))) is not None), default=None)
            moved = millis(newest) if newest is not None else since
            since, offset = (since, offset + PAGE) if moved <= since else (moved, 0)
            if offset + PAGE > MAX_OFFSET:
                break
        return read  # the cursor stops at the newest order read; the next pass goes on from there

    def _page(self, site: str, since: str, offset: int) -> list[dict[str, Any]]:
        params = {"siteId": site, "lastModifiedDateFrom": since, "sortBy": "last_modified_date",
                  "sortOrder": "asc", "limit": PAGE, "offset": offset}
        reply = self._sender.call("GET", self._orders_url, params=params, what=f"getOrders ({site})")
        if isinstance(reply, BridgeError):
            raise reply
        data = reply.body.get("data") if isinstance(reply.body, dict) else None
        if not isinstance(data, list):
            raise RetryableError(f"{self.name}: getOrders ({site}) answered without a data list")
        return [o for o in data if isinstance(o, dict)]

    def commit_poll(self, polled: Polled) -> None:
        cursors = json.loads(polled.cursor or "{}")
        for n, site in enumerate(self._sites):  # the sites share one set of seen line keys: record it once
            site.window.commit(Polled((), polled.seen if n == 0 else (), cursors.get(site.id)))

    def on_notice(self, wake: Callable[[], None]) -> None:
        self._wake = wake  # SFCC sends no order notifications: the poller runs on its interval

    def poll_failed(self, error: str) -> None:
        for site in self._sites:
            site.window.failed(error)

    def poll_status(self) -> list[dict[str, object]]:
        return [site.window.status() for site in self._sites]

    def close(self) -> None:
        self._sender.close()
        self._inbox.close()


def sites_of(mapping: SystemMapping) -> dict[str, str]:
    """site id -> the location code its orders count at (the first entry naming the site)."""
    sites: dict[str, str] = {}
    for entry in mapping.locations.map:
        if entry.attrs.get("site"):
            sites.setdefault(entry.attrs["site"], entry.code)
    return sites


def millis(moment: datetime) -> str:
    """RFC 3339 in UTC, to the millisecond SFCC keeps, rounded down (the filter is inclusive)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _records(system: str, request: HttpRequest) -> list[dict[str, Any]]:
    try:
        records = request.body["records"]
        assert records and all(all(k in r for k in RECORD_FIELDS) for r in records)
        return records
    except (KeyError, TypeError, AssertionError):
        raise ConfigError(f"{system}: the request body must be {{records: [{{stockKeepingUnit, locationIdentifier, "
                          f"onHand, actionRequestId, effectiveDate}}]}} (OCI Availability Records, Batch Update)"
                          ) from None


def _unattributed(reply: Reply | BridgeError) -> Reply | BridgeError:
    """A 2xx whose error section names no record (the whole request failed): a refusal."""
    if isinstance(reply, Reply) and "" in (refused := refused_records(reply.body)):
        return RejectedError(f"OCI batch-update answered {reply.status} with an error for no record: {refused['']}")
    return reply


def refused_records(body: Any) -> dict[str, str]:
    """actionRequestId -> OCI's reason, for the records an answer's error section lists ("": an
    error that names no record)."""
    refused: dict[str, str] = {}
    if not isinstance(body, Mapping):
        return refused
    for name, items in body.items():
        if ("error" not in name.lower() and "fail" not in name.lower()) or not isinstance(items, list):
            continue
        for item in (i for i in items if isinstance(i, Mapping)):
            said = item.get("message") or item.get("errorMessage") or item.get("detail") or item.get("errorCode")
            refused[str(item.get("actionRequestId") or "")] = str(said or "refused (no message)")
    return refused


def sfcc_message(response: Any) -> str | None:
    """SCAPI's RFC 7807 problem details ``{type, title, detail}``; OCI answers the same way."""
    try:
        body = response.json()
    except (ValueError, AttributeError):
        return None
    if not isinstance(body, dict) or not (body.get("title") or body.get("detail")):
        return None
    kind = str(body.get("type") or "").rsplit("/", 1)[-1]
    return f"{body.get('title') or kind}: {body.get('detail') or ''}".strip(": ") + (f" ({kind})" if kind else "")
