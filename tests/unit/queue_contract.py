"""The queue contract (erp_bridge/queue/base.py) as tests, for every implementation.

A test module runs the suite by star-importing this module and defining a ``queue_factory``
fixture: ``queue_factory(policy, clock) -> Queue`` returning an empty queue.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from erp_bridge.queue.base import NewEntry, Outcome, RetryPolicy, State
from tests.fakes.clock import FakeClock

LEASE_S = 30.0
#: no jitter (rng -> 0), so the delays are exactly 1, 2, 4, ... seconds
POLICY = dict(max_attempts=3, base_s=1.0, cap_s=60.0, jitter=0.5, rng=lambda: 0.0)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def queue(queue_factory, clock):
    q = queue_factory(RetryPolicy(**POLICY), clock)
    yield q
    q.close()


def new(key: str, *, target="shop", item="SKU-1", location="WH", kind="decrement",
        quantity: str | None = "-1", coalesce=False) -> NewEntry:
    return NewEntry(target=target, kind=kind, item=item, location=location, idempotency_key=key,
                    payload={"key": key}, quantity=None if quantity is None else Decimal(quantity),
                    coalesce=coalesce)


def marker(key: str, **kw) -> NewEntry:
    return new(key, kind="availability", quantity=None, coalesce=True, **kw)


def lease_keys(queue, worker="w1", limit=100, **kw) -> list[str]:
    return [e.idempotency_key for e in queue.lease(worker, limit, LEASE_S, **kw)]


def take(queue, key: str, worker="w1"):
    """Lease everything due and return the entry with ``key`` (fails if it was not leasable)."""
    leased = {e.idempotency_key: e for e in queue.lease(worker, 100, LEASE_S)}
    assert key in leased, f"{key} not leasable; leased {sorted(leased)}"
    queue.release([e.id for k, e in leased.items() if k != key], worker)
    return leased[key]


# -- enqueue and duplicates -------------------------------------------------------------------

def _to_done(q, e):
    q.ack([take(q, e.idempotency_key).id], "w1")


def _to_dead(q, e):
    q.fail(take(q, e.idempotency_key).id, "w1", "HTTP 400: bad sku", retryable=False)


def _to_leased(q, e):
    take(q, e.idempotency_key)


@pytest.mark.parametrize("settle", [lambda q, e: None, _to_leased, _to_done, _to_dead],
                         ids=["while-pending", "while-leased", "after-done", "after-dead"])
def test_duplicate_enqueue_returns_stored_entry_and_changes_nothing(queue, clock, settle):
    first = queue.enqueue([new("order-1:line-1")])[0]
    settle(queue, first)
    before = queue.get(first.id)
    clock.advance(5)
    again = queue.enqueue([new("order-1:line-1", quantity="-99")])[0]
    assert again == before
    assert queue.get(first.id) == before
    assert sum(sum(s.depth.values()) for s in queue.stats()) == 1


def test_duplicate_inside_one_batch_is_stored_once(queue):
    a, b = queue.enqueue([new("k"), new("k")])
    assert a.id == b.id


def test_same_key_for_two_targets_is_two_entries(queue):
    a, b = queue.enqueue([new("k", target="shop"), new("k", target="pos")])
    assert a.id != b.id and {a.target, b.target} == {"shop", "pos"}


def test_enqueued_entry_round_trips(queue, clock):
    e = queue.enqueue([new("k", quantity="-2.5")])[0]
    assert (e.state, e.attempts, e.quantity, e.payload) == (State.PENDING, 0, Decimal("-2.5"), {"key": "k"})
    assert e.created_at.timestamp() == clock()
    assert queue.get(e.id) == e
    assert queue.get(e.id + 1000) is None


# -- leases -----------------------------------------------------------------------------------

def test_lease_marks_entries_and_respects_limit_and_targets(queue):
    queue.enqueue([new(f"k{i}", item=f"I{i}") for i in range(3)] + [new("p", target="pos")])
    assert lease_keys(queue, limit=2, targets=["shop"]) == ["k0", "k1"]
    assert lease_keys(queue, targets=["pos"]) == ["p"]
    assert lease_keys(queue, targets=[]) == []
    leased = queue.get(queue.enqueue([new("k0", item="I0")])[0].id)
    assert (leased.state, leased.lease_owner) == (State.LEASED, "w1")


@pytest.mark.parametrize("elapsed, leasable", [(LEASE_S - 1, False), (LEASE_S, True), (LEASE_S + 60, True)],
                         ids=["before-expiry", "at-expiry", "long-after"])
def test_expired_lease_comes_back(queue, clock, elapsed, leasable):
    queue.enqueue([new("k")])
    take(queue, "k", worker="crashed")
    clock.advance(elapsed)
    assert lease_keys(queue, worker="w2") == (["k"] if leasable else [])


def test_expired_lease_counts_an_attempt_and_the_old_holder_cannot_ack(queue, clock):
    e = queue.enqueue([new("k")])[0]
    take(queue, "k", worker="crashed")
    clock.advance(LEASE_S)
    take(queue, "k", worker="w2")
    queue.ack([e.id], "crashed")
    assert queue.get(e.id).state is State.LEASED
    queue.ack([e.id], "w2")
    assert [(a.outcome, a.worker) for a in queue.attempts(e.id)] == [
        (Outcome.RETRY, "crashed"), (Outcome.DELIVERED, "w2")]
    assert "lease expired" in queue.attempts(e.id)[0].error


def test_reclaimed_leases_of_a_gone_worker_come_back_at_once(queue, clock):
    """A restarted bridge takes its crashed predecessor's work now, not a whole lease_s later."""
    e, other = queue.enqueue([new("k"), new("o", item="SKU-2")])
    take(queue, "k", worker="host:41/0")
    take(queue, "o", worker="host:42/0")  # a live sibling: its lease stays
    assert queue.lease_owners() == ["host:41/0", "host:42/0"]
    assert lease_keys(queue, worker="host:43/0") == []
    assert queue.reclaim(["host:41/0"]) == 1
    assert queue.lease_owners() == ["host:42/0"]
    assert lease_keys(queue, worker="host:43/0") == ["k"]  # no clock advance
    queue.ack([e.id], "host:41/0")  # the gone worker can no longer ack
    assert queue.get(e.id).lease_owner == "host:43/0"
    queue.ack([e.id], "host:43/0")
    assert [(a.outcome, a.worker) for a in queue.attempts(e.id)] == [
        (Outcome.RETRY, "host:41/0"), (Outcome.DELIVERED, "host:43/0")]
    assert queue.get(other.id).state is State.LEASED
    assert queue.reclaim([]) == 0 and queue.reclaim(["nobody"]) == 0


