"""The channel inbox (connectors/runtime/inbox.py) on both storage engines: the SQLite file and the
PostgreSQL database every host shares. Two processes recording the same keys at the same moment
each get a key as new exactly once; two workers leasing one inbox never resolve the same reference
at the same time; ``erp-bridge db migrate`` creates the inbox's tables, and ``--inbox-from`` carries
a SQLite queue's inboxes over to PostgreSQL.

PostgreSQL cases skip, with the reason, when no server is reachable (tests/pg.py)."""
from __future__ import annotations

import multiprocessing
import os
import random
import time
from typing import Any

import psycopg
import pytest

from erp_bridge.connectors.runtime.inbox import Inbox, LockBusy
from erp_bridge.errors import ConfigError
from erp_bridge.storage import postgres as pg
from erp_bridge.storage.migrate import carry_inboxes, migrate_storage
from tests.fakes.clock import FakeClock
from tests.pg import other_host, pg_url, storage_url  # noqa: F401 - fixtures: SQLite, then PostgreSQL


def test_a_lease_hands_each_reference_to_one_caller_until_it_is_done_retried_or_runs_out(storage_url):  # noqa: F811
    clock = FakeClock(1000.0)
    a, b = Inbox(storage_url, "bigcommerce", clock), Inbox(other_host(storage_url), "bigcommerce", clock)
    for n in (1, 2, 3):
        assert a.add(f"msg_{n}", {"order_id": n})
        clock.advance(1)
    assert [r.ref for r in a.due(2)] == [r.ref for r in b.due(2)] == ["msg_1", "msg_2"]  # no lease: both see them
    assert [r.ref for r in a.due(2, lease_s=60)] == ["msg_1", "msg_2"]
    assert [r.ref for r in b.due(lease_s=60)] == ["msg_3"] and b.due(lease_s=60) == []
    a.retry("msg_1", "HTTP 503 from GET /v2/orders/1", after_s=5)  # the lease ends with the retry's own time
    b.done("msg_3")
    clock.advance(5)
    assert [r.ref for r in b.due(lease_s=60)] == ["msg_1"]
    clock.advance(56)  # a's lease on msg_2 ran out (a crashed): another worker takes it; b's on msg_1 holds
    assert [(r.ref, r.attempts) for r in b.due(lease_s=60)] == [("msg_2", 0)]
    assert a.pending() == [("msg_1", 1, "HTTP 503 from GET /v2/orders/1"), ("msg_2", 0, None)]
    a.close(), b.close()


def test_keys_beyond_one_statement_and_their_age(storage_url):  # noqa: F811
    clock = FakeClock(1000.0)
    inbox = Inbox(storage_url, "square", clock)
    keys = [f"entry-{n}" for n in range(1200)]  # more than SQLite binds in one statement
    assert inbox.record("seen", keys + keys[:10]) == keys
    assert inbox.known("seen", ["nope", *keys]) == set(keys) and inbox.known("other", keys) == set()
    assert inbox.record("seen", []) == [] and inbox.known("seen", []) == set()
    clock.advance(100)
    assert inbox.record("seen", ["late", "entry-1"]) == ["late"]
    assert inbox.forget("seen", older_than_s=50) == 1200 and inbox.known("seen", ["late", "entry-1"]) == {"late"}
    inbox.close()


def test_status_reads_the_cursors_of_every_system(storage_url):  # noqa: F811
    square, amazon = Inbox(storage_url, "square"), Inbox(other_host(storage_url), "amazon")
    square.advance("changes", "2026-11-30T10:00:00Z")
    amazon.advance("orders", "2026-11-30T09:00:00Z")
    square.advance("changes", "2026-11-30T10:05:00Z")  # replaced in place
    assert square.cursors() == {("amazon", "orders"): "2026-11-30T09:00:00Z",
                                ("square", "changes"): "2026-11-30T10:05:00Z"}
    assert amazon.cursors("square") == {("square", "changes"): "2026-11-30T10:05:00Z"}
    assert amazon.cursor("changes") is None and square.cursor("changes") == "2026-11-30T10:05:00Z"
    square.close(), amazon.close()


def test_db_migrate_creates_the_inbox_tables(storage_url):  # noqa: F811
    said = migrate_storage(storage_url)
    if storage_url.startswith("sqlite"):
        assert "inbox tables present" in said
    else:
        with psycopg.connect(storage_url) as conn:
            tables = conn.execute("SELECT to_regclass('bridge_inbox_references'), to_regclass('bridge_inbox_keys'),"
                                  " to_regclass('bridge_inbox_cursors')").fetchone()
        assert tables == ("bridge_inbox_references", "bridge_inbox_keys", "bridge_inbox_cursors")
    inbox = Inbox(storage_url, "woocommerce")
    assert inbox.add("d1", {"order": {"id": 1}}) and inbox.pending() == [("d1", 0, None)]
    inbox.close()


# --- two processes ----------------------------------------------------------------------------
def _record(url: str, keys: list[str], seed: int, start: Any, out: Any) -> None:
    """One process: record ``keys`` in batches of 50 (each shuffled its own way), from ``start``."""
    inbox, shuffle = Inbox(url, "square"), random.Random(seed + os.getpid()).shuffle
    start.wait()
    new: list[str] = []
    for first in range(0, len(keys), 50):
        batch = keys[first:first + 50]
        shuffle(batch)
        new += inbox.record("notice", batch)
    inbox.close()
    out.put(new)


