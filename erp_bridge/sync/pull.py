"""The pull service (DESIGN.md flow 5): stores that ask for availability instead of being pushed to.

answer = policy(aggregate over the internal locations of (net(cached-or-live availability, pending)))

Never more than is there (see AvailabilityCache): the availability is read first, from the cache
when its entry is at most ``fresh_s`` old, else live from the system of record, waiting at most
``live_timeout_s``; then the pending decrements, counting also every decrement delivered since
that read started, by whichever process. A sale is then either in the figure or subtracted from
it (at worst both: under-reporting, never over-reporting). A live read that did not finish in
time keeps running in the background and fills the cache.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from ..domain import Availability
from ..errors import BridgeError, ConfigError, RejectedError
from ..mapping.binder import Binder
from .availability import DEFAULT_POLICY, AvailabilityCache, SorReader, aggregate
from .policy import channel_quantity

log = logging.getLogger(__name__)
Key = tuple[str, str]
Source = Literal["cache", "live", "unreachable", "unknown"]
#: how much worse one source is than another when several keys make one answer
_RANK = {"cache": 0, "live": 1, "unknown": 2, "unreachable": 3}
#: at most this many keys are answered on the event loop (one indexed read each, tens of µs)
INLINE_KEYS = 16


@dataclass(frozen=True)
class Reading:
    """One (item, internal location): the netted availability, or why there is none."""

    availability: Availability | None
    source: Source
    age_s: float = 0.0
    #: when the read behind ``availability`` started (the queue's clock); None: no read
    read_started: float | None = None


@dataclass(frozen=True)
class Answer:
    """One item at one channel location, after the policy. ``quantity`` is None unless ``source``
    is cache or live (then the figure may still be 0)."""

    quantity: Decimal | None
    source: Source
    age_s: float
    restock_at: datetime | None = None
    read_at: datetime | None = None


class PullService:
    """Answers pull clients from the cache, else a live read bounded in time and in threads."""

    def __init__(self, reader: SorReader, cache: AvailabilityCache, *, threads: int = 8, backlog: int = 64):
        self.reader, self.cache = reader, cache
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="pull-live")
        self._backlog, self._waiting = backlog, 0
        self._lock = threading.Lock()
        #: keys the SoR said it does not know, and when: asked again only once fresh_s has passed
        #: (an item kept at one warehouse only must not cost a live read per request). Safe: an
        #: unknown location contributes nothing, so a stale "unknown" can only under-report.
        self._unknown: dict[Key, float] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def answer(self, mapping, item: str, internals: Sequence[str], fresh_s: float, timeout_s: float) -> Answer:
        """One figure for ``item`` over ``internals`` (aggregated as the mapping says, default sum)."""
        readings = self.readings([(item, loc) for loc in internals], fresh_s, timeout_s)
        return combine(mapping, list(readings.values()))

    def answer_now(self, mapping, item: str, internals: Sequence[str], fresh_s: float) -> Answer | None:
        """``answer`` without waiting (for the event loop), or None: see ``readings_now``."""
        readings = self.readings_now([(item, loc) for loc in internals], fresh_s)
        return None if readings is None else combine(mapping, list(readings.values()))

    def readings(self, keys: Iterable[Key], fresh_s: float, timeout_s: float) -> dict[Key, Reading]:
        keys = list(dict.fromkeys(keys))
        found, stale = self._cached(keys, fresh_s)
        if stale:
            found.update(self._live(stale, timeout_s))
        return self._netted(keys, found)

    def readings_now(self, keys: Iterable[Key], fresh_s: float) -> dict[Key, Reading] | None:
        """``readings`` on the event loop, when they cannot wait: every key answered from memory
        (the cache, or a recent "unknown"), at most ``INLINE_KEYS`` of them, and a queue whose reads
        never wait for a writer or the network (``Queue.quick_reads``); else None, and the caller
        asks ``readings`` in a thread. A thread hop per request cost more than the answer itself
        (issue 15: the pull's p99 at 1,000 requests/s)."""
        keys = list(dict.fromkeys(keys))
        if len(keys) > INLINE_KEYS or not self.reader.queue.quick_reads:
            return None
        found, stale = self._cached(keys, fresh_s)
        return None if stale else self._netted(keys, found)

    def _netted(self, keys: list[Key], found: dict[Key, Reading]) -> dict[Key, Reading]:
        # AFTER the reads, and since each read started: the module docstring says why
        pending = {k: self._pending(k, found[k].read_started) for k in keys}
        return {k: _net(self.reader, found[k], pending[k]) for k in keys}

    def _pending(self, key: Key, since: float | None) -> Decimal | None:
        try:
            return self.reader.pending(*key, since=since)
        except ConfigError:  # no system of record for that location: nothing to answer from
            return None

    def _cached(self, keys: list[Key], fresh_s: float) -> tuple[dict[Key, Reading], list[Key]]:
        found, stale, now = {}, [], self.cache.clock()
        for key in keys:
            hit = self.cache.get(*key)
            unknown_age = now - self._unknown.get(key, float("-inf"))
            if hit is not None and hit.age_s <= fresh_s:
                found[key] = Reading(hit.availability, "cache", max(hit.age_s, 0.0), hit.read_started)
            elif hit is None and unknown_age <= fresh_s:
                found[key] = Reading(None, "unknown", unknown_age)
            else:
                stale.append(key)
        return found, stale

    def _live(self, keys: list[Key], timeout_s: float) -> dict[Key, Reading]:
        started = self.cache.clock()
        future = self._submit(keys)
        try:
            read = future.result(timeout=timeout_s) if future is not None else None
        except FutureTimeout:
            read = None
        if read is None:
            return {k: Reading(None, "unreachable") for k in keys}
        readings = {k: _reading_of(read.get(k), started) for k in keys}
        now = self.cache.clock()
        for key, reading in readings.items():
            if reading.source == "unknown":
                self._unknown[key] = now
            else:
                self._unknown.pop(key, None)
        return readings

    def _submit(self, keys: list[Key]) -> Future | None:
        """None when too many reads already wait: a hung system of record must not pile them up."""
        with self._lock:
            if self._waiting >= self._backlog:
                return None
            self._waiting += 1
        future = self._pool.submit(self.reader.read, keys)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future) -> None:
        with self._lock:
            self._waiting -= 1