def test_reclaim_counts_the_lost_attempt_towards_the_dead_letters(queue, clock):
    e = queue.enqueue([new("poison")])[0]
    for n in range(POLICY["max_attempts"]):
        take(queue, "poison", worker=f"host:{n}/0")
        queue.reclaim([f"host:{n}/0"])
    assert queue.get(e.id).state is State.DEAD


def test_entry_that_outlives_every_lease_is_dead_lettered(queue, clock):
    e = queue.enqueue([new("poison")])[0]
    for _ in range(POLICY["max_attempts"]):
        queue.lease("w", 10, LEASE_S)
        clock.advance(LEASE_S)
    assert queue.lease("w", 10, LEASE_S) == []
    assert queue.get(e.id).state is State.DEAD


def test_release_gives_back_without_counting_an_attempt(queue):
    e = queue.enqueue([new("k")])[0]
    take(queue, "k")
    queue.release([e.id], "w1")
    stored = queue.get(e.id)
    assert (stored.state, stored.attempts, stored.lease_owner) == (State.PENDING, 0, None)
    assert [a.outcome for a in queue.attempts(e.id)] == [Outcome.RELEASED]
    assert lease_keys(queue) == ["k"]


def test_release_with_a_delay_holds_the_entry_back(queue, clock):
    e = queue.enqueue([new("k")])[0]
    take(queue, "k")
    queue.release([e.id], "w1", delay_s=5)
    assert queue.get(e.id).attempts == 0
    clock.advance(4.99)
    assert lease_keys(queue) == []
    clock.advance(0.01)
    assert lease_keys(queue) == ["k"]


