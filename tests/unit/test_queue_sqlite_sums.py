"""SQLite's running sums (erp_bridge/queue/sums.py) are kept by the queue's own statements: after
every transition the ``pending_sums`` table must equal a recount from the entries."""
from __future__ import annotations

import sqlite3

import pytest

from erp_bridge.queue import sums
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from tests.fakes.clock import FakeClock
from tests.unit.queue_contract import LEASE_S, POLICY, new, take

KEY = dict(item="SKU-S")


def recount(db: sqlite3.Connection) -> dict[tuple, tuple[int, int]]:
    """(micro, inexact) per key, summed from the unapplied entries, keys with nothing left omitted."""
    out: dict[tuple, list[int]] = {}
    for *key, quantity in db.execute("SELECT target, item, location, kind, quantity FROM entries"
                                     f" WHERE quantity IS NOT NULL AND state IN {sums.UNAPPLIED}"):
        got = out.setdefault(tuple(key), [0, 0])
        value = sums.micro(quantity)
        got[0 if value is not None else 1] += value if value is not None else 1
    return {k: (m, n) for k, (m, n) in out.items() if (m, n) != (0, 0)}


def table(db: sqlite3.Connection) -> dict[tuple, tuple[int, int]]:
    return {tuple(r[:4]): (r[4], r[5]) for r in db.execute("SELECT * FROM pending_sums")
            if (r[4], r[5]) != (0, 0)}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def q(tmp_path, clock):
    queue = SQLiteQueue(tmp_path / "q.db", RetryPolicy(**POLICY), clock=clock)
    yield queue
    queue.close()


def agrees(q: SQLiteQueue) -> None:
    assert table(q._db) == recount(q._db)


def test_the_sums_equal_a_recount_after_every_transition(q, clock):
    batch = [new(f"b{i}", quantity=v, **KEY) for i, v in enumerate(["-1", "-2.5", "-1E+3", "-0.0000001"])]
    q.enqueue(batch + [new("b1", quantity="-7", **KEY), new("o", item="SKU-O", quantity="4")])  # b1 twice
    agrees(q)
    q.enqueue([new("b2", quantity="-9", **KEY), new("n", quantity="-3", **KEY)])  # a duplicate in a run
    q.enqueue([new("m1", kind="adjust", quantity="0.5", coalesce=True, **KEY)])
    q.enqueue([new("m2", kind="adjust", quantity="0.25", coalesce=True, **KEY)])  # supersedes m1
    agrees(q)
    assert q.get(q.enqueue([new("m1", kind="adjust", quantity="1", coalesce=True, **KEY)])[0].id).superseded_by
    q.ack([take(q, "b0").id], "w1")  # delivered
    agrees(q)
    q.fail(take(q, "b1").id, "w1", "HTTP 503", retryable=True)  # back to pending
    clock.advance(10)
    q.release([take(q, "b1").id], "w1")
    q.fail(take(q, "b1").id, "w1", "HTTP 400", retryable=False)  # dead: still unapplied
    agrees(q)
    q.replay(q.dead_letters()[0].id)
    q.fail(take(q, "b2").id, "w1", "HTTP 400", retryable=False)
    q.discard(q.dead_letters()[0].id, "counted by hand")  # applied by hand: no longer counts
    agrees(q)
    clock.advance(100)
    q.purge_done(older_than_s=50)
    agrees(q)


def test_a_lease_that_expires_into_the_dead_letters_keeps_the_sums(q, clock):
    q.enqueue([new("x", quantity="-2", **KEY), new("y", quantity="-3", item="SKU-Y")])
    for _ in range(POLICY["max_attempts"]):
        take(q, "x")
        clock.advance(LEASE_S + 1)  # the worker died: its lease runs out
    assert q.lease("w2", 10, LEASE_S)[0].idempotency_key == "y"  # x expired a third time: dead
    assert q.get(1).state is State.DEAD
    agrees(q)
    q.reclaim(["w2"])  # y's lost attempt counted, pending again
    agrees(q)
    assert q.pending_quantity("shop", "SKU-S", "WH") == -2


def test_a_file_the_triggers_kept_is_continued_without_them(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", RetryPolicy(**POLICY), clock=clock)
    q.enqueue([new("a", quantity="-2", **KEY)])
    for name in sums._OLD_TRIGGERS:  # stand-ins for the older version's triggers: they would count twice
        q._db.execute(f"CREATE TRIGGER {name} AFTER INSERT ON entries BEGIN"
                      " UPDATE pending_sums SET micro = micro + 1000000000; END")
    q.close()
    again = SQLiteQueue(tmp_path / "q.db", RetryPolicy(**POLICY), clock=clock)
    assert not again._db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    again.enqueue([new("b", quantity="-1", **KEY)])
    agrees(again)
    assert again.pending_quantity("shop", "SKU-S", "WH") == -3
    again.close()


def test_sums_that_went_wrong_are_rebuilt_when_the_file_is_opened(tmp_path, clock, caplog):
    """A process of an older version writing to the file meanwhile (its triggers and the queue's
    statements both counting), or a hand-written change: the next open recounts and says so."""
    q = SQLiteQueue(tmp_path / "q.db", RetryPolicy(**POLICY), clock=clock)
    q.enqueue([new(f"a{i}", quantity="-2", **KEY) for i in range(3)] + [new("x", quantity="-1", item="SKU-X")])
    q.close()
    with caplog.at_level("WARNING"):
        q = SQLiteQueue(tmp_path / "q.db", RetryPolicy(**POLICY), clock=clock)  # right: left alone
    assert "rebuilt" not in caplog.text and q.pending_quantity("shop", "SKU-S", "WH") == -6
    q._db.execute("UPDATE pending_sums SET micro = micro * 2 WHERE item = 'SKU-S'")  # counted twice
    q._db.execute("INSERT INTO pending_sums VALUES ('shop', 'SKU-GONE', 'WH', 'decrement', -5000000, 0)")
    q.close()
    with caplog.at_level("WARNING"):
        again = SQLiteQueue(tmp_path / "q.db", RetryPolicy(**POLICY), clock=clock)
    assert "were wrong for 2 key(s)" in caplog.text and "rebuilt from the entries" in caplog.text
    agrees(again)
    assert again.pending_quantity("shop", "SKU-S", "WH") == -6
    assert again.pending_quantity("shop", "SKU-X", "WH") == -1
    assert again.pending_quantity("shop", "SKU-GONE", "WH") == 0
    again.close()


@pytest.mark.parametrize("text, micro", [("-3", -3_000_000), ("12", 12_000_000), ("-2.5", -2_500_000),
                                         ("0.000001", 1), ("-0", 0), ("1.0", 1_000_000), ("5.", 5_000_000),
                                         ("1234567890", 1_234_567_890_000_000), ("-1E+3", None),
                                         ("0.0000001", None), ("12345678901", None), (".5", None),
                                         ("+5", None), ("", None), ("-", None), ("١", None)])
def test_micro_units_are_the_triggers_rules(text, micro):
    assert sums.micro(text) == micro


def test_a_sum_past_64_bits_is_still_stored_and_read_exactly(q):
    big = "999999999.999999"
    q.enqueue([new(f"g{i}", quantity=big, **KEY) for i in range(10_000)])
    # the table's sum turned real past 2**63 (SQLite's integer addition): the read sums the rows
    assert q.pending_quantity("shop", "SKU-S", "WH") == 10_000 * sums.Decimal(big)
