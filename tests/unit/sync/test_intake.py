"""The intake's group commit (sync/intake.py): deliveries that arrive while a commit runs share the
next one; each caller, on an event loop or in a thread, hears back only after the commit that
holds its entries, gets its own entries, and learns of a failed commit; close drains what waits."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from decimal import Decimal

import pytest

from erp_bridge.errors import RetryableError
from erp_bridge.queue import open_queue
from erp_bridge.queue.base import NewEntry, RetryPolicy, State
from erp_bridge.sync import intake as intake_module
from erp_bridge.sync.intake import Intake


def new(key: str) -> NewEntry:
    return NewEntry(target="odoo", kind="decrement", item="A", location="WH", idempotency_key=key,
                    payload={}, quantity=Decimal(-1))


class GatedQueue:
    """The real SQLite queue; the first commit is held at ``gate`` while others arrive, and
    ``committed`` lists the keys each finished commit stored."""

    def __init__(self, path):
        self.queue = open_queue(f"sqlite:///{path}", RetryPolicy())
        self.calls: list[int] = []
        self.committed: list[list[str]] = []
        self.gate = threading.Event()

    def enqueue(self, entries):
        self.calls.append(len(entries))
        self.gate.wait(5)
        stored = self.queue.enqueue(entries)
        self.committed.append([e.idempotency_key for e in stored])
        return stored


def wait_for(condition) -> None:
    for _ in range(500):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("condition not reached")


def test_an_idle_committer_takes_every_delivery_the_loop_has_ready_in_one_commit(tmp_path):
    """It is woken after the loop ran what was ready, not by the first delivery of the burst."""
    q = GatedQueue(tmp_path / "q.db")
    q.gate.set()
    intake = Intake(q.enqueue)

    async def burst() -> list[list[str]]:
        await intake.store([new("first")])  # the committer runs, then waits for work
        wait_for(lambda: intake._thread is not None and intake._cond._waiters)  # type: ignore[attr-defined]
        answers = await asyncio.gather(*(deliver(n) for n in range(5)))
        return [[e.idempotency_key for e in stored] for stored in answers]

    async def deliver(n: int) -> list:
        time.sleep(0.01)  # the loop is busy with this request (the GIL free, as in a parse or a send)
        return await intake.store([new(f"k{n}")])

    assert asyncio.run(burst()) == [[f"k{n}"] for n in range(5)]
    intake.close()
    assert q.calls == [1, 5]
    q.queue.close()


def test_threads_share_the_commit_with_the_loop(tmp_path):
    q = GatedQueue(tmp_path / "q.db")
    intake = Intake(q.enqueue)
    results: dict[str, list] = {}
    first = threading.Thread(target=lambda: results.setdefault("t0", intake.accept([new("t0")])))
    first.start()
    wait_for(lambda: q.calls)
    waiter = threading.Thread(target=lambda: results.setdefault("t1", intake.accept([new("t1")])))
    waiter.start()

    async def on_loop() -> None:
        results["a1"] = await intake.store([new("a1")])

    loop_thread = threading.Thread(target=lambda: asyncio.run(on_loop()))
    loop_thread.start()
    wait_for(lambda: len(intake._pending) == 2)
    q.gate.set()
    for t in (first, waiter, loop_thread):
        t.join(10)
    intake.close()
    assert q.calls == [1, 2]
    assert {k: [e.idempotency_key for e in v] for k, v in results.items()} == {"t0": ["t0"], "t1": ["t1"], "a1": ["a1"]}
    q.queue.close()


def test_a_failed_commit_reaches_every_caller_it_held_and_the_next_commit_works(tmp_path):
    q = open_queue(f"sqlite:///{tmp_path / 'q.db'}", RetryPolicy())
    fail = [True]

    def enqueue(entries):
        if fail[0]:
            raise OSError("disk full")
        return q.enqueue(entries)

    intake = Intake(enqueue)

    async def two() -> list:
        return await asyncio.gather(intake.store([new("a")]), intake.store([new("b")]), return_exceptions=True)

    answers = asyncio.run(two())
    assert all(isinstance(r, RetryableError) for r in answers), answers  # a webhook gets a 503, and is sent again
    assert [str(r) for r in answers] == ["not stored: disk full", "not stored: disk full"]
    with pytest.raises(RetryableError, match="not stored: disk full"):
        intake.accept([new("c")])
    fail[0] = False
    assert [e.idempotency_key for e in intake.accept([new("c")])] == ["c"]
    intake.close()
    assert q.stats()[0].depth[State.PENDING] == 1  # nothing reported stored that was not
    q.close()


def test_close_commits_what_waits_then_refuses(tmp_path):
    q = GatedQueue(tmp_path / "q.db")
    intake = Intake(q.enqueue)
    results: list = []
    threads = [threading.Thread(target=lambda n=n: results.append(intake.accept([new(f"k{n}")]))) for n in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: q.calls)
    closing = threading.Thread(target=intake.close)
    closing.start()
    q.gate.set()
    closing.join(10)
    for t in threads:
        t.join(10)
    assert sorted(e.idempotency_key for r in results for e in r) == ["k0", "k1", "k2"]
    with pytest.raises(RetryableError, match="shutting down"):
        intake.accept([new("late")])
    q.queue.close()


def test_a_request_whose_client_went_away_is_stored_all_the_same(tmp_path):
    """A cancelled await (the HTTP client disconnected) neither loses the entries nor breaks the
    answers of the others in its commit; the platform's retry is then a duplicate, stored once."""
    q = GatedQueue(tmp_path / "q.db")
    intake = Intake(q.enqueue)

    async def run() -> list[str]:
        gone = asyncio.ensure_future(intake.store([new("gone")]))
        stays = asyncio.ensure_future(intake.store([new("stays")]))
        await asyncio.sleep(0.05)
        gone.cancel()
        q.gate.set()
        return [e.idempotency_key for e in await stays]

    assert asyncio.run(run()) == ["stays"]
    intake.close()
    assert sorted(k for keys in q.committed for k in keys) == ["gone", "stays"]
    q.queue.close()


