"""Lease -> route -> connector -> ack / retry / dead-letter.

Worker threads lease batches, group them by (target, capability) and call the connector once
per group, inside that target's gate (concurrency slots and token bucket). Connectors enforce
the per-call timeout (every network call has one); the lease must outlast a whole batch.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from ..connectors.base import Capability, Connector
from ..domain import Delivered
from ..errors import BridgeError, ConfigError, NotAttempted, RejectedError, RetryableError, Throttled
from ..queue.base import SALE_KINDS, Entry, Queue, RetryPolicy, State, orphaned_owners
from .metrics import DispatchMetrics, default_metrics
from .ratelimit import Limits, LocalLimits
from .routing import capability_for, event_of

log = logging.getLogger(__name__)
#: (target, connector, entries) -> one outcome per entry: the availability push strategy
Pusher = Callable[[str, Connector, Sequence[Entry]], list]
delivery_log = logging.getLogger("erp_bridge.delivery")


@dataclass(frozen=True)
class TargetLimits:
    concurrency: int = 4
    rate_per_s: float | None = None
    burst: float | None = None

    @classmethod
    def of(cls, limits: Any) -> TargetLimits:
        """From a mapping's ``limits`` section (anything with these three attributes)."""
        return cls(concurrency=limits.concurrency, rate_per_s=limits.rate_per_s, burst=limits.burst)


class Gate:
    """A target's concurrency slots and, with a ``rate_per_s``, its token bucket (one token per
    entry), made by ``shared`` (default: this process's own; a PostgreSQL queue's are every
    process's). A slot is held ``hold_s`` at most when its holder vanishes."""

    def __init__(self, limits: TargetLimits, target: str = "", shared: Limits | None = None, hold_s: float = 30.0):
        shared = shared or LocalLimits()
        self._slots = shared.slots(target, limits.concurrency, hold_s)
        self._bucket = shared.bucket(target, limits.rate_per_s, limits.burst) if limits.rate_per_s else None

    @contextmanager
    def enter(self, n: int, give_up: threading.Event) -> Iterator[bool]:
        """Yields True once inside, False if ``give_up`` was set while waiting."""
        with self._slots.hold(give_up) as inside:
            yield inside and (self._bucket.take(n, give_up) if self._bucket else True)


class Throttle:
    """One system's run of refusals for its rate limit or quota (``errors.Throttled``, HTTP 429).
    While it lasts the target is not called; each refusal in a row lengthens the pause along the
    retry policy's backoff (its base to its cap, never shorter than the target asked), and a
    delivery ends the run. The refused entries wait without counting an attempt, so a quota spent
    for the day (Zoho Inventory) delays work but never dead-letters it."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float]):
        self._policy, self._clock = policy, clock
        self._lock = threading.Lock()
        self.refusals = 0
        self._until = 0.0

    def refused(self, after: float | None) -> float:
        """One more refusal: the seconds until the target is called again."""
        with self._lock:
            self.refusals += 1
            now = self._clock()
            self._until = max(self._until, now + self._policy.delay(self.refusals, after))
            return self._until - now

    def delivered(self) -> None:
        with self._lock:
            self.refusals, self._until = 0, 0.0

    def remaining(self) -> float:
        """Seconds the target's calls still pause (0: call it)."""
        return max(0.0, self._until - self._clock())


def _refusal(outcome: object) -> Throttled | None:
    """The refusal for a rate limit or quota an outcome is or was caused by, if any."""
    cause = outcome.cause if isinstance(outcome, NotAttempted) else outcome
    return cause if isinstance(cause, Throttled) else None


class Final(NamedTuple):
    """An entry that ended (done or dead), with the error that ended it."""

    entry: Entry
    state: State
    error: str | None


@dataclass(frozen=True)
class Verdict:
    delivered: bool
    retryable: bool = False
    retry_after: float | None = None
    error: str | None = None


