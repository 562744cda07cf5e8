"""Which connector capability an entry's kind goes to, and events <-> queue entries."""
from __future__ import annotations

from pydantic import ValidationError

from ..connectors.base import Capability
from ..domain import AvailabilityChanged, Event, parse_event
from ..errors import RejectedError
from ..queue.base import Entry, NewEntry

CAPABILITY_OF_KIND: dict[str, Capability] = {
    "decrement": Capability.APPLY_STOCK_CHANGES,
    "increment": Capability.APPLY_STOCK_CHANGES,
    "count": Capability.APPLY_STOCK_CHANGES,
    "move": Capability.POST_MOVES,
    "availability": Capability.PUSH_AVAILABILITY,
}


def capability_for(kind: str) -> Capability:
    try:
        return CAPABILITY_OF_KIND[kind]
    except KeyError:
        raise RejectedError(f"no capability handles entries of kind {kind!r}") from None


def entry_key(event: Event) -> str:
    """The idempotency key an event is queued (and delivered) under.

    A marker without a sequence has the same key every time (``sys:availability:item@loc``); as a
    queue key it would make every later marker a duplicate of the first delivered one, and the
    change would never be pushed. Its time of occurrence tells markers apart instead.
    """
    if isinstance(event, AvailabilityChanged) and event.sequence is None:
        return f"{event.idempotency_key}:{event.occurred_at.timestamp():.6f}"
    return event.idempotency_key


def entry_for(target: str, event: Event) -> NewEntry:
    """The queue entry that delivers ``event`` to ``target``."""
    quantity = getattr(event, "signed_quantity", None)
    if event.kind == "count":
        quantity = None  # an absolute figure, not a change still to come
    return NewEntry(target=target, kind=event.kind, item=event.item, location=event.location,
                    idempotency_key=entry_key(event), payload=event.model_dump(mode="json"),
                    quantity=quantity, coalesce=isinstance(event, AvailabilityChanged))


def event_of(entry: Entry) -> Event:
    """The event an entry carries; a payload that no longer parses can never be delivered."""
    try:
        return parse_event(entry.payload)
    except ValidationError as exc:
        raise RejectedError(f"entry {entry.id}: malformed {entry.kind} payload: "
                            f"{exc.error_count()} error(s), first: {exc.errors()[0]['msg']}") from None


__all__ = ["CAPABILITY_OF_KIND", "capability_for", "entry_for", "entry_key", "event_of"]