def _reading_of(result: Availability | BridgeError | None, started: float) -> Reading:
    if isinstance(result, Availability):
        return Reading(result, "live", 0.0, started)
    if isinstance(result, (RejectedError, ConfigError)):  # the SoR does not know the item there
        return Reading(None, "unknown")
    if result is not None:
        log.warning("live read failed: %s", result)
    return Reading(None, "unreachable")


def _net(reader: SorReader, reading: Reading, pending: Decimal | None) -> Reading:
    if reading.availability is None:
        return reading
    if pending is None:
        return Reading(None, "unknown")
    return Reading(reader.net(reading.availability, pending), reading.source, reading.age_s, reading.read_started)


def combine(mapping, readings: list[Reading]) -> Answer:
    """Aggregate the known parts and apply the policy. Any unreachable part makes the whole answer
    unreachable (a partial sum would under- or over-state what a min/max shows); a location where
    the SoR does not know the item contributes nothing; all unknown is unknown."""
    worst = max((r.source for r in readings), key=_RANK.__getitem__, default="unknown")
    known = [(r, r.availability) for r in readings if r.availability is not None]
    age = max((r.age_s for r in readings), default=0.0)
    if worst == "unreachable" or not known:
        return Answer(None, "unreachable" if worst == "unreachable" else "unknown", age)
    combined = aggregate([a for _, a in known], mapping.locations.aggregation)
    try:
        quantity = channel_quantity(mapping.quantity_policy or DEFAULT_POLICY, combined)
    except BridgeError as exc:  # e.g. basis forecast and the SoR sent none: unknown, not zero
        log.warning("%s: no figure for %s: %s", mapping.system, combined.item, exc)
        return Answer(None, "unknown", age)
    source = max((r.source for r, _ in known), key=_RANK.__getitem__)
    restock = min((a.restock_at for _, a in known if a.restock_at), default=None)
    read_at = min(a.read_at for _, a in known)
    return Answer(quantity, source, age, restock, read_at)


# --- item codes (and options) -> SKU, through the pull client's mapping ------------------------
def sku_for(mapping, lookups: Mapping, code: str, options: Mapping[str, str]) -> str | None:
    """The SKU a store code (plus selected options) stands for, or None (see Binder.sku_for)."""
    return Binder(mapping, lookups.get(mapping.system)).sku_for(code, options)


def internals_by_code(mapping) -> dict[str, list[str]]:
    """Channel location code -> its internal locations, in file order."""
    out: dict[str, list[str]] = {}
    for entry in mapping.locations.map:
        out.setdefault(entry.code, []).append(entry.internal)
    return out


# --- the connector slot: a pull client is answered, never called -------------------------------
class PullClient:
    """What the runtime holds for a pull client: no capabilities, so nothing is ever routed to it."""

    capabilities: frozenset = frozenset()

    def __init__(self, name: str):
        self.name = name

    def close(self) -> None:
        pass


def client_from_context(ctx) -> PullClient:
    return PullClient(ctx.system)