# -- on the event loop with a queue that begins an enqueue without waiting (SQLite's begin_enqueue):
# the statements on the loop, the commit on the committer's thread

class GatedBegin(GatedQueue):
    """GatedQueue's queue begun on the loop; its commits wait for ``gate`` on the committer thread."""

    def __init__(self, path):
        super().__init__(path)
        self.commit_threads: list[str] = []
        self.fail: Exception | None = None

    def begin(self, entries):
        self.calls.append(len(entries))
        commit = self.queue.begin_enqueue(entries)
        if commit is None:
            return None

        def gated():
            self.commit_threads.append(threading.current_thread().name)
            self.gate.wait(5)
            if self.fail is not None:  # the commit fails (e.g. the disk is full): nothing is stored
                self.queue._end("ROLLBACK")
                raise self.fail
            stored = commit()
            self.committed.append([e.idempotency_key for e in stored])
            return stored
        return gated


@pytest.mark.parametrize("begun", [False, True], ids=["committer thread", "statements on the loop"])
def test_deliveries_on_the_loop_share_a_commit_and_each_hears_only_after_it(tmp_path, begun):
    """Without ``begin`` the committer thread stores them; with it the loop runs the statements and
    only the commit is made off the loop, on the executor."""
    q = GatedBegin(tmp_path / "q.db")
    intake = Intake(q.enqueue, begin=q.begin if begun else None)
    answered: dict[str, list[str]] = {}

    async def deliver(key: str) -> None:
        stored = await intake.store([new(key), new(f"{key}b")])
        assert any(key in keys for keys in q.committed), "answered before its commit finished"
        answered[key] = [e.idempotency_key for e in stored]

    async def burst() -> None:
        first = asyncio.ensure_future(deliver("k0"))
        while not q.calls:
            await asyncio.sleep(0.01)  # the loop runs on while the first commit waits at the gate
        others = [asyncio.ensure_future(deliver(f"k{n}")) for n in range(1, 9)]
        await asyncio.sleep(0.3)  # all eight wait behind the held commit, none answered
        assert answered == {}
        q.gate.set()
        await asyncio.gather(first, *others)

    asyncio.run(burst())
    intake.close()
    assert q.calls == [2, 16]  # the eight were stored in one transaction
    assert answered["k3"] == ["k3", "k3b"]
    if begun:
        assert len(set(q.commit_threads)) == 1 and q.commit_threads[0].startswith("intake-loop-commit")
        assert intake._thread is None  # the committer thread of the threads' callers was not needed
    assert q.queue.stats()[0].depth[State.PENDING] == 18
    q.queue.close()


