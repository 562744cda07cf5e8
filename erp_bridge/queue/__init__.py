"""Durable queue: SQLite (embedded default) and PostgreSQL."""
from __future__ import annotations

import time
from collections.abc import Callable

from ..storage import SQLITE, engine, sqlite_path
from .base import Queue, RetryPolicy

Clock = Callable[[], float]


def _open_sqlite(url: str, policy: RetryPolicy, clock: Clock) -> Queue:
    from .sqlite import SQLiteQueue

    # SQLAlchemy's convention: what follows ``sqlite:///`` is the path, so
    # ``sqlite:///var/q.db`` is relative and ``sqlite:////var/lib/q.db`` absolute.
    path = sqlite_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteQueue(path, policy, clock=clock)


def _open_postgres(url: str, policy: RetryPolicy, clock: Clock) -> Queue:
    from .postgres import PostgresQueue

    return PostgresQueue(url, policy, clock=clock)


# Scheme -> opener, each taking the same (url, policy, clock).
OPENERS: dict[str, Callable[[str, RetryPolicy, Clock], Queue]] = {
    "sqlite": _open_sqlite,
    "postgresql": _open_postgres,
    "postgres": _open_postgres,
}


def check_queue_url(url: str) -> None:
    """Raise ConfigError unless ``open_queue`` has an opener for ``url`` and its form is right
    (without opening it: ``config check`` must not create files)."""
    if engine(url) == SQLITE:
        sqlite_path(url)


def open_queue(url: str, policy: RetryPolicy, clock: Clock = time.time) -> Queue:
    """Open the queue a URL names: ``sqlite:///path/to/file.db`` (relative to the working
    directory; four slashes for an absolute path) or ``postgresql://user@host/database``."""
    check_queue_url(url)
    return OPENERS[url.partition("://")[0]](url, policy, clock)


__all__ = ["OPENERS", "Queue", "RetryPolicy", "check_queue_url", "open_queue"]
