"""Webhook inbox -> the bridge's durable queue (flow 3 for platforms whose webhooks carry ids only).

The connector stored each verified delivery in its inbox (connectors/runtime/inbox.py) before it
was answered. This poller resolves them (the connector reads the order's lines, fetching them where
the webhook carries ids only), drops the changes whose keys were counted before (an order's later
status updates repeat its lines), routes the rest like any channel change, stores the entries,
records their keys as counted, and only then marks the delivery done. A crash in between resolves
it again; the keys make the second time a no-op.
A failed fetch is retried with the vendor's delay or a growing backoff; a refused one (an order
that no longer exists) is retried hourly and logged with the reason, never silently dropped.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from ..connectors.runtime.inbox import LEASE_S, Inbox, Reference
from ..domain import Decrement, Increment
from ..errors import BridgeError, RetryableError
from ..queue.base import NewEntry
from .poller import PollLoop
from .router import Router

log = logging.getLogger(__name__)
BATCH = 50
MAX_BACKOFF_S = 300.0
REFUSED_RETRY_S = 3600.0
#: the inbox's kind for change keys already stored in the queue, and how long they stay there:
#: platforms repeat an order's lines in status updates weeks later (an older update counts again)
COUNTED = "counted"
KEEP_COUNTED_S = 400 * 86400.0


class ResolvesReferences(Protocol):
    name: str
    inbox: Inbox
    on_stored: Callable[[], None]

    def resolve(self, reference: Reference) -> Sequence[Decrement | Increment]: ...


class InboxPoller(PollLoop):
    page = BATCH  # a full batch means more is due: go on at once

    def __init__(self, connector: ResolvesReferences, router: Router, accept: Callable[[list[NewEntry]], object],
                 interval_s: float = 5.0):
        super().__init__()
        self.connector, self.router, self.accept, self.interval_s = connector, router, accept, interval_s
        self.name = f"inbox-{connector.name}"
        connector.on_stored = self.nudge  # a stored delivery is resolved at once, not at the next tick

    def run_once(self) -> int:
        """Resolve the due references; returns how many were handled."""
        due = self.connector.inbox.due(BATCH, lease_s=LEASE_S)  # other processes' pollers skip these
        for reference in due:
            self._resolve(reference)
        return len(due)

    def _resolve(self, reference: Reference) -> None:
        inbox, name = self.connector.inbox, self.connector.name
        try:
            changes = self.connector.resolve(reference)
            seen = inbox.known(COUNTED, [c.idempotency_key for c in changes])
            fresh = [c for c in changes if c.idempotency_key not in seen]
            entries = [e for change in fresh for e in self.router.channel_change(change)]
        except BridgeError as exc:  # the vendor failed, or no system of record can take the sale
            after = _after(exc, reference.attempts)
            log.warning("webhook %s of %s not resolved yet (attempt %d, next in %.0f s): %s", reference.ref, name,
                        reference.attempts + 1, after, exc, extra={"system": name, "error": str(exc)})
            inbox.retry(reference.ref, str(exc), after)
            return
        if entries:
            self.accept(entries)
            inbox.record(COUNTED, [c.idempotency_key for c in fresh])
            inbox.forget(COUNTED, KEEP_COUNTED_S)
        inbox.done(reference.ref)


def _after(error: BridgeError, attempts: int) -> float:
    if isinstance(error, RetryableError):
        return error.after if error.after is not None else min(MAX_BACKOFF_S, 2.0 ** attempts)
    return REFUSED_RETRY_S