def _resolve(url: str, start: Any, out: Any) -> None:
    """One worker: lease what is due, mark it done, until nothing is left."""
    inbox, got = Inbox(url, "bigcommerce"), []
    start.wait()
    while batch := inbox.due(5, lease_s=60):
        for reference in batch:
            got.append(reference.ref)
            inbox.done(reference.ref)
    inbox.close()
    out.put(got)


def _in_two_processes(target: Any, *args: Any) -> list[list[str]]:
    spawn = multiprocessing.get_context("spawn")
    start, out = spawn.Barrier(2, timeout=60), spawn.Queue()
    processes = [spawn.Process(target=target, args=(*args, start, out)) for _ in range(2)]
    for process in processes:
        process.start()
    results = [out.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    return results


def test_two_processes_recording_the_same_keys_at_once_get_each_key_as_new_exactly_once(storage_url):  # noqa: F811
    keys = [f"event-{n:04}" for n in range(1000)]
    Inbox(storage_url, "square").close()  # tables and migrations first: the race is about the keys
    first, second = _in_two_processes(_record, storage_url, keys, random.randrange(1 << 30))
    assert sorted(first + second) == keys  # every key new once: none lost, none twice
    assert len(set(first)) == len(first) and not set(first) & set(second)


def test_two_workers_leasing_one_inbox_resolve_each_reference_once(storage_url):  # noqa: F811
    inbox = Inbox(storage_url, "bigcommerce")
    refs = [f"msg_{n:03}" for n in range(200)]
    for ref in refs:
        inbox.add(ref, {"order_id": ref})
    first, second = _in_two_processes(_resolve, storage_url)
    assert sorted(first + second) == refs and not set(first) & set(second)
    assert inbox.pending() == []
    inbox.close()


def test_a_lock_held_too_long_is_a_retryable_error_not_a_hang(storage_url):  # noqa: F811
    """A holder that hangs (stopped, or cut off with its session open) keeps its lock; the others
    wait ``wait_s``, then give up with an error that says so, and their work is retried later."""
    holder, waiter = Inbox(storage_url, "lightspeed_r"), Inbox(storage_url, "lightspeed_r")
    with holder.exclusive("oauth2:refresh_token"):
        started = time.monotonic()
        said = "lightspeed_r: another bridge process has held the lock on oauth2:refresh_token for over 0.3 s"
        with pytest.raises(LockBusy, match=said) as busy, waiter.exclusive("oauth2:refresh_token", wait_s=0.3):
            pass
        waited = time.monotonic() - started
        with waiter.exclusive("oauth2:other", wait_s=0.3):  # another name is not held
            pass
    with waiter.exclusive("oauth2:refresh_token", wait_s=0.3):  # given back: free at once
        pass
    assert busy.value.after == 0.3 and 0.3 <= waited < 10
    if storage_url.startswith("postgresql"):  # the bounded wait stayed off the pooled sessions
        pool = pg.acquire(storage_url)
        with pool.connection() as a, pool.connection() as b, pool.connection() as c:  # each idle one
            assert {conn.execute("SHOW lock_timeout").fetchone()["lock_timeout"] for conn in (a, b, c)} == {"0"}
        pg.release(storage_url)
    for inbox in (holder, waiter):
        inbox.close()


# --- moving from SQLite to PostgreSQL -----------------------------------------------------------
@pytest.mark.postgres
def test_moving_to_postgresql_carries_cursors_keys_and_references_over_once(tmp_path, pg_url):  # noqa: F811
    old_url, clock = f"sqlite:///{tmp_path}/queue.sqlite3", FakeClock(1000.0)
    old = Inbox(old_url, "bigcommerce", clock)
    old.add("msg_done", {"order_id": 1})
    old.done("msg_done")
    old.add("msg_open", {"order_id": 2})
    old.retry("msg_open", "HTTP 503", after_s=30)
    old.record("counted", ["bigcommerce:1:11"])
    old.advance("changes", "2026-11-30T10:00:00Z")
    old.close()
    migrate_storage(pg_url)
    said = carry_inboxes(old_url, pg_url)
    assert "copied 2 references, 1 keys, 1 cursors" in said and "(rows already there kept)" in said
    assert "copied 0 references, 0 keys, 0 cursors" in carry_inboxes(old_url, pg_url)  # run again: nothing
    new = Inbox(pg_url, "bigcommerce", clock)
    assert new.add("msg_done", {"order_id": 1}) is False  # a late redelivery is still a duplicate
    assert new.pending() == [("msg_open", 1, "HTTP 503")] and new.due() == []
    clock.advance(30)
    assert [r.payload for r in new.due()] == [{"order_id": 2}]
    assert new.known("counted", ["bigcommerce:1:11"]) and new.cursor("changes") == "2026-11-30T10:00:00Z"
    new.close()


def test_carrying_inboxes_over_names_what_is_wrong(tmp_path):
    pg = "postgresql://bridge:pg_pw_31415926@db.internal/bridge"
    with pytest.raises(ConfigError, match=r"no such file .*old\.sqlite3 \(the old host's queue file\)"):
        carry_inboxes(f"sqlite:///{tmp_path}/old.sqlite3", pg)
    with pytest.raises(ConfigError, match="into a PostgreSQL queue.url") as wrong:
        carry_inboxes(pg, f"sqlite:///{tmp_path}/new.sqlite3")
    assert "pg_pw_31415926" not in str(wrong.value)