def test_release_with_a_reason_records_it_and_keeps_the_last_one(queue):
    e = queue.enqueue([new("k")])[0]
    take(queue, "k")
    queue.release([e.id], "w1", error="Throttled: HTTP 429 from POST X: daily limit")
    take(queue, "k")
    queue.release([e.id], "w1")  # a shutdown says nothing new: the last reason stays
    stored = queue.get(e.id)
    assert (stored.attempts, stored.last_error) == (0, "Throttled: HTTP 429 from POST X: daily limit")
    assert [a.error for a in queue.attempts(e.id)] == ["Throttled: HTTP 429 from POST X: daily limit", None]


# -- per-key ordering -------------------------------------------------------------------------

def test_one_lease_per_key_in_enqueue_order(queue):
    queue.enqueue([new("a1"), new("a2"), new("b1", item="SKU-2"), new("a3")])
    assert lease_keys(queue) == ["a1", "b1"]
    assert lease_keys(queue) == []


@pytest.mark.parametrize("finish, next_due", [
    (lambda q, e: q.ack([e.id], "w1"), ["a2"]),
    (lambda q, e: q.fail(e.id, "w1", "HTTP 400", retryable=False), ["a2"]),
    (lambda q, e: q.fail(e.id, "w1", "HTTP 503", retryable=True), []),
    (lambda q, e: q.release([e.id], "w1"), ["a1"]),
], ids=["ack-unblocks-next", "dead-unblocks-next", "backing-off-head-blocks-its-key", "release-keeps-head"])
def test_head_of_key_decides_what_comes_next(queue, finish, next_due):
    queue.enqueue([new("a1"), new("a2"), new("b1", item="SKU-2")])
    finish(queue, take(queue, "a1"))
    assert lease_keys(queue) == sorted(next_due + ["b1"])


def test_backing_off_head_blocks_only_its_key_until_due(queue, clock):
    queue.enqueue([new("a1"), new("a2"), new("b1", item="SKU-2"), new("b2", item="SKU-2")])
    queue.fail(take(queue, "a1").id, "w1", "HTTP 500", retryable=True)
    queue.ack([take(queue, "b1").id], "w1")
    assert lease_keys(queue) == ["b2"]
    clock.advance(1)
    assert lease_keys(queue) == ["a1"]


def test_replayed_entry_waits_behind_the_leased_head(queue):
    first, second = queue.enqueue([new("a1"), new("a2")])
    queue.fail(take(queue, "a1").id, "w1", "HTTP 400", retryable=False)
    take(queue, "a2")
    queue.replay(first.id)
    assert lease_keys(queue, worker="w2") == []
    queue.ack([second.id], "w1")
    assert lease_keys(queue, worker="w2") == ["a1"]


# -- coalescing -------------------------------------------------------------------------------

def test_newer_marker_replaces_pending_one(queue):
    old = queue.enqueue([marker("m1")])[0]
    newer = queue.enqueue([marker("m2")])[0]
    replaced = queue.get(old.id)
    assert (replaced.state, replaced.superseded_by) == (State.DONE, newer.id)
    assert lease_keys(queue) == ["m2"]


@pytest.mark.parametrize("first, second, expected", [
    (marker("m1"), marker("m2", item="SKU-2"), ["m1", "m2"]),
    (marker("m1"), marker("m2", target="pos"), ["m1", "m2"]),
    (new("d1"), marker("m2"), ["d1"]),
    (marker("m1"), new("d2"), ["m1"]),
], ids=["other-item", "other-target", "not-over-a-decrement", "plain-entry-never-replaces"])
def test_coalescing_only_replaces_same_key_and_kind(queue, first, second, expected):
    queue.enqueue([first])
    queue.enqueue([second])
    assert sorted(lease_keys(queue)) == expected
    assert sum(s.depth[State.DONE] for s in queue.stats()) == 0


