"""Pacing: wait *before* a request so that a vendor's rate limit is not hit, rather than collecting
its 429s (or, for Cin7 Core, its 503s) and backing off.

A ``Pacer`` is handed to the sender (``ctx.sender(pacer=...)``): ``wait(method)`` runs before every
request the sender makes (token requests aside) and ``observe(headers)`` after every answer, of any
status, so a pacer can learn the vendor's own account of the budget from its response headers.

``LeakyBucket`` is the vendor-neutral model: every request adds its cost to a bucket that drains
at ``drip`` units per second and must never overflow ``size``. Lightspeed Retail (R-Series) reports
both in headers (``X-LS-API-Bucket-Level: used/size``, ``X-LS-API-Drip-Rate``); a vendor with a
plain "N calls per minute" (Cin7 Core) is a bucket of size 1 draining N/60 per second. One pacer is
shared by the threads of one sender: a wait *reserves* its slot, so N threads waiting together are
spread out, not released at once. ``SharedLeakyBucket`` adds one bucket for every process on the
storage (``Inbox.limits()``: a row on PostgreSQL), lowered to the level the vendor reports.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from ...dispatch.ratelimit import Limits, TokenBucket


class Pacer(Protocol):
    def wait(self, method: str) -> None:
        """Block until a request of ``method`` fits the budget."""

    def observe(self, method: str, headers: Mapping[str, str]) -> None:
        """The vendor answered a ``method`` request with ``headers``: learn what they say about the budget."""


class NoPacing:
    def wait(self, method: str) -> None:
        pass

    def observe(self, method: str, headers: Mapping[str, str]) -> None:
        pass


class SharedLeakyBucket:
    """A vendor's leaky bucket paced for every process on one storage together: ``shared`` (a
    token bucket holding what is left of it, ``Inbox.limits()``; one row every PostgreSQL process
    takes from) paces all hosts' calls, and this process's ``own`` ``LeakyBucket``, corrected from
    each answer's headers, adds what the vendor reports beyond that (another application on the
    same account). The size and drip the vendor states are passed on to the shared bucket."""

    def __init__(self, shared: TokenBucket, own: LeakyBucket):
        self.shared, self.own = shared, own

    @classmethod
    def named(cls, limits: Limits, name: str, own: LeakyBucket) -> SharedLeakyBucket:
        """``own`` shared as bucket ``name`` of ``limits`` (``Inbox.limits()``)."""
        return cls(limits.bucket(name, own.drip, own.size), own)

    def wait(self, method: str) -> None:
        self.shared.take(self.own.cost(method))
        self.own.wait(method)

    def observe(self, method: str, headers: Mapping[str, str]) -> None:
        self.own.observe(method, headers)
        if (self.own.drip, self.own.size) != (self.shared.rate, self.shared.burst):
            self.shared.resize(self.own.drip, self.own.size)
        said = fraction(_header(headers, self.own.level_header))
        if said is not None:  # what the vendor counts as used, every process's calls in it
            self.shared.at_most(said[1] - said[0])


def fraction(value: str | None) -> tuple[float, float] | None:
    """``"used/size"`` -> (used, size); None when the header is absent or not that."""
    if not value or "/" not in value:
        return None
    used, _, size = value.partition("/")
    try:
        pair = float(used), float(size)
    except ValueError:
        return None
    return pair if pair[0] >= 0 and pair[1] > 0 else None


def positive(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and number > 0 else None


class LeakyBucket:
    """A bucket of ``size`` units draining at ``drip`` per second; ``cost(method)`` is what one
    request adds until ``cost_header`` states what the vendor charged for that method.
    ``level_header`` ("used/size") and ``drip_header`` correct the rest from each answer."""

    def __init__(self, size: float, drip: float, cost: Callable[[str], float] = lambda method: 1.0, *,
                 level_header: str | None = None, drip_header: str | None = None, cost_header: str | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if size <= 0 or drip <= 0:
            raise ValueError("a leaky bucket needs a positive size and drip rate")
        self.size, self.drip, self._cost = float(size), float(drip), cost
        self.level_header, self._drip_header, self._cost_header = level_header, drip_header, cost_header
        self._charged: dict[str, float] = {}  # method -> the cost the vendor last stated
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._level, self._at = 0.0, clock()
        self.waited_s = 0.0  # total time spent waiting (tests, metrics)

    def level(self, now: float | None = None) -> float:
        """The bucket's level at ``now``, counting slots reserved by waits still under way."""
        now = self._clock() if now is None else now
        return max(0.0, self._level - self.drip * (now - self._at))

    def wait(self, method: str) -> None:
        with self._lock:
            now = self._clock()
            cost = min(self.cost(method), self.size)  # a request dearer than the bucket waits for it empty
            level = self.level(now)
            delay = max(0.0, (level + cost - self.size) / self.drip)
            self._level, self._at = level + cost, now  # reserved: the next caller queues behind it
            self.waited_s += delay
        if delay > 0:
            self._sleep(delay)

    def cost(self, method: str) -> float:
        method = method.upper()
        return self._charged.get(method) or self._cost(method)

    def observe(self, method: str, headers: Mapping[str, str]) -> None:
        said = fraction(_header(headers, self.level_header))
        drip = positive(_header(headers, self._drip_header))
        charged = positive(_header(headers, self._cost_header))
        if said is None and drip is None and charged is None:
            return
        with self._lock:
            now = self._clock()
            if charged is not None:
                self._charged[method.upper()] = charged
            if drip is not None:
                self.drip = drip
            if said is not None:
                used, self.size = said
                # the vendor's level counts requests it has seen; ours also those still waiting to go
                self._level, self._at = max(used, self.level(now)), now


def _header(headers: Mapping[str, str], name: str | None) -> str | None:
    if name is None:
        return None
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)
