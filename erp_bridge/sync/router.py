"""Which targets a change goes to: pure, from the mapping files.

- A system-of-record change of ``(sku, location)`` -> one coalescing availability entry per channel
  that sells that location. With several internal locations on one channel location
  (``locations.aggregation``), the entry is keyed by the channel location's representative, so
  changes in any of them coalesce into one push and one delivery per channel key is in flight.
- A done move in the system of record -> one entry per mirror of its synced location, never
  coalesced, never back to the mirror that caused it (echo guard).
- A channel sale or restock -> one entry for the system of record (queued in channel terms and
  translated at delivery, so a fixed mapping makes a dead letter replayable) plus availability
  entries for every channel of that location, so they show the drop before the SoR applies it.
"""
from __future__ import annotations

from ..domain import AvailabilityChanged, Decrement, Increment, StockMove, caused_by_bridge_in, key_part
from ..errors import RejectedError
from ..queue.base import NewEntry
from .translate import to_internal


class Router:
    def __init__(self, mappings):
        self.mappings = mappings

    # --- flow 1: availability ---------------------------------------------------------------------
    def channel_keys(self, location: str) -> list[tuple[str, str]]:
        """(channel, representative internal location) for every channel selling ``location``."""
        out = []
        for mapping in self.mappings.channels():
            entry = mapping.location_entry(location)
            if entry is not None and (entry.role or mapping.role) == "channel":
                out.append((mapping.system, mapping.internal_location(entry.code) or location))
        return out

    def availability(self, sor: str, item: str, location: str, cause: str,
                     origin: str | None = None, source_ref: str | None = None) -> list[NewEntry]:
        """Entries that make every channel of ``location`` re-read ``item``; ``cause`` makes the
        key (a marker's sequence, a sale's key) so a redelivered cause is a no-op."""
        entries = []
        for channel, rep in self.channel_keys(location):
            event = AvailabilityChanged(system=sor, item=item, location=rep, origin=origin, source_ref=source_ref)
            entries.append(NewEntry(target=channel, kind="availability", item=item, location=rep,
                                    idempotency_key=f"{key_part(channel)}:{key_part(sor)}:availability:"
                                                    f"{key_part(item)}@{key_part(rep)}:{cause}",
                                    payload=event.model_dump(mode="json"), coalesce=True))
        return entries

    # --- flow 2: moves to mirrors -----------------------------------------------------------------
    def moves(self, move: StockMove) -> list[NewEntry]:
        entries = []
        for mapping in self.mappings.mirrors():
            if mapping.role_of(move.location) != "mirror" or caused_by_bridge_in(move.origin, mapping.system):
                continue
            entries.append(NewEntry(target=mapping.system, kind="move", item=move.item, location=move.location,
                                    idempotency_key=f"{mapping.system}:{move.idempotency_key}",
                                    payload=move.model_dump(mode="json"), quantity=move.signed_quantity))
        return entries

    # --- flow 3: channel changes ------------------------------------------------------------------
    def channel_change(self, change: Decrement | Increment) -> list[NewEntry]:
        """Raises RejectedError only when no system of record can be chosen at all."""
        try:
            internal = to_internal(self.mappings, change)
        except RejectedError:
            internal = None  # queued anyway: it dead-letters with the reason, replayable after a fix
        sor = self._sor(internal.location if internal else None)
        entry = NewEntry(target=sor, kind=change.kind,
                         item=internal.item if internal else change.item,
                         location=internal.location if internal else change.location,
                         idempotency_key=change.idempotency_key, payload=change.model_dump(mode="json"),
                         quantity=change.signed_quantity)
        if internal is None:
            return [entry]
        return [entry, *self.availability(sor, internal.item, internal.location,
                                          cause=f"change:{change.idempotency_key}", origin=change.channel)]

    def _sor(self, location: str | None) -> str:
        if location is not None:
            return self.mappings.system_of_record(location).system
        sors = {m.system for m in self.mappings.systems.values() if "system_of_record" in m.roles}
        if len(sors) != 1:
            raise RejectedError(f"cannot choose a system of record for an unmapped location among {sorted(sors)}")
        return sors.pop()


def prepare(mappings, event):
    """Delivery-time step: channel changes are translated with the mappings as they are now."""
    if isinstance(event, (Decrement, Increment)):
        return to_internal(mappings, event)
    return event