def test_leased_marker_is_not_replaced(queue):
    leased = queue.enqueue([marker("m1")])[0]
    take(queue, "m1")
    queue.enqueue([marker("m2")])
    assert queue.get(leased.id).state is State.LEASED
    queue.ack([leased.id], "w1")
    assert lease_keys(queue) == ["m2"]


def test_replacing_marker_keeps_the_backoff_of_the_one_it_replaces(queue, clock):
    old = queue.enqueue([marker("m1")])[0]
    queue.fail(take(queue, "m1").id, "w1", "HTTP 429", retryable=True, retry_after=20)
    queue.enqueue([marker("m2")])
    assert queue.get(old.id).state is State.DONE
    clock.advance(19)
    assert lease_keys(queue) == []
    clock.advance(1)
    assert lease_keys(queue) == ["m2"]


# -- retries, backoff, dead letters -----------------------------------------------------------

@pytest.mark.parametrize("failures, retry_after, expected_delay", [
    (1, None, 1.0), (2, None, 2.0), (1, 30.0, 30.0), (2, 0.5, 2.0),
], ids=["first-retry-1s", "second-retry-doubles", "retry-after-longer-wins", "backoff-longer-wins"])
def test_retry_waits_for_backoff_or_retry_after(queue, clock, failures, retry_after, expected_delay):
    queue.enqueue([new("k")])
    for n in range(failures):
        clock.advance(60)
        failed = queue.fail(take(queue, "k").id, "w1", "HTTP 503", retryable=True,
                            retry_after=retry_after if n == failures - 1 else None)
    assert failed.state is State.PENDING
    assert failed.available_at.timestamp() == pytest.approx(clock() + expected_delay)
    clock.advance(expected_delay - 0.01)
    assert lease_keys(queue) == []
    clock.advance(0.01)
    assert lease_keys(queue) == ["k"]


@pytest.mark.parametrize("attempts, base, cap, rng, low, high", [
    (1, 1.0, 600, 0.0, 1.0, 1.0), (1, 1.0, 600, 1.0, 0.5, 0.5), (4, 1.0, 600, 0.0, 8.0, 8.0),
    (30, 1.0, 600, 0.0, 600.0, 600.0), (3, 2.0, 600, 0.5, 6.0, 6.0),
], ids=["first", "full-jitter-halves", "fourth-doubles", "capped", "half-jitter"])
def test_retry_policy_delay(attempts, base, cap, rng, low, high):
    policy = RetryPolicy(base_s=base, cap_s=cap, jitter=0.5, rng=lambda: rng)
    assert low <= policy.delay(attempts) <= high


@pytest.mark.parametrize("retryable, failures, state", [
    (True, 2, State.PENDING), (True, 3, State.DEAD), (False, 1, State.DEAD),
], ids=["retry-below-max", "dead-at-max-attempts", "rejected-dead-at-once"])
def test_dead_letter_keeps_last_error(queue, clock, retryable, failures, state):
    e = queue.enqueue([new("k")])[0]
    for n in range(failures):
        clock.advance(60)
        stored = queue.fail(take(queue, "k").id, "w1", f"error {n + 1}", retryable=retryable)
    assert (stored.state, stored.attempts, stored.last_error) == (state, failures, f"error {failures}")
    assert [d.id for d in queue.dead_letters()] == ([e.id] if state is State.DEAD else [])
    outcomes = [a.outcome for a in queue.attempts(e.id)]
    assert outcomes[-1] is (Outcome.DEAD if state is State.DEAD else Outcome.RETRY)
    assert [a.number for a in queue.attempts(e.id)] == list(range(1, failures + 1))


def test_dead_letters_filter_and_page(queue):
    entries = queue.enqueue([new(f"k{i}", item=f"I{i}", target="shop" if i % 2 else "pos")
                             for i in range(5)])
    for e in queue.lease("w1", 10, LEASE_S):
        queue.fail(e.id, "w1", "HTTP 400", retryable=False)
    assert [d.idempotency_key for d in queue.dead_letters("shop")] == ["k1", "k3"]
    assert [d.idempotency_key for d in queue.dead_letters(limit=2, offset=1)] == ["k1", "k2"]
    assert len(entries) == 5