def test_on_the_loop_a_batch_over_loop_entries_is_enqueued_whole_on_the_committers_thread(tmp_path, monkeypatch):
    """A big batch's statements overlap the loop there (SQLite works without the GIL)."""
    monkeypatch.setattr(intake_module, "LOOP_ENTRIES", 4)
    q = GatedBegin(tmp_path / "q.db")
    enqueued_on: list[str] = []

    def enqueue(entries):
        enqueued_on.append(threading.current_thread().name)
        return q.enqueue(entries)

    intake = Intake(enqueue, begin=q.begin)

    async def burst() -> list[list[str]]:
        first = asyncio.ensure_future(intake.store([new("k0"), new("k0b")]))
        while not q.commit_threads:
            await asyncio.sleep(0.01)
        others = [asyncio.ensure_future(intake.store([new(f"k{n}"), new(f"k{n}b")])) for n in range(1, 9)]
        await asyncio.sleep(0.05)
        q.gate.set()
        return [[e.idempotency_key for e in stored] for stored in await asyncio.gather(first, *others)]

    answers = asyncio.run(burst())
    intake.close()
    assert answers[4] == ["k4", "k4b"]
    assert q.calls == [2, 16] and len(q.commit_threads) == 1  # the first begun on the loop, then 16 entries
    assert len(enqueued_on) == 1 and enqueued_on[0].startswith("intake-loop-commit")  # ... enqueued there whole
    assert q.queue.stats()[0].depth[State.PENDING] == 18
    q.queue.close()


def test_on_the_loop_a_queue_another_process_writes_takes_the_batch_on_the_committer_and_the_loop_runs_on(tmp_path):
    q = GatedBegin(tmp_path / "q.db")
    q.gate.set()
    intake = Intake(q.enqueue, begin=q.begin)
    other = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process (a CLI, a worker) holds the write lock

    async def run() -> tuple[list[str], int]:
        storing = asyncio.ensure_future(intake.store([new("a")]))
        ticks = 0
        for _ in range(20):  # the loop is not held while the queue waits for the lock
            await asyncio.sleep(0.01)
            ticks += 1
        assert not storing.done()
        other.execute("ROLLBACK")
        return [e.idempotency_key for e in await storing], ticks

    assert asyncio.run(run()) == (["a"], 20)
    assert q.commit_threads == []  # not begun on the loop: the whole enqueue ran on the committer
    assert q.calls == [1, 1]  # begun (refused at once), then enqueued
    assert q.committed == [["a"]]
    intake.close()
    other.close()
    assert q.queue.stats()[0].depth[State.PENDING] == 1
    q.queue.close()


def test_on_the_loop_a_failed_commit_reaches_every_caller_it_held_and_the_next_commit_works(tmp_path):
    q = GatedBegin(tmp_path / "q.db")
    q.gate.set()
    q.fail = OSError("disk full")
    intake = Intake(q.enqueue, begin=q.begin)

    async def two() -> list:
        return await asyncio.gather(intake.store([new("a")]), intake.store([new("b")]), return_exceptions=True)

    answers = asyncio.run(two())
    assert [str(r) for r in answers] == ["not stored: disk full", "not stored: disk full"]
    assert all(isinstance(r, RetryableError) for r in answers), answers
    q.fail = None
    assert [[e.idempotency_key for e in r] for r in asyncio.run(two())] == [["a"], ["b"]]
    intake.close()
    assert q.queue.stats()[0].depth[State.PENDING] == 2  # nothing reported stored that was not
    q.queue.close()


def test_close_waits_for_the_loops_commit_under_way_then_refuses(tmp_path):
    q = GatedBegin(tmp_path / "q.db")
    intake = Intake(q.enqueue, begin=q.begin)
    results: list = []

    async def on_loop() -> None:
        results.append(await intake.store([new("a")]))
        with pytest.raises(RetryableError, match="shutting down"):
            await intake.store([new("late")])

    loop_thread = threading.Thread(target=lambda: asyncio.run(on_loop()))
    loop_thread.start()
    wait_for(lambda: q.commit_threads)
    closing = threading.Thread(target=intake.close)
    closing.start()
    closing.join(0.3)
    assert closing.is_alive()  # the commit holds the queue: close waits for it
    q.gate.set()
    closing.join(10)
    loop_thread.join(10)
    assert [e.idempotency_key for e in results[0]] == ["a"]
    assert q.committed == [["a"]]
    q.queue.close()
