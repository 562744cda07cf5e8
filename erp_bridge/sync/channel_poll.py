"""A channel's history or orders -> the bridge's durable queue: the one durable poller, for
platforms without usable webhooks (Amazon, Magento, PrestaShop) and those whose webhooks only
nudge (Square). The connector half (cursor, overlap, seen ids, status) is
connectors/runtime/polling.PollWindow.

Square's notifications say "counts changed", not "this was sold" (see connectors/square/history.py).
The poller reads the channel's history on a nudge (a verified notification) or every
``interval_s``, routes each sale or return exactly as a webhook's would be routed, stores the
entries in one transaction, and only then lets the connector advance its cursor. A crash between
the two re-reads the same history; its entries already exist (idempotency keys), so nothing is
queued twice, and nothing read is lost.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from ..connectors.base import Polled, PollsChanges
from ..errors import BridgeError
from ..queue.base import Queue
from .poller import PollLoop
from .router import Router

log = logging.getLogger(__name__)


class ChannelPoller(PollLoop):
    def __init__(self, channel: str, connector: PollsChanges, router: Router, queue: Queue,
                 interval_s: float, on_enqueued: Callable[[], None] = lambda: None):
        super().__init__()
        self.channel, self.connector, self.router, self.queue = channel, connector, router, queue
        self.interval_s, self.on_enqueued, self.name = interval_s, on_enqueued, f"history-{channel}"
        connector.on_notice(self.nudge)

    def run_once(self) -> int:
        """One pass; returns how many sales and returns it queued."""
        try:
            polled = self.connector.poll_changes()
            # raises RejectedError when no system of record can be chosen: nothing is committed then
            entries = [e for change in polled.changes for e in self.router.channel_change(change)]
        except BridgeError as exc:
            self.connector.poll_failed(str(exc))
            raise
        if entries:
            self.queue.enqueue(entries)
            self.on_enqueued()
        self.connector.commit_poll(polled)
        _report(self.channel, polled)
        return len(polled.changes)


def _report(channel: str, polled: Polled) -> None:
    for line in polled.reports:
        log.warning("%s", line, extra={"target": channel, "report": "not_applied"})
