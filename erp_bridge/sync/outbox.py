"""The system of record's transactional outbox -> the bridge's durable queue (flows 1 and 2).

Polls the Odoo module's markers and move journal, on a nudge (Odoo's post-commit call) or every
``interval_s``. Rows are enqueued first (one transaction), then acknowledged to Odoo with target
``bridge``: from then on the bridge's queue entries, one per target, are the outbox, each done
only when its target succeeded or it was dead-lettered with a reason. A crash between the two
steps re-fetches the rows; their entries already exist, so nothing is queued twice.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from decimal import Decimal

from ..connectors.odoo import availability_of
from ..domain import StockMove
from ..errors import BridgeError
from ..queue.base import NewEntry, Queue
from .availability import AvailabilityCache
from .poller import PollLoop
from .router import Router

log = logging.getLogger(__name__)
ACK_TARGET = "bridge"
FETCH_LIMIT = 500
ACK_KIND = {"marker": "ack_markers", "journal": "ack_journal"}


class OutboxPoller(PollLoop):
    page = FETCH_LIMIT  # a full page means more is waiting: fetch again at once

    def __init__(self, sor: str, connector, router: Router, queue: Queue, cache: AvailabilityCache,
                 interval_s: float, on_enqueued: Callable[[], None] = lambda: None):
        super().__init__()
        self.sor, self.connector, self.router, self.queue, self.cache = sor, connector, router, queue, cache
        self.interval_s, self.on_enqueued, self.name = interval_s, on_enqueued, f"outbox-{sor}"
        self._reports: list[tuple[str, dict]] = []
        self._reports_lock = threading.Lock()

    def report(self, target: str, entry, state: str, error: str | None) -> None:
        """An entry that came from this outbox ended done or dead at ``target``: tell Odoo, which
        shows per-target results. Best effort, sent on the next pass: the row itself was already
        completed when the bridge took it over, so nothing depends on this arriving."""
        ref = (entry.payload or {}).get("source_ref") or ""
        kind, _, rest = ref.partition(":")
        row_id, _, sequence = rest.partition(":")
        if kind not in ACK_KIND or entry.payload.get("system") != self.sor or not sequence:
            return
        result = {"id": int(row_id), "sequence": int(sequence), "target": target, "state": str(state)}
        with self._reports_lock:
            self._reports.append((kind, {**result, "error": error} if error else result))
        self._nudged.set()

    def run_once(self) -> int:
        """One pass over markers and journal; returns how many rows it handled."""
        self._send_reports()
        return self._markers() + self._journal()

    def _send_reports(self) -> None:
        with self._reports_lock:
            reports, self._reports = self._reports, []
        for kind, method in ACK_KIND.items():
            results = [r for k, r in reports if k == kind]
            if results:
                try:
                    _warn_refused(self.sor, kind, getattr(self.connector, method)(results))
                except BridgeError as exc:  # informational only: log and drop
                    log.warning("reporting %d %s result(s) to %s failed: %s", len(results), kind, self.sor, exc)

    def _markers(self) -> int:
        started = self.cache.clock()
        rows = self.connector.fetch_markers(FETCH_LIMIT)
        entries, acks = [], []
        for row in rows:
            found, ack = self._marker_entries(row, started)
            entries += found
            acks.append(ack)
        self._commit(entries, acks, self.connector.ack_markers)
        return len(rows)

    def _marker_entries(self, row: dict, started: float) -> tuple[list[NewEntry], dict]:
        ack = {"id": row["id"], "sequence": row["sequence"], "target": ACK_TARGET, "state": "done"}
        if not row.get("sku"):
            return [], {**ack, "state": "dead", "error": f"product {row['product_id']} has no internal "
                                                          "reference (default_code): it cannot be synced"}
        self.cache.put(availability_of(row["sku"], row["location"], row["availability"]), started)
        return self.router.availability(self.sor, row["sku"], row["location"], cause=f"marker:{row['sequence']}",
                                        origin=row.get("origin") or None,
                                        source_ref=f"marker:{row['id']}:{row['sequence']}"), ack

    def _journal(self) -> int:
        rows = self.connector.fetch_journal(FETCH_LIMIT)
        entries, acks = [], []
        for row in rows:
            ack = {"id": row["id"], "sequence": row["sequence"], "target": ACK_TARGET, "state": "done"}
            if row.get("direction") in ("in", "out") and row.get("sku"):
                entries += self.router.moves(self._move(row))
            elif row.get("direction") in ("in", "out"):
                ack = {**ack, "state": "dead", "error": f"product {row['product_id']} has no internal reference"}
            acks.append(ack)
        self._commit(entries, acks, self.connector.ack_journal)
        return len(rows)

    def _move(self, row: dict) -> StockMove:
        synced = row.get("synced_location") or (row["location"] if row["direction"] == "out" else row["location_dest"])
        return StockMove(system=self.sor, move_id=str(row["move_id"]), item=row["sku"],
                         quantity=Decimal(str(row["quantity"])), uom=row.get("uom"), from_location=row["location"],
                         to_location=row["location_dest"], location=synced, direction=row["direction"],
                         origin=row.get("origin") or None, source_ref=f"journal:{row['id']}:{row['sequence']}")

    def _commit(self, entries: list[NewEntry], acks: list[dict], ack: Callable[[list[dict]], list]) -> None:
        if entries:
            self.queue.enqueue(entries)
            self.on_enqueued()
        if acks:
            _warn_refused(self.sor, ack.__name__, ack(acks))


def _warn_refused(sor: str, what: str, answers: list[dict] | None) -> None:
    """Odoo answers every acknowledgement; 'invalid' and 'unknown' mean something is off."""
    for answer in answers or []:
        if answer.get("status") in ("invalid", "unknown"):
            log.warning("%s refused an acknowledgement (%s): %s %s", sor, what, answer.get("status"),
                        answer.get("detail") or f"row {answer.get('id')}", extra={"answer": answer})
