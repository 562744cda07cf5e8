"""Cin7 Core (formerly DEAR Inventory) as a channel: available stock out, sales in by polling.

Out: a stock adjustment (``POST stockadjustment``, Status ``COMPLETED``) whose lines carry the new
quantity per SKU and location, built by the mapping's request (``writes.batch_size`` lines per
adjustment). The quantity is absolute, so an adjustment sent again after a lost answer sets the
same figures: harmless. One adjustment Cin7 refuses (400: an unknown SKU or location) is sent
again line by line, so the bad line dead-letters with Cin7's own message and the others go through.

In: ``GET saleList?UpdatedSince=`` pages, then ``GET sale?ID=`` for each listed sale whose status
can mean a stock change (sales.py), on the one durable poller (runtime/polling.PollWindow under
sync/channel_poll.ChannelPoller). Cin7's webhooks are not used: they are authenticated by a static
credential only (no signature over the body), need the Automation add-on, and are switched off
after six failed deliveries; polling loses nothing while the bridge is down.

Rate: 60 calls a minute per API application, answered 503 beyond it (the blueprint's status table);
the sender's pacer keeps calls below that, and a 503 is ``Throttled``: Cin7's calls pause a minute.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from ...domain import Delivered, Figure, Result
from ...errors import BridgeError, ConfigError, RejectedError, RetryableError
from ...mapping.binder import Binder
from ...mapping.compile import UnmappedError
from ...mapping.engine import build_requests
from ...mapping.schema import SystemMapping
from ...mapping.wire import HttpRequest
from ..base import Capability, Polled
from ..runtime.batch import in_batches
from ..runtime.inbox import Inbox
from ..runtime.polling import PollWindow, WindowPolled
from ..runtime.sender import Sender
from . import sales

LIMIT = 1000  # saleList page size: 1..1000
MAX_PAGES = 10
#: re-read this much before the cursor: a sale saved a moment late with an earlier Updated
OVERLAP = timedelta(minutes=5)
KEEP_SEEN_S = 14 * 86400.0
#: the blueprint's answer to the 61st call in a minute; it names no Retry-After
RATE_LIMITED_STATUS, RATE_WINDOW_S = 503, 60.0


class Cin7CoreConnector(WindowPolled):
    capabilities = frozenset({Capability.PUSH_AVAILABILITY, Capability.POLL_CHANGES})

    def __init__(self, mapping: SystemMapping, sender: Sender, inbox: Inbox, *, binder: Binder,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.name, self._mapping, self._sender, self._inbox = mapping.system, mapping, sender, inbox
        self._binder, self._clock = binder, clock
        self._base = str(mapping.connection.base_url).rstrip("/")
        self._window = PollWindow(inbox, "sales", OVERLAP, KEEP_SEEN_S, lambda: clock().timestamp())
        self._rules = sales.Rules(self.name, binder.sku_of)

    # -- availability out -----------------------------------------------------------------------

    def push_availability(self, figures: Sequence[Figure]) -> list[Result]:
        outcomes: list[Result | None] = [None] * len(figures)
        todo = [i for i, f in enumerate(figures) if self._mappable(i, f, outcomes)]
        size = self._mapping.writes.batch_size
        in_batches(todo, size, lambda batch: self._adjust(figures, batch, outcomes), outcomes.__setitem__)
        return [o if o is not None else RetryableError("not pushed in this attempt") for o in outcomes]

    def _mappable(self, index: int, figure: Figure, outcomes: list[Result | None]) -> bool:
        try:
            self._build([figure])
        except UnmappedError as exc:
            outcomes[index] = RejectedError(f"Cin7 Core: cannot map SKU {figure.item} at {figure.location}: {exc}")
            return False
        return True

    def _adjust(self, figures: Sequence[Figure], batch: list[int], outcomes: list[Result | None]) -> RetryableError | None:
        reply = self._sender.send(self._build([figures[i] for i in batch]), what="POST stockadjustment")
        if isinstance(reply, RejectedError) and len(batch) > 1:  # find the line Cin7 refuses
            return in_batches(batch, 1, lambda one: self._adjust(figures, one, outcomes), outcomes.__setitem__)
        for index in batch:
            outcomes[index] = reply if isinstance(reply, BridgeError) else Delivered("stock adjusted")
        return reply if isinstance(reply, RetryableError) else None

    def _build(self, figures: list[Figure]) -> HttpRequest:
        tables = {self.name: self._binder.table} if self._binder.table else None
        requests_ = build_requests(figures, self._mapping, tables, now=self._clock(), new_id=lambda: "")
        if len(requests_) != 1 or not isinstance(requests_[0].body, dict) or "Lines" not in requests_[0].body:
            raise ConfigError(f"{self.name}: the availability request must be one POST /stockadjustment whose body "
                              "has Lines: {lines: {...}} (see mappings/cin7_core.yaml)")
        return requests_[0]

    # -- sales in -------------------------------------------------------------------------------

    def poll_changes(self) -> Polled:
        start = self._window.since()
        listed, complete = self._listed(start)
        wanted = {sales.marker(s): s for s in listed if sales.worth_reading(s)}
        seen = self._window.seen(list(wanted))
        reading = sales.Reading()
        for mark, summary in wanted.items():
            if mark not in seen:
                self._read_sale(str(summary.get("SaleID")), reading)
        fresh = self._window.fresh(reading.changes)
        remember = [c.idempotency_key for c in fresh] + [m for m in wanted if m not in seen]
        latest = max((t for t in map(sales.updated, listed) if t is not None), default=None) if complete else None
        if not complete:
            reading.reports.append(f"{self.name}: more than {MAX_PAGES * LIMIT} sales changed since {start:%Y-%m-%d %H:%M}"
                                   f"; the cursor stays until a pass reads them all")
        return self._window.polled(fresh, latest, reading.reports, ids=remember)

    def _listed(self, start: datetime) -> tuple[list[dict[str, Any]], bool]:
        """Every sale changed since ``start`` (True: all of them were read in this pass)."""
        found: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            params = {"UpdatedSince": cin7_time(start), "Page": page, "Limit": LIMIT}
            reply = self._sender.call("GET", f"{self._base}/saleList", params=params, what="GET saleList")
            if isinstance(reply, BridgeError):
                raise reply
            body = reply.body if isinstance(reply.body, dict) else {}
            rows = [s for s in body.get("SaleList") or [] if isinstance(s, dict)]
            found += rows
            if len(rows) < LIMIT or page * LIMIT >= int(body.get("Total") or 0):
                return found, True
        return found, False

    def _read_sale(self, sale_id: str, reading: sales.Reading) -> None:
        reply = self._sender.call("GET", f"{self._base}/sale", params={"ID": sale_id, "CombineAdditionalCharges": "false",
                                                                     "HideInventoryMovements": "true"},
                                  what=f"GET sale {sale_id}")
        if isinstance(reply, BridgeError):
            raise reply
        one = sales.read(reply.body if isinstance(reply.body, dict) else {}, self._rules)
        reading.changes += one.changes
        reading.reports += one.reports

    def on_notice(self, wake: Callable[[], None]) -> None:
        """No notifications are taken (see the module's docstring): the poller runs on its interval."""


def cin7_time(moment: datetime) -> str:
    """The blueprint's date format: UTC, ``yyyy-MM-ddTHH:mm:ss.fff``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def cin7_wait(response: requests.Response) -> float | None:
    """A 503 is Cin7's "60 calls per minute" answer, without Retry-After: wait out the minute."""
    return RATE_WINDOW_S if response.status_code == RATE_LIMITED_STATUS else None


def cin7_message(response: requests.Response) -> str | None:
    """Cin7's error model: ``[{"ErrorCode", "Exception"}]`` (or one such object)."""
    try:
        body = response.json()
    except ValueError:
        return None
    errors = body if isinstance(body, list) else [body]
    said = "; ".join(f"{e.get('ErrorCode')}: {e['Exception']}" for e in errors
                     if isinstance(e, dict) and e.get("Exception"))
    if response.status_code == 403:  # the blueprint: "Method authentication failed"
        said += " (check the account id and API application key named in connection.auth.secrets)"
    return said or None
