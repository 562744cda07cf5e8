"""SQLite's batch enqueue (erp_bridge/queue/sqlite_batch.py) stores exactly what enqueuing the same
entries one call at a time stores: the same rows (state, head, backoff, which entry superseded
which), the same running sums, the same answers to each caller, and the same lease order after.
Both paths start from the same history (entries stored, leased, failed with a backoff, acked)."""
from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erp_bridge.queue.base import NewEntry, RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from tests.fakes.clock import FakeClock
from tests.unit.queue_contract import LEASE_S, POLICY
from tests.unit.test_queue_sqlite_sums import recount, table

_runs = itertools.count()
#: (target, item, kind, coalesce, quantity): few keys, so batches replace, duplicate and queue behind
SHAPES = [("shop", "A", "availability", True, None), ("shop", "A", "adjust", True, "0.5"),
          ("shop", "A", "decrement", False, "-1"), ("shop", "B", "availability", True, None),
          ("sor", "A", "decrement", False, "-2"), ("sor", "A", "availability", True, None)]
ENTRY = st.tuples(st.integers(0, len(SHAPES) - 1), st.integers(0, 7))  # shape, idempotency key number
HISTORY = st.lists(st.tuples(st.sampled_from(["enqueue", "lease", "fail", "ack"]), ENTRY), max_size=8)


def entry(shape: int, key: int) -> NewEntry:
    target, item, kind, coalesce, quantity = SHAPES[shape]
    return NewEntry(target=target, kind=kind, item=item, location="WH", idempotency_key=f"{kind}-{key}",
                    payload={"n": key}, quantity=None if quantity is None else Decimal(quantity), coalesce=coalesce)


def history(queue: SQLiteQueue, clock: FakeClock, steps) -> None:
    """The same steps on both queues: their rows are then the same before the batch."""
    for op, (shape, key) in steps:
        if op == "enqueue":
            queue.enqueue([entry(shape, key)])
        elif op == "lease":
            queue.lease("w1", 1 + key % 3, LEASE_S)
        elif held := [e.id for e in queue.unfinished(SHAPES[shape][0]) if e.state is State.LEASED]:
            if op == "ack":
                queue.ack(held[:1], "w1")
            else:  # a backoff the replacing marker keeps
                queue.fail(held[0], "w1", "HTTP 429", retryable=True, retry_after=5 + key)
        clock.advance(1)


def rows(queue: SQLiteQueue) -> list:
    """Every row, and the last id given (a duplicate takes one on the entry-by-entry path)."""
    return queue._db.execute("SELECT * FROM entries ORDER BY id").fetchall() + queue._db.execute(
        "SELECT * FROM sqlite_sequence").fetchall()


def leases(queue: SQLiteQueue, clock: FakeClock) -> list:
    """Everything leasable, in order, key after key (acking as it goes), within the next minute."""
    out = []
    for _ in range(40):
        clock.advance(2)
        taken = queue.lease("w9", 100, LEASE_S)
        out.append(sorted((e.target, e.idempotency_key) for e in taken))
        queue.ack([e.id for e in taken], "w9")
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=HISTORY, batch=st.lists(ENTRY, min_size=2, max_size=12))
def test_a_batch_stores_what_entries_one_by_one_store(tmp_path, steps, batch):
    run = next(_runs)
    clocks = FakeClock(), FakeClock()
    one, each = (SQLiteQueue(tmp_path / f"{run}-{name}.db", RetryPolicy(**POLICY), clock=clock)
                 for name, clock in zip(("batch", "each"), clocks))
    try:
        for queue, clock in zip((one, each), clocks):
            history(queue, clock, steps)
        new = [entry(*e) for e in batch]
        together = one.enqueue(new)
        apart = [each.enqueue([n])[0] for n in new]
        assert together == apart
        assert rows(one) == rows(each)
        assert table(one._db) == table(each._db) == recount(one._db)
        assert leases(one, clocks[0]) == leases(each, clocks[1])
    finally:
        one.close()
        each.close()


@pytest.fixture
def queue(tmp_path):
    q = SQLiteQueue(tmp_path / "q.db", RetryPolicy(**POLICY), clock=FakeClock())
    yield q
    q.close()


def test_a_hot_sku_batch_keeps_one_pending_marker_and_every_sale(queue):
    """The intake's shape: per webhook a sale for the system of record and a marker for the channel."""
    first = queue.enqueue([entry(4, 0), entry(5, 0)])
    stored = queue.enqueue([e for n in range(1, 6) for e in (entry(4, n), entry(5, n))])
    markers = [e for e in stored if e.kind == "availability"]
    assert [queue.get(e.id).superseded_by for e in [first[1], *markers]] == [e.id for e in markers] + [None]
    assert [e.idempotency_key for e in queue.unfinished("sor")] == [f"decrement-{n}" for n in range(6)] + [
        "availability-5"]
    assert queue.pending_quantity("sor", "A", "WH") == Decimal(-12)


def test_a_batch_with_a_stored_key_answers_it_unchanged_and_stores_the_rest(queue):
    stored = queue.enqueue([entry(2, 1)])[0]
    again, fresh = queue.enqueue([entry(2, 1), entry(2, 2)])
    assert again == stored and fresh.state is State.PENDING
    assert [e.idempotency_key for e in queue.unfinished("shop")] == ["decrement-1", "decrement-2"]
