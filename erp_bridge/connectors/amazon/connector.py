"""Amazon SP-API as a channel: availability out (listings.py), sales in by polling Orders API v0.

Amazon's order notifications go through SQS/EventBridge, not to an HTTP endpoint the bridge
serves, so orders are polled on the one durable poller (runtime/polling.PollWindow under
sync/channel_poll.ChannelPoller). A pass walks one **window** of ``LastUpdateDate``:

- ``LastUpdatedAfter`` = the stored cursor less the overlap; ``LastUpdatedBefore`` = now less
  three minutes (Amazon refuses anything later than two minutes ago), fixed for the whole walk
  because ``NextToken`` does not change the filters and Amazon does not promise an order;
- getOrders is slow (0.0167 requests/s, burst 20): a pass reads at most ``pages_per_pass`` pages,
  paced by a token bucket that follows ``x-amzn-RateLimit-Limit``; an unfinished walk (its
  window and the next page's token) is stored and the next pass goes on from it. The cursor
  moves to the window's end only when the walk has read its last page, so it never passes an
  order not read yet;
- getOrderItems per order that needs it (0.5/s, burst 30, paced the same way). A 429 or an error
  part-way keeps what was read, and the same page is read again next pass (done orders skipped).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from ...dispatch.ratelimit import TokenBucket
from ...domain import Figure, Result
from ...errors import BridgeError, RejectedError, RetryableError
from ..base import Capability, Polled
from ..runtime.batch import until_down
from ..runtime.inbox import Inbox
from ..runtime.polling import PollWindow, WindowPolled, rfc3339
from ..runtime.sender import Reply, Sender
from . import orders
from .listings import Listings

ORDERS_PATH = "/orders/v0/orders"
RESOURCE = "orders"
WALK = f"{RESOURCE}:walk"
#: Amazon: LastUpdatedBefore must be at least two minutes before the request; a margin on top
SETTLED = timedelta(minutes=3)
OVERLAP = timedelta(minutes=5)
#: a cancellation must find the sale it gives back: remember counted lines this long
KEEP_SEEN_S = 120 * 86400.0
PAGE_SIZE = 100  # MaxResultsPerPage: 1..100
PAGES_PER_PASS = 3
MAX_ITEM_PAGES = 20
#: wait at most this long for an operation's token within a pass; longer, and the pass stops there
MAX_PACE_WAIT_S = 10.0
#: the largest line quantity whose cancellation is given back (the counted quantity is looked up)
MAX_LINE_QUANTITY = 1000


@dataclass(frozen=True)
class Plan:
    """Per-operation usage plan (rate per second, burst): Amazon's documented defaults."""

    orders: tuple[float, float] = (0.0167, 20)
    items: tuple[float, float] = (0.5, 30)


@dataclass(frozen=True)
class Walk:
    after: str
    before: str
    token: str | None = None
    done: bool = False


