"""Group commit: concurrent callers share one transaction, each gets its own entries back, and a
failed commit reaches every caller it held (nothing is reported stored that was not)."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from erp_bridge.queue import open_queue
from erp_bridge.queue.base import NewEntry, RetryPolicy
from erp_bridge.queue.groupcommit import GroupCommit


def new(key: str) -> NewEntry:
    return NewEntry(target="odoo", kind="decrement", item="A", location="WH", idempotency_key=key,
                    payload={}, quantity=Decimal(-1))


class CountingQueue:
    """The real SQLite queue, with a gate to hold the first commit while others arrive."""

    def __init__(self, path):
        self.queue = open_queue(f"sqlite:///{path}", RetryPolicy())
        self.commits: list[int] = []
        self.gate = threading.Event()

    def enqueue(self, entries):
        self.commits.append(len(entries))
        self.gate.wait(5)
        return self.queue.enqueue(entries)


def test_callers_waiting_behind_a_commit_share_the_next_one(tmp_path):
    q = CountingQueue(tmp_path / "q.db")
    group = GroupCommit(q.enqueue)
    results: dict[int, list] = {}
    first = threading.Thread(target=lambda: results.setdefault(0, group.submit([new("k0")])))
    first.start()
    while not q.commits:
        threading.Event().wait(0.01)
    others = [threading.Thread(target=lambda n=n: results.setdefault(n, group.submit([new(f"k{n}"), new(f"k{n}b")])))
              for n in range(1, 9)]
    for t in others:
        t.start()
    threading.Event().wait(0.3)  # all eight are now queued behind the held commit
    q.gate.set()
    for t in [first, *others]:
        t.join(10)
    assert q.commits == [1, 16]  # the eight waiters were stored in one transaction
    assert [e.idempotency_key for e in results[3]] == ["k3", "k3b"]
    assert len({e.id for n in results for e in results[n]}) == 17


def test_a_failed_commit_raises_in_every_caller_it_held():
    calls = []

    def broken(entries):
        calls.append(len(entries))
        raise OSError("disk full")

    group = GroupCommit(broken)
    with pytest.raises(OSError, match="disk full"):
        group.submit([new("k1")])
    assert calls == [1]
