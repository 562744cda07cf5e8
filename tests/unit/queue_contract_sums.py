"""The queue contract, continued: ``pending_quantity`` equals the sum recomputed from the entries
after every transition (the queues keep running sums, erp_bridge/queue/sums.py). Star-imported by
queue_contract.py, so it runs on every engine.
"""
from __future__ import annotations

import itertools
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erp_bridge.queue.base import State
from tests.unit.queue_contract import LEASE_S, new, take

UNAPPLIED = (State.PENDING, State.LEASED, State.DEAD)
KIND_SETS = (None, {"decrement"}, {"increment", "adjust"}, set())
_runs = itertools.count()


def from_rows(entries, key, kinds=None, since=None) -> Decimal:
    """What ``pending_quantity`` must answer, recomputed from the entries as stored now."""
    total = Decimal(0)
    for entry in entries:
        if entry.quantity is None or entry.ordering_key != key or (kinds is not None and entry.kind not in kinds):
            continue
        delivered = (since is not None and entry.state is State.DONE and entry.superseded_by is None
                     and entry.updated_at.timestamp() >= since)
        if entry.state in UNAPPLIED or delivered:
            total += entry.quantity
    return total


def check(queue, ids, key, since) -> None:
    entries = list(filter(None, map(queue.get, dict.fromkeys(ids))))  # a duplicate returns its first
    for kinds in KIND_SETS:
        for done_since in (None, since):
            assert queue.pending_quantity(*key, kinds=kinds, done_since=done_since) == \
                from_rows(entries, key, kinds, done_since), (kinds, done_since)


def test_pending_quantity_follows_one_key_through_every_transition(queue, clock):
    key, since, ids = ("shop", "SKU-W", "WH"), clock(), []
    step = lambda *entries: ids.extend(e.id for e in queue.enqueue(list(entries)))
    step(new("a", item="SKU-W", quantity="-1"), new("b", item="SKU-W", quantity="-2.5"),
         new("c", item="SKU-W", kind="increment", quantity="3"))
    check(queue, ids, key, since)
    step(new("a", item="SKU-W", quantity="-99"))  # a duplicate changes nothing
    step(new("m1", item="SKU-W", kind="adjust", quantity="0.5", coalesce=True))
    step(new("m2", item="SKU-W", kind="adjust", quantity="0.25", coalesce=True))  # replaces m1
    check(queue, ids, key, since)
    a = take(queue, "a")  # lease
    check(queue, ids, key, since)
    queue.fail(a.id, "w1", "HTTP 503", retryable=True)  # back to pending
    clock.advance(10)
    queue.fail(take(queue, "a").id, "w1", "HTTP 400", retryable=False)  # dead: still counts
    check(queue, ids, key, since)
    queue.replay(a.id)  # pending again, behind b (the key's head now)
    queue.ack([take(queue, "b").id], "w1")  # done: counts only since a read before it
    check(queue, ids, key, since)
    queue.release([take(queue, "a").id], "w1")
    take(queue, "a")
    clock.advance(LEASE_S + 1)  # the lease runs out: expired, leased again
    take(queue, "a", worker="w2")
    queue.reclaim(["w2"])
    check(queue, ids, key, since)
    clock.advance(60)
    queue.fail(take(queue, "a").id, "w1", "HTTP 400", retryable=False)
    queue.discard(a.id, "counted by hand")  # discarded: no longer counts
    check(queue, ids, key, since)
    clock.advance(100)
    queue.purge_done(older_than_s=50)
    check(queue, ids, key, since)


def every_state(queue, clock) -> tuple[list[int], list[tuple[str, str, str]]]:
    """Entries in every state over a few keys (for the upgrade tests): their ids and keys."""
    entries = queue.enqueue([new("p", quantity="-1"), new("i", kind="increment", quantity="3"),
                             new("f", quantity="-0.0000001"), new("l", item="SKU-2", quantity="-2.5"),
                             new("x", item="SKU-3", quantity="-8"), new("d", item="SKU-4", quantity="-4")])
    take(queue, "l")
    queue.ack([take(queue, "x").id], "w1")
    queue.fail(take(queue, "d").id, "w1", "HTTP 400", retryable=False)
    return [e.id for e in entries], [("shop", f"SKU-{n}", "WH") for n in range(1, 5)]