class AmazonConnector(WindowPolled):
    capabilities = frozenset({Capability.PUSH_AVAILABILITY, Capability.READ_LISTED, Capability.POLL_CHANGES})

    def __init__(self, name: str, base_url: str, sender: Sender, inbox: Inbox, listings: Listings,
                 rules: orders.Rules, marketplaces: Sequence[str], *, plan: Plan = Plan(),
                 pages_per_pass: int = PAGES_PER_PASS, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self.name, self._base, self._sender, self._inbox = name, base_url.rstrip("/"), sender, inbox
        self._listings, self._rules, self._marketplaces = listings, rules, sorted(set(marketplaces))
        self._window = PollWindow(inbox, RESOURCE, OVERLAP, KEEP_SEEN_S, clock)
        # every process polling this seller takes from the same buckets (PostgreSQL storage)
        limits = inbox.limits()
        self._orders_bucket = limits.bucket(f"{name}:getOrders", *plan.orders)
        self._items_bucket = limits.bucket(f"{name}:getOrderItems", *plan.items)
        self._pages_per_pass, self._sleep = pages_per_pass, sleep

    # -- availability out -----------------------------------------------------------------------

    def push_availability(self, figures: Sequence[Figure]) -> list[Result]:
        return list(until_down(figures, self._listings.push))

    def read_listed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decimal]:
        return self._listings.listed(keys)

    # -- sales in -------------------------------------------------------------------------------

    def poll_changes(self) -> Polled:
        walk = self._walk()
        reading = orders.Reading()
        if walk is None:  # the window is younger than Amazon lets us read
            return Polled((), cursor=None)
        for _ in range(self._pages_per_pass):
            if self._orders_bucket.reserve() > 0:  # takes the call's token when there is one
                break  # getOrders' quota is spent: the walk goes on next pass
            page = self._orders_page(walk, reading)
            if page is None:
                break
            token = page.get("NextToken") or None
            if not self._read_page(page.get("Orders") or [], reading):
                break  # part of this page is still to read: read it again next pass
            walk = Walk(walk.after, walk.before, token, done=token is None)
            if walk.done:
                break
        return Polled(self._window.fresh(reading.changes), tuple(reading.ids), json.dumps(asdict(walk)),
                      tuple(reading.reports))

    def commit_poll(self, polled: Polled) -> None:
        walk = Walk(**json.loads(polled.cursor)) if polled.cursor else None
        super().commit_poll(Polled(polled.changes, polled.seen, walk.before if walk and walk.done else None))
        if walk is not None:
            self._inbox.advance(WALK, "" if walk.done else json.dumps(asdict(walk)))

    def on_notice(self, wake: Callable[[], None]) -> None:
        """Amazon's notifications do not reach the bridge (SQS/EventBridge): the poller's interval rules."""

    # -- the walk -------------------------------------------------------------------------------

    def _walk(self) -> Walk | None:
        stored = self._inbox.cursor(WALK)
        if stored:
            return Walk(**json.loads(stored))
        after, before = self._window.since(), self._window.now() - SETTLED
        return Walk(rfc3339(after), rfc3339(before)) if before > after else None

    def _orders_page(self, walk: Walk, reading: orders.Reading) -> dict[str, Any] | None:
        """One getOrders page of the walk; a failure before anything was read is the pass's failure."""
        params: dict[str, Any] = {"MarketplaceIds": ",".join(self._marketplaces), "LastUpdatedAfter": walk.after,
                                  "LastUpdatedBefore": walk.before, "MaxResultsPerPage": PAGE_SIZE}
        if walk.token:
            params["NextToken"] = walk.token
        reply = self._call(self._orders_bucket, ORDERS_PATH, params, "getOrders", paced=False)
        if isinstance(reply, BridgeError):
            if walk.token and isinstance(reply, RejectedError):  # e.g. an expired NextToken: walk again
                self._inbox.advance(WALK, "")
                raise reply  # what this pass read is read again (and skipped) by the new walk
            _stop(reply, reading)
            return None
        return _payload(reply)

    def _read_page(self, page: Sequence[Mapping[str, Any]], reading: orders.Reading) -> bool:
        """Every order of the page that needs it; False when stopped part-way (throttled, failed)."""
        todo = [(o, kind) for o in page if isinstance(o, Mapping) and (kind := self._rules.kind(o)) is not None]
        done = self._window.seen([orders.done_id(o, kind) for o, kind in todo])
        for order, kind in todo:
            if orders.done_id(order, kind) in done or orders.done_id(order, kind) in reading.ids:
                continue
            if kind == "restock" and orders.done_id(order, "sale") not in self._window.seen(
                    [orders.done_id(order, "sale")]):
                reading.ids.append(orders.done_id(order, kind))  # never counted: nothing to give back
                continue
            items = self._items(str(order["AmazonOrderId"]), reading)
            if items is None:
                return False
            self._order(order, kind, items, reading)
        return True

    def _order(self, order: Mapping[str, Any], kind: orders.Kind, items: list[dict], reading: orders.Reading) -> None:
        if kind == "sale":
            changes = orders.sales(order, items, self._rules)
        else:
            changes = orders.restocks(order, items, self._rules, self._counted)
        reading.changes += changes
        reading.ids += [c.idempotency_key for c in changes]
        reading.ids += [i for c in changes for i in orders.quantity_ids(c)]
        reading.ids.append(orders.done_id(order, kind))

    def _counted(self, keys: Sequence[str]) -> dict[str, Decimal]:
        """The quantity each decrement key counted, for those that were queued."""
        out = {}
        for key in self._window.seen(keys):
            candidates = orders.quantity_candidates(key, MAX_LINE_QUANTITY)
            found = self._window.seen(candidates)
            if found:
                out[key] = Decimal(next(iter(found)).rsplit(":", 1)[1])
        return out

    def _items(self, order_id: str, reading: orders.Reading) -> list[dict] | None:
        items: list[dict] = []
        params: dict[str, Any] = {}
        for _ in range(MAX_ITEM_PAGES):
            reply = self._call(self._items_bucket, f"{ORDERS_PATH}/{order_id}/orderItems", params, "getOrderItems")
            if isinstance(reply, BridgeError):
                _stop(reply, reading)
                return None
            payload = _payload(reply)
            items += [i for i in payload.get("OrderItems") or [] if isinstance(i, dict)]
            if not payload.get("NextToken"):
                return items
            params = {"NextToken": payload["NextToken"]}
        reading.reports.append(f"{self.name}: order {order_id} has more than {MAX_ITEM_PAGES} pages of items; "
                               "read again next pass")
        return None

    def _call(self, bucket: TokenBucket, path: str, params: Mapping[str, Any], what: str,
              paced: bool = True) -> Reply | BridgeError:
        """One GET at the operation's pace (``paced``: wait for a token here; else the caller took it)."""
        while paced and (wait := bucket.reserve()) > 0:
            if wait > MAX_PACE_WAIT_S:  # a very slow plan (x-amzn-RateLimit-Limit): the rest comes next pass
                return RetryableError(f"{what}: Amazon's usage plan allows the next call in {wait:.0f} s", after=wait)
            self._sleep(wait)
        reply = self._sender.call("GET", self._base + path, params=params, what=what)
        if isinstance(reply, Reply):
            _follow_plan(bucket, reply.headers)
        return reply


def _stop(error: BridgeError, reading: orders.Reading) -> None:
    """Keep what this pass read; with nothing read yet, the pass failed (status shows why)."""
    if not reading.ids:
        raise error
    reading.reports.append(f"stopped part-way, the rest comes next pass: {error}")


def _payload(reply: Reply) -> dict[str, Any]:
    body = reply.body if isinstance(reply.body, dict) else {}
    payload = body.get("payload")
    if not isinstance(payload, dict):
        raise RetryableError(f"Amazon answered HTTP {reply.status} without a payload: {str(body)[:200]}")
    return payload


def _follow_plan(bucket: TokenBucket, headers: Mapping[str, str]) -> None:
    """``x-amzn-RateLimit-Limit``: the caller's current rate for the operation (best effort, may be absent)."""
    value = next((v for k, v in headers.items() if k.lower() == "x-amzn-ratelimit-limit"), None)
    try:
        rate = float(value) if value else 0.0
    except ValueError:
        return
    if rate > 0:
        bucket.rate = rate

