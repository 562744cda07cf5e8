"""What a connector is. Connectors are the only code that does I/O with a system.

A connector declares the capabilities it has; the dispatcher routes each queue entry's kind to one
capability, whose value is the method it calls (typed by the Protocols below). A batch method
returns one result per input, in order: ``Delivered`` or the error for that one item. Raising
instead means the whole batch failed the same way (network down, 5xx). Connectors on the runtime
(connectors/runtime) classify every answer in one place, by the mapping's ``writes.on_status``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from ..domain import Availability, Count, Decrement, Event, Figure, Increment, Result, StockMove


class Capability(StrEnum):
    READ_AVAILABILITY = "read_availability"
    APPLY_STOCK_CHANGES = "apply_stock_changes"
    PUSH_AVAILABILITY = "push_availability"
    POST_MOVES = "post_moves"
    VERIFY_WEBHOOK = "verify_webhook"
    #: the system keeps a transactional outbox the bridge polls (fetch/ack markers and journal)
    OUTBOX = "outbox"
    #: a channel can say what it shows now (reconciliation)
    READ_LISTED = "read_listed"
    #: sales are read from the channel's own history by a poller (its webhooks only nudge it)
    POLL_CHANGES = "poll_changes"
    #: the connector keeps verified webhook references that a worker resolves (sync/inbox.py)
    INBOX = "inbox"
    #: the system shows the last reconciliation's differences to its users (Odoo's Stock Sync menu)
    REPORT_DRIFT = "report_drift"
    #: the bridge's documents in the system can be searched by their key (missing or doubled moves)
    AUDIT_DOCUMENTS = "audit_documents"
    #: ``verify_webhook`` does no I/O (no inbox, no call out): the webhook route runs it on the
    #: event loop for small bodies instead of in a worker thread (http/webhooks.py). A connector
    #: that stores the delivery before answering must not declare it: its fsync would stall every
    #: request
    VERIFIES_WITHOUT_IO = "verifies_without_io"


@runtime_checkable
class Connector(Protocol):
    name: str
    capabilities: frozenset[Capability]

    def close(self) -> None: ...


class ReadsAvailability(Protocol):
    def read_availability(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Availability]:
        """Current availability per (item, location); a key the system does not know is absent."""


class AppliesStockChanges(Protocol):
    def apply_stock_changes(self, changes: Sequence[Decrement | Increment | Count]) -> list[Result]: ...


class PushesAvailability(Protocol):
    def push_availability(self, figures: Sequence[Figure]) -> list[Result]: ...


class PostsMoves(Protocol):
    def post_moves(self, moves: Sequence[StockMove]) -> list[Result]: ...


class VerifiesWebhooks(Protocol):
    def verify_webhook(self, headers: Mapping[str, str], body: bytes, url: str) -> list[Event]:
        """Check the signature over the raw body, then normalise. Raises RejectedError (forged,
        malformed) with a reason that never contains the body or a secret."""


class ReadsListed(Protocol):
    def read_listed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decimal]:
        """What the channel shows now per (SKU, internal location); keys it does not stock are absent."""


class ReportsDrift(Protocol):
    def report_drift(self, run_at: str, systems: Sequence[str], rows: Sequence[Mapping[str, str]]) -> None:
        """Replace the differences shown for ``systems`` with ``rows`` (sync/reconcile.rows);
        ``run_at``: 'YYYY-MM-DD HH:MM:SS' UTC. Long reports come in several calls, same run_at."""


class AuditsDocuments(Protocol):
    def audit_documents(self, since: float, limit: int) -> list[tuple[Any, list[str]]]:
        """(ledger Intent, ids of every document holding its key now) per document confirmed since
        ``since`` (runtime/documents.DocumentWriter.audit). Raises BridgeError when the system fails."""


class ReadsOutbox(Protocol):
    def fetch_markers(self, limit: int = 500) -> list[dict]: ...

    def ack_markers(self, results: list[dict]) -> list[dict]: ...

    def fetch_journal(self, limit: int = 500) -> list[dict]: ...

    def ack_journal(self, results: list[dict]) -> list[dict]: ...


@dataclass(frozen=True)
class Polled:
    """One pass over a channel's history: the sales and returns found, and what the connector
    remembers once their queue entries are stored (``commit_poll``)."""

    changes: Sequence[Decrement | Increment]
    #: ids of the history entries read, so a re-read one is skipped
    seen: tuple[str, ...] = ()
    #: how far the history has been read (the connector's own format)
    cursor: str | None = None
    #: changes seen but deliberately not applied (a recount typed into a till), for the log
    reports: tuple[str, ...] = ()


class PollsChanges(Protocol):
    def poll_changes(self) -> Polled:
        """Read the history since the stored cursor; raises BridgeError when the channel fails."""

    def commit_poll(self, polled: Polled) -> None:
        """Remember ``polled`` (after its entries are durably queued): ids seen, cursor advanced."""

    def on_notice(self, wake: Callable[[], None]) -> None:
        """``wake`` is called when a verified notification says the history has news."""

    def poll_failed(self, error: str) -> None:
        """A pass failed: keep ``error`` for status until one succeeds (runtime/polling.PollWindow)."""

    def poll_status(self) -> list[dict[str, object]]:
        """Per polled resource: cursor, last success, last error, lag_s (PollWindow.status)."""
