"""Opening a SQLite file that another process is creating at that moment.

SQLite answers ``PRAGMA journal_mode=WAL`` with "database is locked" at once, without waiting out
the busy timeout, while another connection holds the write lock of a new (rollback-journal) file.
Two processes starting together on a new file met that: the service and an ``erp-bridge``
command, or the four processes of the token-renewal test, one of which died in CI. Every store
the bridge keeps in SQLite opens its file through ``erp_bridge.storage.sqlite.connect``, which
waits for the lock like any other statement."""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from erp_bridge.connectors.runtime.inbox import Inbox
from erp_bridge.connectors.runtime.ledger import Ledger
from erp_bridge.queue.sqlite import SQLiteQueue
from erp_bridge.storage.sqlite import connect
from erp_bridge.sync.figures import FigureStore


def _writer_creating(path: Path) -> sqlite3.Connection:
    """Another process in the middle of creating ``path``: a new file, its write lock held."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE other_process (x)")
    return other


def test_plain_sqlite_fails_at_once_which_is_what_connect_mends(tmp_path):
    """The premise, so this file notices if a later SQLite waits by itself."""
    other = _writer_creating(tmp_path / "f.sqlite3")
    plain = sqlite3.connect(tmp_path / "f.sqlite3", isolation_level=None, timeout=5)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        plain.execute("PRAGMA journal_mode=WAL")
    assert time.monotonic() - started < 1  # no wait for the busy timeout
    plain.close()
    other.execute("ROLLBACK")
    other.close()


OPENERS: dict[str, Callable[[Path], object]] = {
    "connect": lambda path: connect(path, 10),
    "queue": lambda path: SQLiteQueue(path),
    "inbox": lambda path: Inbox(f"sqlite:///{path}", "lightspeed_r"),
    "ledger": lambda path: Ledger(f"sqlite:///{path}", "sap_b1"),
    "figures": lambda path: FigureStore(path),
}


@pytest.mark.parametrize("name", OPENERS)
def test_opening_waits_while_another_process_creates_the_file(tmp_path, name):
    path = tmp_path / "q.sqlite3"
    other = _writer_creating(path)
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    started = time.monotonic()
    opened = OPENERS[name](path)
    assert time.monotonic() - started >= 0.25  # it waited for the other's commit, and then opened
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert check.execute("SELECT count(*) FROM other_process").fetchone()[0] == 0  # the other's work stands
    check.close()
    opened.close()  # type: ignore[attr-defined]
    other.close()


def test_the_wait_is_bounded_by_the_timeout(tmp_path):
    other = _writer_creating(tmp_path / "f.sqlite3")
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        connect(tmp_path / "f.sqlite3", 0.3)
    assert 0.25 <= time.monotonic() - started < 5
    other.execute("ROLLBACK")
    other.close()
