"""The queue contract on SQLite, plus what only SQLite has: a file, WAL, reopening, open_queue."""
from __future__ import annotations

import sqlite3

import pytest

from erp_bridge.errors import ConfigError
from erp_bridge.queue import open_queue
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from tests.unit.queue_contract import *  # noqa: F403 - the contract suite runs here
from tests.unit.queue_contract import LEASE_S, new
from tests.unit.queue_contract_sums import check, every_state


@pytest.fixture
def queue_factory(tmp_path):
    return lambda policy, clock: SQLiteQueue(tmp_path / "queue.db", policy, clock=clock)


def test_durable_settings(tmp_path):
    q = SQLiteQueue(tmp_path / "q.db")
    assert q._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert q._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    q.close()


def test_entries_survive_reopening(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", clock=clock)
    e = q.enqueue([new("k")])[0]
    q.lease("w1", 10, LEASE_S)
    q.close()
    again = SQLiteQueue(tmp_path / "q.db", clock=clock)
    assert again.get(e.id).state is State.LEASED
    clock.advance(LEASE_S)
    assert [x.id for x in again.lease("w2", 10, LEASE_S)] == [e.id]
    again.close()


def test_a_queue_file_from_before_the_running_sums_is_upgraded_in_place(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", clock=clock)
    since = clock()
    ids, keys = every_state(q, clock)
    for name in ("TABLE pending_sums",):
        q._db.execute(f"DROP {name}")  # the file as an older version left it: only the rows know
    q.close()
    again = SQLiteQueue(tmp_path / "q.db", clock=clock)
    assert again._db.execute("SELECT count(*) FROM pending_sums").fetchone()[0] == 4
    for key in keys:
        check(again, ids, key, since)
    again.ack([e.id for e in again.lease("w2", 10, LEASE_S * 2)], "w2")  # kept from now on
    clock.advance(LEASE_S + 1)
    again.ack([e.id for e in again.lease("w2", 10, LEASE_S)], "w2")
    for key in keys:
        check(again, ids, key, since)
    again.close()


def test_two_connections_never_lease_the_same_entry(tmp_path, clock):
    a = SQLiteQueue(tmp_path / "q.db", clock=clock)
    b = SQLiteQueue(tmp_path / "q.db", clock=clock)
    a.enqueue([new(f"k{i}", item=f"I{i}") for i in range(50)])
    got_a = {e.id for e in a.lease("a", 30, LEASE_S)}
    got_b = {e.id for e in b.lease("b", 30, LEASE_S)}
    assert len(got_a) == 30 and len(got_b) == 20 and not got_a & got_b
    a.close(), b.close()


def test_a_failed_transaction_leaves_nothing_behind(tmp_path):
    q = SQLiteQueue(tmp_path / "q.db")
    bad = new("bad")
    object.__setattr__(bad, "item", None)  # NOT NULL violation mid-batch
    with pytest.raises(sqlite3.IntegrityError):
        q.enqueue([new("good"), bad])
    assert q.stats() == []
    q.close()


@pytest.mark.parametrize("suffix, relative", [("q.db", True), ("/ABS/q.db", False)],
                         ids=["three-slashes-relative", "four-slashes-absolute"])
def test_open_queue_sqlite_urls(tmp_path, monkeypatch, suffix, relative):
    monkeypatch.chdir(tmp_path)
    path = suffix if relative else f"{tmp_path}/abs/q.db"
    q = open_queue(f"sqlite:///{path}", RetryPolicy())
    q.enqueue([new("k")])
    q.close()
    assert (tmp_path / path).exists() if relative else (tmp_path / "abs" / "q.db").exists()


@pytest.mark.parametrize("url", ["sqlite:///", "mysql://u:secret@db/q", "q.db"],
                         ids=["no-path", "unknown-scheme", "no-scheme"])
def test_open_queue_rejects_unsupported_urls_without_echoing_credentials(url):
    with pytest.raises(ConfigError) as err:
        open_queue(url, RetryPolicy())
    assert "secret" not in str(err.value)