def test_unfinished_lists_pending_and_leased_entries_of_one_target(queue):
    queue.enqueue([new("a", item="I1"), new("b", item="I2"), new("c", item="I3"), new("d", target="pos")])
    leased = queue.lease("w1", 2, LEASE_S, targets=["shop"])
    queue.ack([leased[0].id], "w1")
    left = queue.unfinished("shop")
    assert [e.idempotency_key for e in left] == ["b", "c"] and {e.state for e in left} == {State.LEASED, State.PENDING}
    assert [e.idempotency_key for e in queue.unfinished("pos")] == ["d"]


def test_replay_redelivers_dead_entry_with_same_key(queue, clock):
    e = queue.enqueue([new("k")])[0]
    queue.fail(take(queue, "k").id, "w1", "HTTP 400: unknown sku", retryable=False)
    replayed = queue.replay(e.id)
    assert (replayed.state, replayed.attempts, replayed.idempotency_key) == (State.PENDING, 0, "k")
    assert take(queue, "k").id == e.id


@pytest.mark.parametrize("settle", [lambda q, e: None, _to_leased, _to_done],
                         ids=["pending", "leased", "done"])
def test_replay_of_anything_but_dead_changes_nothing(queue, settle):
    e = queue.enqueue([new("k")])[0]
    settle(queue, e)
    before = queue.get(e.id)
    with pytest.raises(ValueError):
        queue.replay(e.id)
    assert queue.get(e.id) == before


def test_replay_of_unknown_entry(queue):
    with pytest.raises(KeyError):
        queue.replay(424242)


# -- stats and pending quantity ---------------------------------------------------------------

def test_stats_depth_per_state_and_target_and_oldest_pending_age(queue, clock):
    queue.enqueue([new("a", item="I1"), new("b", item="I2"), new("c", item="I3"), new("p", target="pos")])
    clock.advance(7)
    queue.enqueue([new("d", item="I4")])
    queue.ack([take(queue, "a").id], "w1")
    take(queue, "b")
    queue.fail(take(queue, "c").id, "w1", "HTTP 400", retryable=False)
    queue.release([e.id for e in queue.lease("w1", 10, LEASE_S)], "w1")
    stats = {s.target: s for s in queue.stats()}
    assert stats["shop"].depth == {State.PENDING: 1, State.LEASED: 1, State.DONE: 1, State.DEAD: 1,
                                   State.DISCARDED: 0}
    assert stats["pos"].depth[State.PENDING] == 1
    assert stats["shop"].oldest_pending_age_s == 0.0 and stats["pos"].oldest_pending_age_s == 7.0


def test_stats_of_empty_queue(queue):
    assert queue.stats() == []


def test_pending_quantity_counts_unfinished_entries_only(queue):
    queue.enqueue([new("a", quantity="-2"), new("b", quantity="-3"), new("c", quantity="-5"),
                   new("i", quantity="4", kind="increment"), new("m", kind="availability", quantity=None),
                   new("x", quantity="-100", item="OTHER")])
    queue.ack([take(queue, "a").id], "w1")
    key = ("shop", "SKU-1", "WH")
    assert queue.pending_quantity(*key) == Decimal("-4")
    assert queue.pending_quantity(*key, kinds={"decrement"}) == Decimal("-8")
    take(queue, "b")
    assert queue.pending_quantity(*key, kinds={"decrement"}) == Decimal("-8")
    assert queue.pending_quantity("shop", "NONE", "WH") == Decimal(0)


def test_pending_quantity_since_counts_what_was_delivered_after_a_read(queue, clock):
    """A figure read at ``t`` may not show what was delivered after ``t``, by any process."""
    queue.enqueue([new("early", quantity="-1"), new("late", quantity="-2", item="SKU-2"),
                   new("dead", quantity="-4", item="SKU-3"), new("open", quantity="-8", item="SKU-4")])
    queue.ack([take(queue, "early").id], "w1")
    clock.advance(5)
    read_at = clock()  # an availability read starts here
    clock.advance(1)
    queue.ack([take(queue, "late").id], "w1")
    queue.fail(take(queue, "dead").id, "w1", "HTTP 400", retryable=False)
    since = {item: queue.pending_quantity("shop", item, "WH", done_since=read_at)
             for item in ("SKU-1", "SKU-2", "SKU-3", "SKU-4")}
    # a dead sale is still a sale the SoR has not applied: it counts until replayed or discarded
    assert since == {"SKU-1": Decimal(0), "SKU-2": Decimal("-2"), "SKU-3": Decimal("-4"), "SKU-4": Decimal("-8")}
    assert queue.pending_quantity("shop", "SKU-2", "WH") == Decimal(0)  # without it: unfinished only


