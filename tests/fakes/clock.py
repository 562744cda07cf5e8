"""A clock tests move by hand, so backoff and lease expiry need no sleeping."""
from __future__ import annotations

import threading


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0):
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now
