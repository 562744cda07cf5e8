"""A target's limits in one process: a token bucket (``rate_per_s`` on average, up to ``burst``
at once) and concurrency slots (``concurrency`` calls at once). storage.limits.SharedLimits makes
the ones every process on a PostgreSQL database shares."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Protocol


class TokenBucket:
    """A caller may take more tokens than the bucket holds (a whole batch): the bucket goes into
    debt and later callers wait it off, so the average rate holds without splitting batches."""

    def __init__(self, rate_per_s: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate = rate_per_s
        self.burst = max(1.0, burst if burst is not None else rate_per_s)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()
        self._lock = threading.Lock()

    def reserve(self, n: float = 1) -> float:
        """Take ``n`` tokens if the bucket can cover them now and return 0; otherwise take
        nothing and return the seconds to wait before asking again."""
        with self._lock:
            self._refill()
            need = min(n, self.burst)
            if self._tokens >= need:
                self._tokens -= n
                return 0.0
            return (need - self._tokens) / self.rate

    def take(self, n: float = 1, give_up: threading.Event | None = None) -> bool:
        """Block until ``n`` tokens are taken (True) or ``give_up`` is set (False)."""
        give_up = give_up or threading.Event()
        while (wait := self.reserve(n)) > 0:
            if give_up.wait(wait):
                return False
        return True

    def resize(self, rate_per_s: float, burst: float) -> None:
        """The vendor stated another rate or size (a pacer learning from its answers)."""
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        with self._lock:
            self._refill()
            self.rate, self.burst = rate_per_s, max(1.0, burst)
            self._tokens = min(self._tokens, self.burst)

    def at_most(self, tokens: float) -> None:
        """The vendor reports only ``tokens`` left (its own count, with every process's calls in
        it): the bucket holds no more than that from now on."""
        with self._lock:
            self._refill()
            self._tokens = min(self._tokens, tokens)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now


class Slots:
    """``n`` calls to one target at once in this process."""

    def __init__(self, n: int):
        self._own = threading.BoundedSemaphore(n)

    @contextmanager
    def hold(self, give_up: threading.Event) -> Iterator[bool]:
        """Yields True holding a slot, False if ``give_up`` was set while waiting for one."""
        while not self._own.acquire(timeout=0.1):
            if give_up.is_set():
                yield False
                return
        try:
            yield True
        finally:
            self._own.release()


class Limits(Protocol):
    """Makes a target's bucket and slots: this process's own (``LocalLimits``), or shared by
    every process on one database (storage.limits.SharedLimits)."""

    def bucket(self, target: str, rate_per_s: float, burst: float | None) -> TokenBucket: ...

    def slots(self, target: str, n: int, hold_s: float) -> Slots:
        """``hold_s``: how long a slot stays taken if its holder vanishes without giving it back."""

    def held(self) -> dict[str, list[str]]:
        """Target -> the processes (host:pid) holding its slots now, one per call (``status``)."""

    def free(self, processes: Collection[str]) -> int:
        """Give back the slots these processes (host:pid, gone: a crashed predecessor) still hold,
        before their ``hold_s`` runs out; how many."""


class LocalLimits:
    """This process's own limits (SQLite: one process per file)."""

    def bucket(self, target: str, rate_per_s: float, burst: float | None) -> TokenBucket:
        return TokenBucket(rate_per_s, burst)

    def slots(self, target: str, n: int, hold_s: float) -> Slots:
        return Slots(n)

    def held(self) -> dict[str, list[str]]:
        return {}  # in this process's memory only: another process (status) cannot see them

    def free(self, processes: Collection[str]) -> int:
        return 0  # a process's own slots went with it