def test_a_dead_sale_counts_until_it_is_replayed_and_applied_or_discarded_with_a_reason(queue):
    """Issue 9.1: a sale the SoR has not applied keeps counting against availability."""
    a, b = queue.enqueue([new("a", quantity="-2"), new("b", quantity="-3", item="SKU-2")])
    for e in (a, b):
        queue.fail(take(queue, e.idempotency_key).id, "w1", "HTTP 400: unknown sku", retryable=False)
    assert queue.pending_quantity("shop", "SKU-1", "WH") == Decimal("-2")
    queue.replay(a.id)
    assert queue.pending_quantity("shop", "SKU-1", "WH") == Decimal("-2")
    queue.ack([take(queue, "a").id], "w1")
    assert queue.pending_quantity("shop", "SKU-1", "WH") == Decimal(0)
    with pytest.raises(ValueError):
        queue.discard(b.id, "  ")  # a reason is required
    discarded = queue.discard(b.id, "order cancelled by phone; stock counted", who="alice")
    assert discarded.state is State.DISCARDED and "alice" in discarded.last_error
    assert "order cancelled by phone" in discarded.last_error
    assert queue.attempts(b.id)[-1].outcome is Outcome.DISCARDED
    assert queue.pending_quantity("shop", "SKU-2", "WH") == Decimal(0)
    assert queue.dead_letters() == []
    with pytest.raises(ValueError):
        queue.discard(b.id, "again")  # only dead entries
    with pytest.raises(KeyError):
        queue.discard(424242, "unknown")


@pytest.mark.parametrize("kind, state", [("decrement", State.PENDING), ("increment", State.PENDING),
                                         ("move", State.DEAD)], ids=["sale", "restock", "move"])
def test_retryable_failures_never_dead_letter_a_sale_when_sales_are_unbounded(queue_factory, clock, kind, state):
    queue = queue_factory(RetryPolicy(**{**POLICY, "sale_max_attempts": 0}), clock)
    queue.enqueue([new("k", kind=kind)])
    for n in range(POLICY["max_attempts"] * 3):
        clock.advance(120)
        stored = queue.fail(take(queue, "k").id, "w1", f"HTTP 503 ({n})", retryable=True)
        if stored.state is State.DEAD:
            break
    assert stored.state is state
    queue.close()


def test_purge_removes_only_done_entries_older_than_the_retention(queue, clock):
    queue.enqueue([new("old-done"), new("old-dead", item="SKU-2"), new("open", item="SKU-3")])
    queue.ack([take(queue, "old-done").id], "w1")
    queue.fail(take(queue, "old-dead").id, "w1", "HTTP 400", retryable=False)
    clock.advance(100)
    recent = queue.enqueue([new("new-done", item="SKU-4")])[0]
    queue.ack([take(queue, "new-done").id], "w1")
    clock.advance(10)
    assert queue.purge_done(older_than_s=50) == 1
    keys = {e.idempotency_key for s in (State.PENDING, State.DONE, State.DEAD)
            for e in [queue.get(i) for i in range(1, recent.id + 1)] if e is not None and e.state is s}
    assert keys == {"old-dead", "open", "new-done"}
    assert queue.dead_letters()[0].idempotency_key == "old-dead"
    assert queue.attempts(1) == []  # the purged entry's attempts went with it


def test_ping(queue):
    queue.ping()


# a busy worker's ack and next lease in one call; the running sums behind pending_quantity:
# after every transition, the rows' sum
from tests.unit.queue_contract_ack_lease import *  # noqa: E402,F403
from tests.unit.queue_contract_sums import *  # noqa: E402,F403
