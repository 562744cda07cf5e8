"""What a connector is. Connectors are the only code that does I/O with a system.

A connector declares the capabilities it has; the dispatcher routes each queue entry's kind to one
capability. A batch method returns one outcome per input, in order: ``Delivered`` or the error for
that one item. Raising instead means the whole batch failed the same way (network down, 5xx).
Each connector classifies its responses in one function into the error classes of errors.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Mapping, Protocol, Sequence, Union, runtime_checkable

from ..domain import Availability, Count, Decrement, Event, Increment, StockMove
from ..errors import BridgeError


class Capability(StrEnum):
    READ_AVAILABILITY = "read_availability"
    APPLY_STOCK_CHANGES = "apply_stock_changes"
    PUSH_AVAILABILITY = "push_availability"
    POST_MOVES = "post_moves"
    VERIFY_WEBHOOK = "verify_webhook"


@dataclass(frozen=True)
class Delivered:
    """The target took it. ``detail`` says how (e.g. 'applied', 'duplicate', 'unchanged')."""

    detail: str = "delivered"


Outcome = Union[Delivered, BridgeError]


@dataclass(frozen=True)
class Figure:
    """An availability figure for one channel key, as the channel wants it."""

    item: str
    location: str
    quantity: Decimal
    #: the figure last pushed, for compare-and-set where the target offers it
    previous: Decimal | None = None
    idempotency_key: str = ""


@runtime_checkable
class Connector(Protocol):
    name: str
    capabilities: frozenset[Capability]

    def close(self) -> None: ...


class ReadsAvailability(Protocol):
    def read_availability(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Availability]:
        """Current availability per (item, location); a key the system does not know is absent."""


class AppliesStockChanges(Protocol):
    def apply_stock_changes(self, changes: Sequence[Decrement | Increment | Count]) -> list[Outcome]: ...


class PushesAvailability(Protocol):
    def push_availability(self, figures: Sequence[Figure]) -> list[Outcome]: ...


class PostsMoves(Protocol):
    def post_moves(self, moves: Sequence[StockMove]) -> list[Outcome]: ...


class VerifiesWebhooks(Protocol):
    def verify_webhook(self, headers: Mapping[str, str], body: bytes, url: str) -> list[Event]:
        """Check the signature over the raw body, then normalise. Raises RejectedError (forged,
        malformed) with a reason that never contains the body or a secret."""
