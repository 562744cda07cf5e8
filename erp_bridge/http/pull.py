"""Pull endpoints (DESIGN.md flow 5, docs/pull.md): stores that ask for availability.

- ``POST /realtime/{channel}``: the real-time inventory script protocol (seed 000), http/realtime.py
- ``GET /inventory-levels``: the inventory-levels query (seed 002), http/inventory_levels.py

Both answer through one PullService per app (the cache when fresh, else a bounded live read) and
say how fresh the answer is: ``X-Availability-Source`` (cache, live, unreachable or unknown) and
``X-Availability-Age`` (seconds since the figure was read from the system of record).
"""
from __future__ import annotations

import threading
from collections.abc import Iterable

from fastapi import APIRouter, Request

from ..sync.pull import Answer, PullService
from . import inventory_levels, realtime

router = APIRouter()
router.include_router(realtime.router)
router.include_router(inventory_levels.router)
_lock = threading.Lock()


def service_of(request: Request) -> PullService:
    """One service per app, made on first use (the runtime predates the routes)."""
    state = request.app.state
    service = getattr(state, "pull_service", None)
    if service is None:
        with _lock:
            service = getattr(state, "pull_service", None)
            if service is None:
                runtime = state.runtime
                service = state.pull_service = PullService(runtime.reader, runtime.cache)
    return service


def pull_clients(request: Request, protocol: str) -> dict:
    """Active pull clients speaking ``protocol``, by system name."""
    runtime = request.app.state.runtime
    return {name: m for name, m in runtime.mappings.systems.items()
            if m.pull is not None and m.pull.protocol == protocol}


def freshness(answers: Iterable[Answer]) -> dict[str, str]:
    """The worst source and the oldest age among the answers, as response headers."""
    rank = {"cache": 0, "live": 1, "unknown": 2, "unreachable": 3}
    answers = list(answers)
    source = max((a.source for a in answers), key=rank.__getitem__, default="unknown")
    age = max((a.age_s for a in answers), default=0.0)
    return {"X-Availability-Source": source, "X-Availability-Age": f"{age:.3f}"}
