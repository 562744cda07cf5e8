"""Availability resolvers: the figure an availability marker pushes, computed at dispatch time.

A resolver is ``(target, entries) -> list[Figure | BridgeError]``, one per entry, in order. The
channel rules (buffer, allocation, cap, rounding) come in a later issue; the default here is
DESIGN.md flow 4 alone: SoR free quantity minus decrements received but not yet applied.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Callable, Sequence

from ..connectors.base import Figure, ReadsAvailability
from ..domain import Availability
from ..errors import BridgeError, ConfigError, RejectedError, RetryableError
from ..queue.base import Entry, Queue

AvailabilityResolver = Callable[[str, Sequence[Entry]], list["Figure | BridgeError"]]


class SorAvailability:
    """Reads the system of record now (never a figure computed earlier) and subtracts the
    decrements still queued for it, so a slow or down SoR does not reopen the oversell window."""

    def __init__(self, queue: Queue, sor: ReadsAvailability, sor_target: str):
        self._queue = queue
        self._sor = sor
        self._sor_target = sor_target

    def __call__(self, target: str, entries: Sequence[Entry]) -> list[Figure | BridgeError]:
        keys = list(dict.fromkeys((e.item, e.location) for e in entries))
        try:
            read = self._sor.read_availability(keys)
        except BridgeError as exc:
            return [exc] * len(entries)
        except Exception as exc:  # the SoR connector failed in a way it did not classify
            return [RetryableError(f"reading {self._sor_target}: {type(exc).__name__}: {exc}")] * len(entries)
        return [self._figure(e, read.get((e.item, e.location))) for e in entries]

    def _figure(self, entry: Entry, availability: Availability | None) -> Figure | BridgeError:
        if availability is None:
            return RejectedError(f"{self._sor_target} does not know {entry.item}@{entry.location}")
        pending = self._queue.pending_quantity(self._sor_target, entry.item, entry.location,
                                               kinds={"decrement"})
        return Figure(item=entry.item, location=entry.location,
                      quantity=max(Decimal(0), availability.free + pending),
                      idempotency_key=entry.idempotency_key)


def no_resolver(target: str, entries: Sequence[Entry]) -> list[Figure | BridgeError]:
    """Used when no system of record is configured: markers cannot be resolved, say why."""
    return [ConfigError(f"no system of record configured to compute availability for {target}")] * len(entries)
