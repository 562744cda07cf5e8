"""The connector half of the one durable poller (sync/channel_poll.ChannelPoller is the other).

A platform whose sales must be polled (Square's history, Amazon's and Magento's orders, PrestaShop's
orders, a webhook-capable platform's safety net) lists what changed since a moment. ``PollWindow``
keeps, in the channel's inbox (the queue's storage):

- the **cursor** per resource: the newest change time read so far. The first pass starts *now*
  (sales made before the bridge was connected are already in the system of record's stock);
  every later pass asks from ``cursor - overlap``, so an order committed late with an earlier
  timestamp is still read; the cursor never moves backwards;
- the **seen** ids (an order line's key, a history entry's id) of what was queued, so the overlap
  and any re-read (a crash between reading and storing) queue nothing twice;
- the poller's **status**: when the last pass succeeded, the last error, and the lag (now minus
  the cursor), for ``erp-bridge status`` and ``/metrics`` in any process.

The connector reads pages (bounded, at the platform's rate), turns them into changes whose
``idempotency_key`` is the seen id, and returns ``window.polled(...)``; the poller stores the
entries in the queue and only then calls ``commit_poll`` -> ``window.commit``. A crash in between
reads the same window again: the entries' keys already exist, nothing is lost or doubled.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ...domain import ChannelChange, Decrement, Increment
from ..base import Polled
from .inbox import Inbox

if TYPE_CHECKING:
    from .sender import Sender

#: kinds of inbox key and cursor names the window uses, after the resource's name
SEEN, OK_AT, ERROR = "seen", "ok_at", "error"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 / RFC 3339 time with a zone (``Z`` too); None when it is not one."""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@dataclass
class Reading:
    """What one pass over a platform's sales or orders read."""

    changes: list[ChannelChange] = field(default_factory=list)
    #: what the bridge cannot count (an unreadable quantity, a line without an item), for the log
    reports: list[str] = field(default_factory=list)
    #: the newest change time read (the window's next cursor), where the platform gives one
    latest: datetime | None = None


class PollWindow:
    def __init__(self, inbox: Inbox, resource: str = "changes", overlap: timedelta = timedelta(minutes=5),
                 keep_seen_s: float = 7 * 86400.0, clock: Callable[[], float] = time.time,
                 seen_kind: str | None = None):
        if keep_seen_s <= overlap.total_seconds():
            raise ValueError("seen ids must be kept longer than the overlap re-reads them")
        self.inbox, self.resource, self.overlap, self.keep_seen_s = inbox, resource, overlap, keep_seen_s
        self.seen_kind = seen_kind or f"{resource}:{SEEN}"
        self._clock = clock

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def cursor(self) -> datetime | None:
        return parse_time(self.inbox.cursor(self.resource))

    def since(self) -> datetime:
        """Where this pass starts: ``cursor - overlap``; on the very first pass, now (stored)."""
        stored = self.cursor()
        if stored is None:
            stored = self.now()
            self.inbox.advance(self.resource, rfc3339(stored))
            return stored
        return stored - self.overlap

    def seen(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` were queued by an earlier pass."""
        return self.inbox.known(self.seen_kind, list(ids))

    def fresh(self, changes: Iterable[Decrement | Increment]) -> list[Decrement | Increment]:
        """``changes`` less those queued before (by their idempotency keys) and repeats within."""
        unique = {c.idempotency_key: c for c in changes}
        known = self.seen(list(unique))
        return [c for key, c in unique.items() if key not in known]

    def polled(self, changes: Sequence[Decrement | Increment], latest: datetime | None,
               reports: Sequence[str] = (), ids: Sequence[str] | None = None) -> Polled:
        """The pass's result: the fresh changes, the ids to remember (their keys unless ``ids``,
        e.g. history entries that became no change), and the new cursor (the newest change time
        read, never earlier than the stored cursor)."""
        fresh = self.fresh(changes)
        remember = [c.idempotency_key for c in fresh] if ids is None else list(ids)
        stored = self.cursor()
        newest = max((t for t in (latest, stored) if t is not None), default=None)
        return Polled(fresh, tuple(remember), rfc3339(newest) if newest else None, tuple(reports))

    def commit(self, polled: Polled) -> None:
        """After the pass's entries are stored in the queue: remember them, move the cursor."""
        self.inbox.record(self.seen_kind, list(polled.seen))
        if polled.cursor:
            current = self.cursor()
            moved = parse_time(polled.cursor)
            if current is None or (moved is not None and moved > current):
                self.inbox.advance(self.resource, polled.cursor)
        self.inbox.forget(self.seen_kind, self.keep_seen_s)
        self.inbox.advance(f"{self.resource}:{OK_AT}", rfc3339(self.now()))
        self.inbox.advance(f"{self.resource}:{ERROR}", "")

    def failed(self, error: str) -> None:
        """A pass failed (the platform is down or refused): kept for status until one succeeds."""
        self.inbox.advance(f"{self.resource}:{ERROR}", error[:500])

    def status(self) -> dict[str, object]:
        """cursor, last success, last error and lag (seconds behind now) of this resource."""
        return _status(self.inbox.system, self.resource, self.inbox.cursors(self.inbox.system), self.now())


def statuses(inbox: Inbox, clock: Callable[[], float] = time.time) -> list[dict[str, object]]:
    """Every poller's status found in the storage, whichever process wrote it (``erp-bridge
    status``). ``inbox`` is any system's inbox on that storage."""
    cursors, now = inbox.cursors(), datetime.fromtimestamp(clock(), UTC)
    return [_status(system, name.removesuffix(f":{OK_AT}"), cursors, now)
            for system, name in cursors if name.endswith(f":{OK_AT}")]


def _status(system: str, resource: str, cursors: dict[tuple[str, str], str], now: datetime) -> dict[str, object]:
    cursor, ok_at = parse_time(cursors.get((system, resource))), parse_time(cursors.get((system, f"{resource}:{OK_AT}")))
    return {"system": system, "resource": resource, "cursor": rfc3339(cursor) if cursor else None,
            "last_success": rfc3339(ok_at) if ok_at else None,
            "last_error": cursors.get((system, f"{resource}:{ERROR}")) or None,
            "lag_s": round((now - cursor).total_seconds(), 1) if cursor else None}


class WindowPolled:
    """The POLL_CHANGES bookkeeping of a connector that polls through one ``PollWindow``
    (``self._window``) and owns a ``Sender`` and an ``Inbox``: mixed in, so the same methods are
    not written again per platform. A connector with more to remember overrides ``commit_poll``
    and calls this one."""

    _window: PollWindow
    _sender: Sender
    _inbox: Inbox

    def commit_poll(self, polled: Polled) -> None:
        self._window.commit(polled)

    def poll_failed(self, error: str) -> None:
        self._window.failed(error)

    def poll_status(self) -> list[dict[str, object]]:
        return [self._window.status()]

    def close(self) -> None:
        self._sender.close()
        self._inbox.close()