def classify(outcome: Delivered | BaseException) -> Verdict:
    """Delivered -> ack; RetryableError -> retry (honouring ``after``); Rejected/Config -> dead;
    anything unexpected -> retry, since a bug or a blip must not silently drop an event."""
    if isinstance(outcome, Delivered):
        return Verdict(delivered=True)
    if isinstance(outcome, RetryableError):
        return Verdict(False, retryable=True, retry_after=outcome.after, error=str(outcome))
    if isinstance(outcome, (RejectedError, ConfigError)):
        return Verdict(False, retryable=False, error=f"{type(outcome).__name__}: {_describe(outcome)}")
    return Verdict(False, retryable=True, error=f"{type(outcome).__name__}: {outcome}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConfigError):  # one line per problem in a dead letter's reason
        return "; ".join(str(p) for p in exc.problems)
    return str(exc)


class Dispatcher:
    #: an idle worker leases again no sooner than this after a lease that found nothing (at most
    #: 20 empty leases a second per worker however many entries arrive); new work waits that long
    #: at most
    rewake_s = 0.05

    def __init__(self, queue: Queue, connectors: Mapping[str, Connector], *,
                 limits: Mapping[str, TargetLimits] | None = None, workers: int = 2,
                 batch_size: int = 64, lease_s: float = 30.0, poll_s: float = 0.2,
                 metrics: DispatchMetrics | None = None, name: str | None = None,
                 prepare: Callable[[Any], Any] | None = None, pusher: Pusher | None = None,
                 before_ack: Callable[[str, list[Entry]], None] | None = None,
                 on_final: Callable[[str, list[Final]], None] | None = None,
                 redact: Callable[[str | None], str | None] | None = None, shared: Limits | None = None,
                 clock: Callable[[], float] | None = None):
        """``redact``: removes secret values from an error before it is stored, logged or
        reported (an upstream error may echo the request, credentials included); ``prepare``: event -> event ready for the target (e.g. channel ids -> internal ids),
        raising BridgeError for one that cannot be; ``pusher``: the whole availability push
        (resolve at dispatch time, skip unchanged, push, remember; sync.availability);
        ``before_ack(target, delivered entries)``: runs before they are acked (cache invalidation);
        ``on_final(target, finals)``: after a call's entries ended done or dead, once per call with
        each one's (entry, state, error) (reporting, refreshing what they changed);
        ``shared``: makes the targets' concurrency slots and token buckets (default: this process's
        own; ``queue.shared_limits()``: as every process on the queue's storage shares them);
        ``clock``: times the pauses of targets that refuse calls for their rate limit or quota
        (default: the queue's, in which the paused entries' delays run)."""
        self._queue = queue
        self._connectors = dict(connectors)
        self._prepare = prepare or (lambda event: event)
        self._pusher = pusher
        self._before_ack = before_ack or (lambda target, entries: None)
        self._on_final = on_final or (lambda target, finals: None)
        self._redact = redact or (lambda text: text)
        limits = limits or {}
        self._shared = shared or LocalLimits()
        self._gates = {t: Gate(limits.get(t, TargetLimits()), t, self._shared, lease_s) for t in self._connectors}
        self._policy, self._clock = getattr(queue, "policy", None) or RetryPolicy(), clock or queue.clock
        self._throttles = {t: Throttle(self._policy, self._clock) for t in self._connectors}
        self._workers, self._batch_size, self._lease_s, self._poll_s = workers, batch_size, lease_s, poll_s
        self._metrics = metrics or default_metrics()
        self._metrics.watch(queue)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = threading.Event()
        self._expired = threading.Event()
        self._wake = threading.Event()
        #: per worker, the batch its last ack leased (ack_and_lease), delivered by its next run_once
        self._carried: dict[str, list[Entry]] = {}
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_settings(cls, queue: Queue, connectors: Mapping[str, Connector], settings: Any,
                      mappings: Any = None, metrics: DispatchMetrics | None = None, prepare: Callable[[Any], Any] | None = None,
                      pusher: Pusher | None = None,
                      before_ack: Callable[[str, list[Entry]], None] | None = None,
                      on_final: Callable[[str, list[Final]], None] | None = None) -> Dispatcher:
        """Wire from the settings object and a mapping set (``.systems[name].limits``)."""
        systems = getattr(mappings, "systems", {}) or {}
        limits = {name: TargetLimits.of(m.limits) for name, m in systems.items()}
        from ..logs import Redactor

        return cls(queue, connectors, limits=limits, workers=settings.workers.count, batch_size=settings.queue.batch_size,
                   lease_s=settings.queue.lease_s, poll_s=settings.workers.poll_interval_s,
                   metrics=metrics, prepare=prepare, pusher=pusher, before_ack=before_ack,
                   on_final=on_final, redact=Redactor(settings.secret_values()),
                   shared=queue.shared_limits())

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._expired.clear()
        self._reclaim_predecessors()
        self._threads = [threading.Thread(target=self._work, args=(f"{self.name}/{i}",),
                                          name=f"dispatch-{i}", daemon=True)
                         for i in range(self._workers)]
        for thread in self._threads:
            thread.start()

    def _reclaim_predecessors(self) -> None:
        """Leases of a crashed predecessor on this host come back now, not after lease_s; so do
        the targets' concurrency slots it held (shared by every process on PostgreSQL), which
        would otherwise keep this process from delivering to a target for up to lease_s."""
        orphans = orphaned_owners(self._queue.lease_owners(), self.name)
        if orphans:
            count = self._queue.reclaim(orphans)
            log.info("dispatcher %s: reclaimed %d leased entries of gone workers %s", self.name, count,
                     ", ".join(orphans))
        try:
            holders = {p for processes in self._shared.held().values() for p in processes}
            gone = orphaned_owners(holders, self.name)
            if gone:
                log.info("dispatcher %s: gave back %d concurrency slots of gone processes %s", self.name,
                         self._shared.free(gone), ", ".join(sorted(gone)))
        except Exception as exc:  # the database: those slots free themselves after lease_s
            log.warning("dispatcher %s: the slots of gone processes could not be given back (%s); they free"
                        " themselves within %.0f s", self.name, exc, self._lease_s)

    def stop(self, deadline_s: float) -> None:
        """Stop leasing; in-flight batches finish until the deadline, then what has not reached
        its connector yet is released. A call already in a connector ends at its own timeout."""
        self._stopping.set()
        self._wake.set()
        end = time.monotonic() + deadline_s
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        self._expired.set()
        for thread in self._threads:
            thread.join(1.0)  # waiters at a gate see the deadline and release within a tick

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def wake(self) -> None:
        """New work was enqueued in this process: lease now instead of at the next poll."""
        self._wake.set()

    def _work(self, worker: str) -> None:
        while not self._stopping.is_set():
            try:
                leased = self.run_once(worker, chain=True)
            except Exception:  # a queue failure (disk, lock) must not kill the worker thread
                log.exception("dispatch worker %s: batch failed", worker)
                leased = 0
            if not leased:
                self._idle()
        self._release_carried(worker)

    def _release_carried(self, worker: str) -> None:
        """What the worker's last ack leased and it will not deliver (it stops): back untouched."""
        carried = self._carried.pop(worker, [])
        try:
            if carried:
                self._queue.release([e.id for e in carried], worker)
        except Exception:  # the queue is closing: the leases then expire, as after a crash
            log.exception("dispatch worker %s: giving back %d leased entries failed", worker, len(carried))

    def _idle(self) -> None:
        """Wait for a wake-up or the poll interval, then at least until ``rewake_s`` after the
        empty lease. Under a burst of webhooks every enqueue wakes the workers; when nothing is due
        (the heads back off against a system that is down) a lease per wake-up found nothing, cost
        a write transaction each and took the queue's lock and the GIL from the intake
        (issue 15: intake went from 0.23 to 0.30 of the bare app, scripts/bench_webhooks.py)."""
        idle_since = time.monotonic()
        self._wake.wait(self._poll_s)
        self._wake.clear()
        self._stopping.wait(max(0.0, idle_since + self.rewake_s - time.monotonic()))

    # -- one batch ----------------------------------------------------------------------------

    def run_once(self, worker: str, chain: bool = False) -> int:
        """Lease one batch and deliver it; returns how many entries were leased. ``chain`` (the
        worker loop): the batch's last ack also leases the next batch in the same queue
        transaction (Queue.ack_and_lease: on SQLite two commits per busy cycle, not three), which
        the worker's next call delivers instead of leasing."""
        entries = self._carried.pop(worker, None)
        if entries is None:
            entries = self._queue.lease(worker, self._batch_size, self._lease_s, targets=self._callable())
        groups: dict[tuple[str, Capability | None], list[Entry]] = {}
        for entry in entries:
            groups.setdefault((entry.target, _capability(entry)), []).append(entry)
        for n, ((target, capability), group) in enumerate(groups.items(), 1):
            if self._expired.is_set():
                self._queue.release([e.id for e in group], worker)
            else:
                self._deliver(worker, target, capability, group, chain and n == len(groups))
        return len(entries)

    def _callable(self) -> list[str]:
        """The targets to lease for: those with a connector and no pause (a paused target's
        entries stay in the queue, not leased and given back batch after batch)."""
        return [t for t in self._connectors if not self._throttles[t].remaining()]

    def _deliver(self, worker: str, target: str, capability: Capability | None,
                 entries: list[Entry], chain: bool = False) -> None:
        pause = self._throttles[target].remaining()
        if pause:  # leased before it refused a call for its rate or quota: these wait too, uncounted
            self._queue.release([e.id for e in entries], worker, delay_s=pause, error=(
                f"held back: {target} refused calls for its rate limit or quota; calls resume in {pause:.0f} s"))
            return
        with self._gates[target].enter(len(entries), self._expired) as inside:
            if not inside:
                self._queue.release([e.id for e in entries], worker)
                return
            started = time.perf_counter()
            outcomes = self._call(target, capability, entries)
            duration = time.perf_counter() - started
        self._settle(worker, target, entries, outcomes, duration, chain)

    def _call(self, target: str, capability: Capability | None, entries: list[Entry]) -> list:
        connector = self._connectors[target]
        if capability is None:
            return [RejectedError(f"no capability handles entries of kind {entries[0].kind!r}")] * len(entries)
        if capability not in connector.capabilities:
            return [ConfigError(f"connector of {target} cannot {capability.value}")] * len(entries)
        if capability is Capability.PUSH_AVAILABILITY:
            pusher = self._pusher
            if pusher is None:
                return [ConfigError(f"no availability rule is configured for pushes to {target}")] * len(entries)
            return _guard(lambda: pusher(target, connector, entries), len(entries))
        prepared = [self._event_or_error(e) for e in entries]
        return _send(getattr(connector, capability.value), prepared)

    def _event_or_error(self, entry: Entry):
        try:
            return self._prepare(event_of(entry))
        except BridgeError as exc:
            return exc

    def _settle(self, worker: str, target: str, entries: list[Entry], outcomes: list,
                duration: float, chain: bool = False) -> None:
        pauses = self._throttled(target, entries, outcomes)
        unsent: dict[tuple[float, str | None], list[int]] = {}  # one release per (delay, reason), not per entry
        for entry, outcome in zip(entries, outcomes):
            if isinstance(outcome, (NotAttempted, Throttled)):  # no attempt counted: not this entry's fault
                refusal = _refusal(outcome)
                pause = pauses.get((refusal and refusal.system) or target, 0.0)
                key = (max(outcome.after or 0.0, pause), self._redact(str(outcome)))
                unsent.setdefault(key, []).append(entry.id)
        for (delay, error), ids in unsent.items():
            self._queue.release(ids, worker, delay_s=delay, error=error)
        tried = [(e, o, self._verdict(o)) for e, o in zip(entries, outcomes)
                 if not isinstance(o, (NotAttempted, Throttled))]
        delivered = [e for e, _, v in tried if v.delivered]
        if delivered:
            self._before_ack(target, delivered)
            self._ack(worker, [e.id for e in delivered], duration, chain)
        states, finals = [], []
        for entry, outcome, verdict in tried:
            state = State.DONE if verdict.delivered else self._queue.fail(
                entry.id, worker, verdict.error or "failed", retryable=verdict.retryable,
                retry_after=verdict.retry_after, duration_s=duration).state
            self._log(entry, target, state, outcome, verdict, duration)
            states.append(state)
            if state in (State.DONE, State.DEAD):
                finals.append(Final(entry, state, verdict.error))
        if finals:
            self._final(target, finals)
        if tried:
            self._count(target, delivered, states, duration)
            self._overdue(target, [e for (e, _, _), s in zip(tried, states) if s is State.PENDING])

    def _throttled(self, target: str, entries: list[Entry], outcomes: list) -> dict[str, float]:
        """The pause each system that refused in ``outcomes`` starts, by system: the target, or
        the system it had to read first (``Throttled.system``: a channel push's system of record).
        A delivery in the same call ends the target's previous run of refusals first."""
        if any(isinstance(o, Delivered) for o in outcomes):
            self._throttle(target).delivered()
        refusals: dict[str, list[Throttled]] = {}
        for refusal in filter(None, map(_refusal, outcomes)):
            refusals.setdefault(refusal.system or target, []).append(refusal)
        pauses = {}
        for system, refused in refusals.items():
            refusal, throttle = refused[0], self._throttle(system)
            pauses[system] = pause = throttle.refused(refusal.after)
            self._metrics.throttled.labels(system).inc(len(refused))
            via = "" if system == target else f" (read from {system}, which refused)"
            delivery_log.warning(
                "delivery %s: throttled%s, %d entries wait %.0f s without counting an attempt (refusal %d in"
                " a row): %s", target, via, len(refused), pause, throttle.refusals, self._redact(str(refusal)),
                extra={"target": target, "outcome": "throttled", "refused_by": system, "entries": len(refused),
                       "pause_s": round(pause, 3), "refusals": throttle.refusals,
                       "entry_id": entries[0].id if entries else None})
        return pauses

    def _throttle(self, system: str) -> Throttle:
        """The run of refusals of a target, or of a system read on a target's behalf."""
        throttle = self._throttles.get(system)
        if throttle is None:  # a system of record that is no target of this dispatcher
            throttle = self._throttles.setdefault(system, Throttle(self._policy, self._clock))
        return throttle

    def _ack(self, worker: str, ids: list[int], duration: float, chain: bool) -> None:
        if chain and not self._stopping.is_set():
            leased = self._queue.ack_and_lease(ids, worker, duration, self._batch_size, self._lease_s,
                                               self._callable())
            if leased:  # nothing due now: the next call leases afresh (work may come meanwhile)
                self._carried[worker] = leased
        else:
            self._queue.ack(ids, worker, duration)

    def _overdue(self, target: str, retrying: list[Entry]) -> None:
        """Sales still retried past the normal budget: the alert that replaces a dead letter."""
        policy = getattr(self._queue, "policy", None)
        n = sum(1 for e in retrying if e.kind in SALE_KINDS and policy is not None and policy.overdue(e.attempts + 1))
        if n:
            self._metrics.sales_overdue.labels(target).inc(n)

    def _verdict(self, outcome) -> Verdict:
        verdict = classify(outcome)
        return replace(verdict, error=self._redact(verdict.error)) if verdict.error else verdict

    def _final(self, target: str, finals: list[Final]) -> None:
        try:
            self._on_final(target, finals)
        except Exception:  # reporting must never disturb delivery
            log.exception("reporting the results of %d entries for %s failed", len(finals), target)

    def _count(self, target: str, delivered: list[Entry], states: list[State], duration: float) -> None:
        """Metrics once per call (label lookups per batch, not per entry: they cost on a hot path)."""
        m = self._metrics
        m.attempt_seconds.labels(target).observe(duration)  # one delivery call, however many entries
        if delivered:
            m.deliveries.labels(target).inc(len(delivered))
            lag, now = m.lag_seconds.labels(target), time.time()
            for entry in delivered:
                lag.observe(max(0.0, now - entry.created_at.timestamp()))
        dead = sum(1 for s in states if s is State.DEAD)
        retried = len(states) - len(delivered) - dead
        if dead:
            m.dead_letters.labels(target).inc(dead)
        if retried:
            m.retries.labels(target).inc(retried)

    def _log(self, entry: Entry, target: str, state: State, outcome: Any, verdict: Verdict,
             duration: float) -> None:
        if verdict.delivered:
            name, level = outcome.detail, logging.INFO
        elif state is State.DEAD:
            name, level = "dead", logging.ERROR
        else:
            name, level = "retry", logging.WARNING
        delivery_log.log(level, "delivery %s %s: %s", target, entry.idempotency_key, name, extra={
            "event_key": entry.idempotency_key, "target": target, "outcome": name,
            "duration_ms": round(duration * 1000, 3), "attempt": entry.attempts + 1,
            "entry_id": entry.id, "error": verdict.error})


def _capability(entry: Entry) -> Capability | None:
    try:
        return capability_for(entry.kind)
    except RejectedError:
        return None


def _guard(call: Callable[[], list], n: int) -> list:
    """A strategy that raises failed every entry the same way (unclassified: worth a retry)."""
    try:
        return call()
    except BridgeError as exc:
        return [exc] * n
    except Exception as exc:
        return [RetryableError(f"{type(exc).__name__}: {exc}")] * n


def _send(method, prepared: Sequence) -> list:
    """Call ``method`` with the prepared items that are not errors; merge outcomes back in order.
    A raise means the whole call failed the same way for every item sent."""
    todo = [p for p in prepared if not isinstance(p, BaseException)]
    try:
        results = list(method(todo)) if todo else []
    except Exception as exc:
        results = [exc] * len(todo)
    if len(results) != len(todo):
        results = [RetryableError(f"connector returned {len(results)} outcomes for {len(todo)} items")] * len(todo)
    sent = iter(results)
    return [p if isinstance(p, BaseException) else next(sent) for p in prepared]
