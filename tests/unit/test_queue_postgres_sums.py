"""PostgreSQL's running sums (erp_bridge/queue/sums.py) as a table: migration 5's triggers keep
them, so every row of ``bridge_pending_sums`` must equal the sum recounted from the entries after
any transition, under concurrent writers too. Triggers, not the queue's statements: a process of
an older version still running during an upgrade moves them too (a sum it skipped would be a sale
the pull answers no longer subtract).
"""
from __future__ import annotations

import threading

import psycopg
import pytest

from erp_bridge.queue.postgres import PostgresQueue
from tests.pg import pg_url  # noqa: F401 - fixture
from tests.unit.queue_contract import LEASE_S, clock, new, take  # noqa: F401 - fixture

pytestmark = pytest.mark.postgres

RECOUNT = ("SELECT target, item, location, kind, sum(quantity) AS q FROM bridge_entries"
           " WHERE quantity IS NOT NULL AND state IN ('pending', 'leased', 'dead') GROUP BY 1, 2, 3, 4")


def assert_sums_match_rows(url: str) -> None:
    """Every key's stored sum equals its recount (a key whose sum went back to 0 keeps a 0 row)."""
    with psycopg.connect(url) as conn:
        stored = {r[:4]: r[4] for r in conn.execute("SELECT * FROM bridge_pending_sums") if r[4] != 0}
        recount = {r[:4]: r[4] for r in conn.execute(RECOUNT) if r[4] != 0}
    assert stored == recount


def triggers(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
                                           " AND tgrelid = 'bridge_entries'::regclass")]


def test_every_transition_that_moves_a_sum_keeps_the_table_equal_to_the_rows(pg_url, clock):  # noqa: F811
    q = PostgresQueue(pg_url, clock=clock)
    assert len(triggers(pg_url)) == 3  # migration 5's: whoever writes the entries moves the sums
    q.enqueue([new("a", quantity="-1"), new("b", quantity="-2.5"), new("c", item="SKU-2", quantity="4"),
               new("n", item="SKU-3", quantity=None), new("a", quantity="-7")])  # a duplicate counts once
    assert_sums_match_rows(pg_url)
    q.enqueue([new("m1", item="SKU-4", kind="adjust", quantity="0.5", coalesce=True)])
    q.enqueue([new("m2", item="SKU-4", kind="adjust", quantity="0.25", coalesce=True)])  # supersedes m1: - 0.5
    assert_sums_match_rows(pg_url)
    q.ack([take(q, "a").id], "w1")  # leased -> done
    q.fail(take(q, "b").id, "w1", "HTTP 400", retryable=False)  # leased -> dead: still counts
    assert_sums_match_rows(pg_url)
    clock.advance(LEASE_S + 1)
    q.fail(take(q, "c").id, "w1", "HTTP 503", retryable=True)  # back to pending
    clock.advance(600)
    q.release([take(q, "c").id], "w1")  # leased -> pending
    take(q, "c", worker="w2")
    q.reclaim(["w2"])  # leased -> pending, the attempt counted
    assert_sums_match_rows(pg_url)
    dead = q.dead_letters()
    q.replay(dead[0].id)  # dead -> pending
    q.fail(take(q, "b").id, "w1", "HTTP 400", retryable=False)
    q.discard(dead[0].id, "counted by hand")  # dead -> discarded: - 2.5
    assert_sums_match_rows(pg_url)
    clock.advance(100)
    q.purge_done(older_than_s=50)  # done rows never counted
    assert_sums_match_rows(pg_url)
    q.close()


def test_a_lease_that_runs_out_into_the_dead_letters_keeps_its_quantity_counted(pg_url, clock):  # noqa: F811
    from erp_bridge.queue.base import RetryPolicy
    q = PostgresQueue(pg_url, RetryPolicy(max_attempts=1), clock=clock)
    q.enqueue([new("a", quantity="-3"), new("b", quantity="-1")])
    take(q, "a")
    clock.advance(LEASE_S + 1)
    leased = q.lease("w2", 10, LEASE_S)  # a's lease ran out: its one attempt spent, dead; b is next
    assert [e.idempotency_key for e in leased] == ["b"] and q.get(1).state.value == "dead"
    assert_sums_match_rows(pg_url)
    assert q.pending_quantity("shop", "SKU-1", "WH") == -4
    q.close()


def test_concurrent_writers_keep_the_sums_equal_to_the_rows(pg_url, clock):  # noqa: F811
    """Producers (batches and coalescing markers) and consumers (ack, fail, discard) racing on the
    same keys: the upserts of one statement per batch must neither lose nor double a quantity."""
    q = PostgresQueue(pg_url, clock=clock)
    keys = [f"SKU-{n}" for n in range(4)]
    errors: list[BaseException] = []

    def guarded(work):
        def run(*args):
            try:
                work(*args)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)
        return run

    def produce(p):
        for i in range(30):
            q.enqueue([new(f"p{p}:{i}:{k}", item=k, quantity=f"-{i % 3}.5") for k in keys])
            q.enqueue([new(f"m{p}:{i}", item=keys[i % 4], kind="adjust", quantity=str(i), coalesce=True)])

    produced = threading.Event()

    def consume(w):
        idle = 0
        while not produced.is_set() or idle < 20:
            batch = q.lease(f"w{w}", 8, LEASE_S)
            idle = 0 if batch else idle + 1
            for n, e in enumerate(batch):
                if (e.id + n) % 5 == 0:
                    q.fail(e.id, f"w{w}", "HTTP 400", retryable=False)
                    q.discard(e.id, "by hand") if e.id % 2 else None
                else:
                    q.ack([e.id], f"w{w}")
    threads = [threading.Thread(target=guarded(produce), args=(p,)) for p in range(3)]
    threads += [threading.Thread(target=guarded(consume), args=(w,)) for w in range(3)]
    [t.start() for t in threads]
    [t.join(120) for t in threads[:3]]
    produced.set()
    [t.join(120) for t in threads[3:]]
    assert not errors
    assert_sums_match_rows(pg_url)
    q.close()