FRACTIONS = ["-0.333333", "-0.1", "-0.0000001", "-1E+2", "-123456789012.125", "0.000001", "-7.50", "2"]


def test_pending_quantity_is_exact_for_fractional_and_odd_quantities(queue, clock):
    entries = queue.enqueue([new(f"f{n}", item="SKU-F", quantity=q) for n, q in enumerate(FRACTIONS)])
    assert queue.pending_quantity("shop", "SKU-F", "WH") == sum(map(Decimal, FRACTIONS), Decimal(0))
    for n in range(3):
        queue.ack([take(queue, f"f{n}").id], "w1")
    rest = sum(map(Decimal, FRACTIONS[3:]), Decimal(0))
    assert queue.pending_quantity("shop", "SKU-F", "WH") == rest
    assert queue.pending_quantity("shop", "SKU-F", "WH", done_since=clock()) == sum(map(Decimal, FRACTIONS), Decimal(0))
    check(queue, [e.id for e in entries], ("shop", "SKU-F", "WH"), clock())


QUANTITY = st.one_of(st.sampled_from(["-1", "-2", "1", "-0.5", "-0.0000001", "-1E+3", "-999999999.999999"]),
                     st.decimals(min_value=-10**6, max_value=10**6, places=7, allow_nan=False))
OPS = st.lists(st.tuples(st.sampled_from(["enqueue", "duplicate", "marker", "lease", "ack", "retry", "kill",
                                          "release", "expire", "reclaim", "replay", "discard", "purge"]),
                         st.integers(0, 5), QUANTITY, st.sampled_from(["decrement", "increment"])),
               min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_pending_quantity_equals_the_rows_after_any_sequence_of_transitions(queue, clock, ops):
    run = next(_runs)  # one queue for every example: each has its own target and keys
    target, ids, since, held = f"p{run}", [], clock(), []
    for op, n, quantity, kind in ops:
        _apply(queue, clock, target, run, ids, held, op, n, quantity, kind)
        for location in ("WH", "WH2"):
            check(queue, ids, (target, "SKU-P", location), since)


def _apply(queue, clock, target, run, ids, held, op, n, quantity, kind) -> None:
    location = ("WH", "WH2")[n % 2]
    if op in ("enqueue", "duplicate", "marker"):
        key = f"{run}:{len(ids) if op != 'duplicate' or not ids else n % len(ids)}"
        entry = new(key, target=target, item="SKU-P", location=location, kind="adjust" if op == "marker" else kind,
                    quantity=str(quantity), coalesce=op == "marker")
        ids.extend(e.id for e in queue.enqueue([entry]))
    elif op in ("lease", "expire"):
        if op == "expire":
            clock.advance(LEASE_S + 1)
        held[:] = [e.id for e in queue.lease("w1", n + 1, LEASE_S, targets=[target])]
    elif op in ("ack", "retry", "kill", "release") and held:
        entry_id = held.pop(n % len(held))
        {"ack": lambda: queue.ack([entry_id], "w1"), "release": lambda: queue.release([entry_id], "w1"),
         "retry": lambda: queue.fail(entry_id, "w1", "HTTP 503", retryable=True),
         "kill": lambda: queue.fail(entry_id, "w1", "HTTP 400", retryable=False)}[op]()
    elif op == "reclaim":
        queue.reclaim(["w1"])
        clock.advance(600)  # what was failed or reclaimed is due again
    elif op in ("replay", "discard"):
        dead = [e for e in queue.dead_letters(target=target)]
        if dead:
            entry = dead[n % len(dead)]
            queue.replay(entry.id) if op == "replay" else queue.discard(entry.id, "resolved by hand")
    elif op == "purge":
        clock.advance(5)
        queue.purge_done(older_than_s=3)
