"""The queue contract, continued: ``Queue.ack_and_lease`` (a busy worker's ack and next lease;
SQLiteQueue does both in one transaction, any other queue gets the two calls). Star-imported by
queue_contract.py, so it runs on every engine.
"""
from __future__ import annotations

from erp_bridge.queue.base import Outcome, State
from tests.unit.queue_contract import LEASE_S, POLICY, new


def test_ack_and_lease_acks_then_leases_what_the_ack_made_due(queue):
    a1, a2, b1, c1 = queue.enqueue([new("a1"), new("a2"), new("b1", item="SKU-2"), new("c1", item="SKU-3")])
    assert {e.id for e in queue.lease("w1", 2, LEASE_S)} == {a1.id, b1.id}
    got = queue.ack_and_lease([a1.id], "w1", 0.25, 10, LEASE_S)
    assert [e.id for e in got] == [a2.id, c1.id]  # a1's successor, and what was due anyway
    assert all(e.state is State.LEASED and e.lease_owner == "w1" for e in got)
    assert queue.get(a1.id).state is State.DONE and queue.get(b1.id).state is State.LEASED
    assert [(a.outcome, a.duration_s) for a in queue.attempts(a1.id)] == [(Outcome.DELIVERED, 0.25)]
    assert queue.pending_quantity("shop", "SKU-1", "WH") == -1  # a2 only


def test_ack_and_lease_ignores_an_ack_of_what_the_worker_does_not_hold(queue):
    a1, b1 = queue.enqueue([new("a1"), new("b1", item="SKU-2")])
    queue.lease("w1", 1, LEASE_S)
    assert [e.id for e in queue.ack_and_lease([a1.id], "w2", 0.0, 10, LEASE_S)] == [b1.id]
    assert queue.get(a1.id).state is State.LEASED and queue.get(a1.id).lease_owner == "w1"


def test_ack_and_lease_without_ids_leases_and_respects_limit_and_targets(queue):
    queue.enqueue([new(f"k{i}", item=f"SKU-{i}") for i in range(3)] + [new("o", target="other")])
    assert len(queue.ack_and_lease([], "w1", 0.0, 2, LEASE_S, targets=["shop"])) == 2
    assert [e.target for e in queue.ack_and_lease([], "w1", 0.0, 10, LEASE_S, targets=["other"])] == ["other"]
    held = queue.lease("w2", 10, LEASE_S)
    assert len(held) == 1  # the third shop entry
    assert queue.ack_and_lease([held[0].id], "w2", 0.0, 10, LEASE_S, targets=[]) == []
    assert queue.get(held[0].id).state is State.DONE  # acked even with nothing to lease


def test_ack_and_lease_dead_letters_an_entry_that_outlived_every_lease_once(queue, clock):
    y = queue.enqueue([new("y", item="SKU-2")])[0]
    assert [e.id for e in queue.lease("w2", 1, LEASE_S * 10)] == [y.id]  # held for long
    x = queue.enqueue([new("x")])[0]
    for _ in range(POLICY["max_attempts"]):
        queue.lease("w1", 1, LEASE_S)  # x, again and again: its worker dies each time
        clock.advance(LEASE_S + 1)
    z = queue.enqueue([new("z", item="SKU-2")])[0]
    got = queue.ack_and_lease([y.id], "w2", 0.0, 10, LEASE_S)  # x's last lease ran out: dead
    assert [e.id for e in got] == [z.id] and queue.get(x.id).state is State.DEAD
    assert [a.outcome for a in queue.attempts(x.id)] == [Outcome.RETRY] * 2 + [Outcome.DEAD]
    assert [a.outcome for a in queue.attempts(y.id)] == [Outcome.DELIVERED]
    assert queue.pending_quantity("shop", "SKU-1", "WH") == -1  # a dead sale still counts
