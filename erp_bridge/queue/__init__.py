"""Durable queue: SQLite (embedded default) and PostgreSQL."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from .base import Queue, RetryPolicy

Clock = Callable[[], float]


def _open_sqlite(url: str, policy: RetryPolicy, clock: Clock) -> Queue:
    from .sqlite import SQLiteQueue

    # SQLAlchemy's convention: what follows ``sqlite:///`` is the path, so
    # ``sqlite:///var/q.db`` is relative and ``sqlite:////var/lib/q.db`` absolute.
    path = url.removeprefix("sqlite:///")
    if not path or path == url:
        raise ConfigError(f"queue url {url!r}: expected sqlite:///<path to file>")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return SQLiteQueue(path, policy, clock=clock)


# Scheme -> opener. The PostgreSQL queue (a later issue) registers "postgresql" and "postgres"
# here, with an opener that takes the same (url, policy, clock).
OPENERS: dict[str, Callable[[str, RetryPolicy, Clock], Queue]] = {
    "sqlite": _open_sqlite,
}


def check_queue_url(url: str) -> None:
    """Raise ConfigError unless ``open_queue`` has an opener for ``url`` and its form is right
    (without opening it: ``config check`` must not create files)."""
    scheme = url.partition("://")[0]
    if scheme not in OPENERS:
        planned = " (the PostgreSQL queue is planned, not built yet)" if scheme.startswith("postgres") else ""
        raise ConfigError(f"queue url: unsupported scheme {scheme!r}{planned} "
                          f"(supported: {', '.join(sorted(OPENERS))})")
    if scheme == "sqlite" and (url == url.removeprefix("sqlite:///") or not url.removeprefix("sqlite:///")):
        raise ConfigError(f"queue url {url!r}: expected sqlite:///<path to file>")


def open_queue(url: str, policy: RetryPolicy, clock: Clock = time.time) -> Queue:
    """Open the queue a URL names: ``sqlite:///path/to/file.db`` (relative to the working
    directory; four slashes for an absolute path)."""
    check_queue_url(url)
    return OPENERS[url.partition("://")[0]](url, policy, clock)


__all__ = ["check_queue_url", "open_queue", "OPENERS", "Queue", "RetryPolicy"]
