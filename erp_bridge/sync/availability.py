"""The availability rule (DESIGN.md flows 1, 4, 5).

channel figure = policy(aggregate over the channel location's internal locations of
                        (SoR free quantity read NOW - decrements received but not yet applied))
A figure equal to the one last pushed to that channel key is not pushed again.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import NamedTuple

from ..domain import Availability, Delivered, Figure, Result
from ..errors import BridgeError, ConfigError, RejectedError, RetryableError, Throttled
from ..mapping.schema import QuantityPolicy
from ..queue.base import Entry, Queue
from .figures import FigureStore
from .policy import channel_quantity

Key = tuple[str, str]
DEFAULT_POLICY = QuantityPolicy(basis="free")


class Cached(NamedTuple):
    availability: Availability
    age_s: float
    #: when the read that produced it started (epoch seconds, the queue's clock)
    read_started: float


class AvailabilityCache:
    """Last known SoR availability per (item, location), with its age; fed by every read.

    Never over-report (an answer = availability - pending decrements). A cached figure may predate
    a change applied to the SoR since, by this process or another one (a separate `erp-bridge
    worker`), so an answer built on it counts as pending every decrement delivered since the read
    started (``SorReader.pending(..., since=read_started)``): the queue, shared by all processes,
    is the authority. Invalidation (before the dispatcher acks an applied change) only keeps this
    process from serving a figure it knows is old; on PostgreSQL every process also hears of the
    acks of all processes (``Queue.subscribe_applied``) and forgets the figures it read of those
    keys, which another host's apply may have reached first. Between that invalidation and the ack a read
    sees the change twice (applied in the SoR, not yet done in the queue): a safe under-report
    for that one answer, which must not be cached, so the key is *held* (nothing is cached for
    it) until the dispatcher invalidates again after the ack, or ``hold_s`` at most.
    """

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._data: dict[Key, tuple[Availability, float]] = {}
        self._invalidated: dict[Key, float] = {}
        self._all_invalidated = float("-inf")  # forget(None): every key, at once
        self._held: dict[Key, float] = {}  # key -> hold ends (an ack in progress)
        self._lock = threading.Lock()

    def put(self, availability: Availability, read_started: float) -> bool:
        key = (availability.item, availability.location)
        with self._lock:
            if read_started <= max(self._invalidated.get(key, float("-inf")), self._all_invalidated):
                return False
            if self.clock() < self._held.get(key, float("-inf")):
                return False
            self._data[key] = (availability, read_started)
        return True

    def invalidate(self, item: str, location: str, hold_s: float = 0.0) -> None:
        """Forget the key's figure; with ``hold_s``, cache nothing for it until the next
        invalidation without one (or ``hold_s`` passed)."""
        key, now = (item, location), self.clock()
        with self._lock:
            self._invalidated[key] = now
            self._data.pop(key, None)
            if hold_s:
                self._held[key] = now + hold_s
            else:
                self._held.pop(key, None)

    def forget(self, keys: Iterable[Key] | None) -> None:
        """What another process's ack makes stale (Queue.subscribe_applied): forget these keys'
        figures (``None``: every key's) and refuse those of reads that started before now. A
        hold stays: only this process's own dispatcher ends it, after its own ack."""
        with self._lock:
            now = self.clock()
            if keys is None:
                self._all_invalidated = now
                self._data.clear()
                return
            for key in keys:
                self._invalidated[key] = now
                self._data.pop(key, None)

    def get(self, item: str, location: str) -> Cached | None:
        with self._lock:
            found = self._data.get((item, location))
        return None if found is None else Cached(found[0], self.clock() - found[1], found[1])


class SorReader:
    """Reads each location's system of record now and keeps the cache warm."""

    def __init__(self, mappings, connectors, cache: AvailabilityCache, queue: Queue):
        self.mappings, self.connectors, self.cache, self.queue = mappings, connectors, cache, queue

    def sor_of(self, location: str) -> str:
        return self.mappings.system_of_record(location).system

    def read(self, keys: Iterable[Key]) -> dict[Key, Availability | BridgeError]:
        by_sor: dict[str, list[Key]] = defaultdict(list)
        out: dict[Key, Availability | BridgeError] = {}
        for key in dict.fromkeys(keys):
            try:
                by_sor[self.sor_of(key[1])].append(key)
            except ConfigError as exc:
                out[key] = exc
        for sor, wanted in by_sor.items():
            out.update(self._read_one(sor, wanted))
        return out

    def _read_one(self, sor: str, keys: list[Key]) -> dict[Key, Availability | BridgeError]:
        started = self.cache.clock()
        try:
            found = self.connectors[sor].read_availability(keys)
        except Throttled as exc:  # the SoR's refusal: the dispatcher pauses the SoR, not the channel
            return {k: Throttled(f"reading {sor}: {exc}", after=exc.after, system=sor) for k in keys}
        except BridgeError as exc:
            return {k: exc for k in keys}
        except Exception as exc:  # an unclassified connector failure is worth another try
            return {k: RetryableError(f"reading {sor}: {type(exc).__name__}: {exc}") for k in keys}
        for availability in found.values():
            self.cache.put(availability, started)
        return {k: found.get(k) or RejectedError(f"{sor} does not know item {k[0]!r} at {k[1]!r}") for k in keys}

    def pending(self, item: str, location: str, since: float | None = None) -> Decimal:
        """Decrements received for (item, location) but not yet applied in its SoR (<= 0); with
        ``since``, also those applied after it (a figure read then may not show them yet)."""
        return self.queue.pending_quantity(self.sor_of(location), item, location, kinds={"decrement"},
                                           done_since=since)

    @staticmethod
    def net(availability: Availability, pending: Decimal) -> Availability:
        """Availability minus the pending decrements (read BEFORE the availability)."""
        if not pending:
            return availability
        forecast = None if availability.forecast is None else availability.forecast + pending
        return availability.model_copy(update={"free": availability.free + pending, "forecast": forecast})


def aggregate(parts: Sequence[Availability], how: str | None) -> Availability:
    """Several internal locations shown as one channel location (``locations.aggregation``)."""
    if len(parts) == 1:
        return parts[0]
    picks: dict[str, Callable[[list[Decimal]], Decimal]] = {"sum": lambda v: sum(v, Decimal(0)), "min": min, "max": max}
    pick = picks[how or "sum"]

    def combine(name: str) -> Decimal | None:
        values = [getattr(p, name) for p in parts]
        return None if any(v is None for v in values) else pick(values)

    return parts[0].model_copy(update={n: combine(n) for n in ("on_hand", "reserved", "free", "forecast")})


class AvailabilityPush:
    """The dispatcher's push strategy for channels: resolve at dispatch time, skip unchanged
    figures, push the rest, remember what the channel now shows."""

    def __init__(self, mappings, reader: SorReader, figures: FigureStore):
        self.mappings, self.reader, self.figures = mappings, reader, figures

    def __call__(self, target: str, connector, entries: Sequence[Entry]) -> list[Result | BridgeError]:
        mapping = self.mappings.systems[target]
        quantities = self.expected(target, [(e.item, e.location) for e in entries])
        prepared = [self._figure(target, mapping, e, quantities[(e.item, e.location)]) for e in entries]
        todo = [p for p in prepared if isinstance(p, Figure)]
        results = iter(_push(connector, todo) if todo else [])
        outcomes = [next(results) if isinstance(p, Figure) else p for p in prepared]
        for entry, item, outcome in zip(entries, prepared, outcomes):
            if isinstance(item, Figure) and isinstance(outcome, Delivered):
                self.figures.put(target, item.item, self._code(mapping, entry.location), item.quantity)
        return outcomes

    def expected(self, target: str, keys: Sequence[Key]) -> dict[Key, Decimal | BridgeError]:
        """The rule's figure now for each (item, channel location) of ``target``: the SoR read now,
        less the decrements received but not applied (read first: see AvailabilityCache)."""
        mapping = self.mappings.systems[target]
        wanted = {key: self._internals(mapping, key) for key in dict.fromkeys(keys)}
        internal = list(dict.fromkeys(k for ks in wanted.values() for k in ks))
        pending = {k: self._pending(k) for k in internal}
        read = self.reader.read(internal)
        return {key: self._quantity(target, mapping, key, ks, read, pending) for key, ks in wanted.items()}

    @staticmethod
    def _code(mapping, location: str) -> str:
        return mapping.location_entry(location).code

    def _internals(self, mapping, key: Key) -> list[Key]:
        located = mapping.location_entry(key[1])
        if located is None:
            return []
        return [(key[0], loc) for loc in mapping.internal_locations(located.code)]

    def _pending(self, key: Key) -> Decimal | BridgeError:
        try:
            return self.reader.pending(*key)
        except ConfigError as exc:
            return exc

    def _quantity(self, target: str, mapping, key: Key, keys: list[Key], read,
                  pending: dict[Key, Decimal | BridgeError]) -> Decimal | BridgeError:
        if not keys:
            return RejectedError(f"{target} does not sell location {key[1]!r} (locations.map)")
        failed = next((p for p in [*(pending[k] for k in keys), *(read[k] for k in keys)]
                       if isinstance(p, BridgeError) and not isinstance(p, RejectedError)), None)
        if failed is not None:  # transient or configuration: this figure cannot be known now
            return failed
        known = [k for k in keys if isinstance(read[k], Availability)]
        if not known:  # the SoR holds the item in none of the channel location's warehouses
            return read[keys[0]]
        # a warehouse where the SoR does not hold the item contributes nothing to the sum
        nets = [self.reader.net(read[k], p) for k in known if isinstance(p := pending[k], Decimal)]
        combined = aggregate(nets, mapping.locations.aggregation)
        return channel_quantity(mapping.quantity_policy or DEFAULT_POLICY, combined)

    def _figure(self, target: str, mapping, entry: Entry, quantity: Decimal | BridgeError) -> Figure | Result:
        if isinstance(quantity, BridgeError):
            return quantity
        previous = self.figures.get(target, entry.item, self._code(mapping, entry.location))
        if previous is not None and previous == quantity:
            return Delivered("unchanged")
        return Figure(item=entry.item, location=entry.location, quantity=quantity, previous=previous,
                      idempotency_key=entry.idempotency_key)


def _push(connector, figures: list[Figure]) -> list[Result | BridgeError]:
    try:
        outcomes = list(connector.push_availability(figures))
    except BridgeError as exc:
        return [exc] * len(figures)
    except Exception as exc:  # unclassified: retry rather than lose the push
        return [RetryableError(f"{type(exc).__name__}: {exc}")] * len(figures)
    if len(outcomes) != len(figures):
        return [RetryableError(f"connector returned {len(outcomes)} outcomes for {len(figures)} figures")] * len(figures)
    return outcomes
