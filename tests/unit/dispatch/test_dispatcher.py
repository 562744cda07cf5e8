"""Dispatcher on a real SQLite queue with a fake clock; connectors are in-memory systems that
implement the connector protocol (the HTTP path is covered in tests/integration)."""
from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from erp_bridge.connectors.base import Capability
from erp_bridge.dispatch.dispatcher import Dispatcher, TargetLimits
from erp_bridge.dispatch.metrics import DispatchMetrics
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import AvailabilityChanged, Count, Decrement, Delivered, Figure, Increment, StockMove
from erp_bridge.errors import ConfigError, NotAttempted, RejectedError, RetryableError, Throttled
from erp_bridge.queue.base import Outcome, RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from tests.fakes.clock import FakeClock

ALL = frozenset({Capability.APPLY_STOCK_CHANGES, Capability.POST_MOVES, Capability.PUSH_AVAILABILITY})


class MemorySystem:
    """An in-memory target: records what each capability received, answers ``reply(item)``."""

    def __init__(self, name="shop", capabilities=ALL, reply=lambda item: Delivered(), availability=None):
        self.name, self.capabilities, self.reply = name, capabilities, reply
        self.calls: list[tuple[str, list]] = []
        self.availability = availability or {}

    def _record(self, capability, items):
        self.calls.append((capability, list(items)))
        return [self.reply(i) for i in items]

    def apply_stock_changes(self, changes):
        return self._record("apply_stock_changes", changes)

    def post_moves(self, moves):
        return self._record("post_moves", moves)

    def push_availability(self, figures):
        return self._record("push_availability", figures)

    def read_availability(self, keys):
        if isinstance(self.availability, Exception):
            raise self.availability
        return {k: v for k, v in self.availability.items() if k in keys}

    def close(self):
        pass


def sale(n=1, qty="1", item="SKU-1"):
    return Decrement(channel="shop", order=f"o{n}", line="1", item=item, location="WH", quantity=Decimal(qty))


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def queue(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=3, base_s=1, jitter=0), clock=clock)
    yield q
    q.close()


@pytest.fixture
def metrics():
    return DispatchMetrics(CollectorRegistry())


def dispatcher(queue, metrics, *systems, **kw):
    return Dispatcher(queue, {s.name: s for s in systems}, metrics=metrics, **kw)


def enqueue(queue, target, *events):
    return queue.enqueue([entry_for(target, e) for e in events])


MOVE = StockMove(system="odoo", move_id="m1", item="SKU-1", quantity=Decimal(2), from_location="WH",
                 to_location="Customers", location="WH", direction="out")


@pytest.mark.parametrize("event, capability", [
    (sale(), "apply_stock_changes"),
    (Increment(channel="shop", order="o1", line="1", item="SKU-1", location="WH", quantity=Decimal(1)),
     "apply_stock_changes"),
    (Count(system="pos", item="SKU-1", location="WH", quantity=Decimal(5), reference="c1"), "apply_stock_changes"),
    (MOVE, "post_moves"),
    (AvailabilityChanged(system="odoo", item="SKU-1", location="WH", sequence=1), "push_availability"),
], ids=["decrement", "increment", "count", "move", "availability"])
def test_each_kind_goes_to_its_capability(queue, metrics, event, capability):
    shop = MemorySystem()
    pusher = lambda target, connector, entries: connector.push_availability(
        [Figure(e.item, e.location, Decimal(3), idempotency_key=e.idempotency_key) for e in entries])
    entry = enqueue(queue, "shop", event)[0]
    assert dispatcher(queue, metrics, shop, pusher=pusher).run_once("w") == 1
    assert [c for c, _ in shop.calls] == [capability]
    sent = shop.calls[0][1][0]
    assert sent.idempotency_key == entry.idempotency_key
    assert queue.get(entry.id).state is State.DONE


@pytest.mark.parametrize("reply, state, error", [
    (Delivered("duplicate"), State.DONE, None),
    (RetryableError("HTTP 503", after=30), State.PENDING, "HTTP 503"),
    (RejectedError("HTTP 400: unknown sku"), State.DEAD, "RejectedError: HTTP 400: unknown sku"),
    (ConfigError("bad base_url"), State.DEAD, "ConfigError: bad base_url"),
    (ValueError("boom"), State.PENDING, "ValueError: boom"),
], ids=["delivered", "retryable", "rejected-dead-letters", "config-dead-letters", "unexpected-retries"])
def test_outcomes_are_classified(queue, metrics, clock, reply, state, error):
    entry = enqueue(queue, "shop", sale())[0]
    dispatcher(queue, metrics, MemorySystem(reply=lambda _: reply)).run_once("w")
    stored = queue.get(entry.id)
    assert (stored.state, stored.last_error) == (state, error)
    if isinstance(reply, RetryableError):
        assert stored.available_at.timestamp() == clock() + 30
    assert [a.outcome for a in queue.attempts(entry.id)] == [
        {State.DONE: Outcome.DELIVERED, State.PENDING: Outcome.RETRY, State.DEAD: Outcome.DEAD}[state]]


def raising(exc):
    def call(items):
        raise exc
    return call


@pytest.mark.parametrize("broken, error", [
    (raising(RetryableError("connection refused")), "connection refused"),
    (raising(KeyError("x")), "KeyError: 'x'"),
    (lambda items: [Delivered()], "connector returned 1 outcomes for 2 items"),
], ids=["raise-fails-whole-batch", "unexpected-raise-retries", "wrong-outcome-count-retries"])
def test_a_broken_call_fails_every_entry_retryably(queue, metrics, broken, error):
    shop = MemorySystem()
    shop.apply_stock_changes = broken
    entries = enqueue(queue, "shop", sale(1), sale(2, item="SKU-2"))
    dispatcher(queue, metrics, shop).run_once("w")
    assert [(queue.get(e.id).state, queue.get(e.id).last_error) for e in entries] == [(State.PENDING, error)] * 2


def test_malformed_payload_dead_letters_alone(queue, metrics):
    good = enqueue(queue, "shop", sale(1))[0]
    bad_new = entry_for("shop", sale(2, item="SKU-2"))
    bad = queue.enqueue([type(bad_new)(**{**bad_new.__dict__, "payload": {"kind": "decrement"}})])[0]
    dispatcher(queue, metrics, MemorySystem()).run_once("w")
    assert queue.get(good.id).state is State.DONE
    assert queue.get(bad.id).state is State.DEAD and "malformed decrement payload" in queue.get(bad.id).last_error


def test_target_without_the_capability_dead_letters_with_reason(queue, metrics):
    entry = enqueue(queue, "shop", MOVE)[0]
    dispatcher(queue, metrics, MemorySystem(capabilities=frozenset({Capability.PUSH_AVAILABILITY}))).run_once("w")
    assert queue.get(entry.id).last_error == "ConfigError: connector of shop cannot post_moves"


def test_only_targets_with_a_connector_are_leased(queue, metrics):
    other = enqueue(queue, "elsewhere", sale())[0]
    assert dispatcher(queue, metrics, MemorySystem()).run_once("w") == 0
    assert queue.get(other.id).state is State.PENDING


# -- availability (the rule itself: tests/unit/sync/test_availability_push.py) ---------------

def test_without_an_availability_rule_markers_dead_letter_with_reason(queue, metrics):
    marker = enqueue(queue, "shop", AvailabilityChanged(system="odoo", item="SKU-1", location="WH", sequence=1))[0]
    dispatcher(queue, metrics, MemorySystem()).run_once("w")
    assert queue.get(marker.id).state is State.DEAD
    assert "no availability rule is configured for pushes to shop" in queue.get(marker.id).last_error


# -- observability ----------------------------------------------------------------------------

def test_one_log_line_and_metrics_per_attempt(queue, metrics, caplog):
    replies = {"SKU-1": Delivered(), "SKU-2": RetryableError("HTTP 500"), "SKU-3": RejectedError("HTTP 400")}
    enqueue(queue, "shop", sale(1, item="SKU-1"), sale(2, item="SKU-2"), sale(3, item="SKU-3"))
    with caplog.at_level(logging.INFO, logger="erp_bridge.delivery"):
        dispatcher(queue, metrics, MemorySystem(reply=lambda d: replies[d.item])).run_once("w")
    lines = [(r.event_key, r.target, r.outcome, r.levelname) for r in caplog.records if r.name == "erp_bridge.delivery"]
    assert lines == [("shop:o1:1", "shop", "delivered", "INFO"), ("shop:o2:1", "shop", "retry", "WARNING"),
                     ("shop:o3:1", "shop", "dead", "ERROR")]
    assert all(isinstance(r.duration_ms, float) for r in caplog.records if r.name == "erp_bridge.delivery")
    value = lambda name, **labels: metrics.registry.get_sample_value(name, {"target": "shop", **labels})
    assert [value(n) for n in ("erp_bridge_deliveries_total", "erp_bridge_retries_total",
                               "erp_bridge_dead_letters_total")] == [1, 1, 1]
    assert value("erp_bridge_delivery_duration_seconds_count") == 1  # one call to the target for the batch of 3
    assert value("erp_bridge_delivery_lag_seconds_count") == 1  # one entry delivered
    assert [value("erp_bridge_queue_depth", state=s) for s in ("pending", "done", "dead")] == [1, 1, 1]


# -- threads and graceful stop ----------------------------------------------------------------

def wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.01)


def test_workers_drain_the_queue_and_stop(tmp_path, metrics):
    queue = SQLiteQueue(tmp_path / "q.db")
    entries = enqueue(queue, "shop", *[sale(i, item=f"SKU-{i % 7}") for i in range(200)])
    shop = MemorySystem()
    d = dispatcher(queue, metrics, shop, workers=3, batch_size=8)
    d.start()
    assert d.alive()
    wait_for(lambda: queue.stats()[0].depth[State.DONE] == 200)
    d.stop(5)
    assert not d.alive()
    delivered = [x.idempotency_key for _, items in shop.calls for x in items]
    assert sorted(delivered) == sorted(e.idempotency_key for e in entries)
    for item in {f"SKU-{i}" for i in range(7)}:  # per-key order held across three threads
        keys = [x.idempotency_key for _, items in shop.calls for x in items if x.item == item]
        assert keys == sorted(keys, key=lambda k: int(k.split(":")[1][1:]))
    queue.close()


def test_stop_lets_in_flight_work_finish_and_releases_what_waits(tmp_path, metrics):
    queue = SQLiteQueue(tmp_path / "q.db")
    in_call, go = threading.Event(), threading.Event()
    shop = MemorySystem(reply=lambda d: (in_call.set(), go.wait(10), Delivered())[-1])
    entries = {e.idempotency_key: e for e in enqueue(queue, "shop", sale(1, item="A"), sale(2, item="B"))}
    d = dispatcher(queue, metrics, shop, workers=2, batch_size=1, limits={"shop": TargetLimits(concurrency=1)})
    d.start()
    assert in_call.wait(10)
    in_flight = entries.pop(shop.calls[0][1][0].idempotency_key)
    waiting = entries.popitem()[1]
    wait_for(lambda: queue.get(waiting.id).state is State.LEASED)  # leased, waiting at the gate
    d.stop(0.05)
    go.set()
    wait_for(lambda: queue.get(in_flight.id).state is State.DONE)
    assert queue.get(waiting.id).state is State.PENDING
    assert [a.outcome for a in queue.attempts(waiting.id)] == [Outcome.RELEASED]
    assert [e.id for e in queue.lease("later", 10, 30)] == [waiting.id]  # nothing lost
    queue.close()


def test_an_upstream_error_that_echoes_the_credentials_is_stored_and_served_redacted(queue, metrics, tmp_path,
                                                                                      monkeypatch):
    """Issue 9: Odoo's failed login echoes the request; the raw user and password must not reach
    the attempt rows, the dead letter, or anything that serves them."""
    from types import SimpleNamespace

    from erp_bridge.settings import load_settings

    monkeypatch.setenv("ERP_BRIDGE_SECRETS__ODOO_USER", "bridge")
    monkeypatch.setenv("ERP_BRIDGE_SECRETS__ODOO_PASSWORD", "hunter2-odoo")
    settings = load_settings(None, data_dir=str(tmp_path), queue={"url": f"sqlite:///{tmp_path}/q.db"})
    echo = "Access Denied: {'db': 'prod', 'login': 'bridge', 'password': 'hunter2-odoo'} (erp-bridge client)"
    odoo = MemorySystem("odoo", reply=lambda item: RejectedError(echo))
    d = Dispatcher.from_settings(queue, {"odoo": odoo}, settings, SimpleNamespace(systems={}), metrics=metrics)
    [entry] = enqueue(queue, "odoo", sale())
    d.run_once("w")
    stored = queue.get(entry.id)
    texts = [stored.last_error, *(a.error for a in queue.attempts(entry.id))]
    assert stored.state is State.DEAD and all("hunter2-odoo" not in t and "'bridge'" not in t for t in texts)
    assert "'login': '***', 'password': '***'" in stored.last_error and "(erp-bridge client)" in stored.last_error


def test_a_sale_past_the_retry_budget_keeps_retrying_and_counts_as_overdue(tmp_path, clock, metrics):
    """Issue 9.1: with sales unbounded, the alert replaces the dead letter."""
    q = SQLiteQueue(tmp_path / "sales.db", RetryPolicy(max_attempts=3, base_s=1, jitter=0, sale_max_attempts=0),
                    clock=clock)
    odoo = MemorySystem("odoo", reply=lambda item: RetryableError("Odoo: connection refused"))
    d = dispatcher(q, metrics, odoo)
    [entry] = enqueue(q, "odoo", sale())
    for _ in range(5):
        d.run_once("w")
        clock.advance(3600)
    assert q.get(entry.id).state is State.PENDING and q.get(entry.id).attempts == 5
    assert metrics.registry.get_sample_value("erp_bridge_sale_retries_overdue_total", {"target": "odoo"}) == 3
    q.close()


class CountingQueue:
    """The real queue, counting the leases the workers make."""

    def __init__(self, queue):
        self._queue, self.leases = queue, 0

    def lease(self, *args, **kwargs):
        self.leases += 1
        return self._queue.lease(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._queue, name)


def test_wakeups_while_idle_share_one_lease_per_pause_and_stop_cuts_the_pause(tmp_path, metrics):
    """Issue 15: every webhook wakes the workers; when nothing was due, a lease per wake-up found
    nothing and took the queue from the intake. Wake-ups within ``rewake_s`` of an empty lease
    share the lease after it (work enqueued meanwhile waits for it: test_workers_drain_the_queue_and_stop
    shows it is taken); stop does not wait for the pause."""
    queue = CountingQueue(SQLiteQueue(tmp_path / "q.db"))
    d = dispatcher(queue, metrics, MemorySystem(), workers=1, poll_s=60)
    d.rewake_s = 30
    d.start()
    wait_for(lambda: queue.leases == 1)  # the first lease found nothing: the pause starts
    for _ in range(200):
        d.wake()
    [waiting] = enqueue(queue, "shop", sale(1))
    d.wake()
    time.sleep(0.2)
    assert queue.leases == 1
    started = time.monotonic()
    d.stop(5)
    assert time.monotonic() - started < 10, "stop waited for the 30 s pause"
    assert not d.alive()
    assert queue.get(waiting.id).state is State.PENDING  # still there for the next start
    queue.close()


def test_a_busy_worker_acks_and_leases_its_next_batch_in_one_queue_call(queue, metrics):
    entries = enqueue(queue, "shop", *[sale(i, item=f"SKU-{i % 2}") for i in range(6)])
    shop = MemorySystem()
    d = dispatcher(queue, metrics, shop, batch_size=2)
    leases = []
    lease = queue.lease
    queue.lease = lambda *a, **kw: leases.append(1) or lease(*a, **kw)  # type: ignore[method-assign]
    assert d.run_once("w", chain=True) == 2
    assert [queue.get(e.id).state for e in entries] == [State.DONE] * 2 + [State.LEASED] * 2 + [State.PENDING] * 2
    assert d.run_once("w", chain=True) == 2 and d.run_once("w", chain=True) == 2
    assert len(leases) == 1  # the first batch only: each ack leased the next
    assert d.run_once("w", chain=True) == 0
    delivered = [x.idempotency_key for _, items in shop.calls for x in items]
    assert delivered == [e.idempotency_key for e in entries]  # per key in order, nothing twice
    assert all(queue.get(e.id).state is State.DONE for e in entries)


def test_a_worker_that_stops_gives_back_the_batch_its_last_ack_leased(queue, metrics):
    entries = enqueue(queue, "shop", *[sale(i, item=f"SKU-{i}") for i in range(4)])
    d = dispatcher(queue, metrics, MemorySystem(), batch_size=2)
    d.run_once("w", chain=True)
    d._stopping.set()
    d._work("w")  # the loop ends at once: what it carries goes back untouched
    assert [queue.get(e.id).state for e in entries] == [State.DONE] * 2 + [State.PENDING] * 2
    assert [a.outcome for a in queue.attempts(entries[2].id)] == [Outcome.RELEASED]


def test_an_ack_that_leased_nothing_leaves_the_next_call_to_lease_afresh(queue, metrics):
    enqueue(queue, "shop", sale(1))
    d = dispatcher(queue, metrics, MemorySystem(), batch_size=2)
    assert d.run_once("w", chain=True) == 1  # its ack found nothing due
    enqueue(queue, "shop", sale(2))
    assert d.run_once("w", chain=True) == 1  # leased now, not skipped


def test_on_final_hears_a_calls_ended_entries_at_once_and_a_failure_there_leaves_delivery_alone(queue, metrics):
    """One on_final per call, with each ended entry (done or dead) and its error; an entry still
    retried is not there. A failing on_final is logged: the acks stand."""
    verdicts = {"SKU-1": Delivered(), "SKU-2": RejectedError("HTTP 400: unknown sku"),
                "SKU-3": RetryableError("HTTP 503"), "SKU-4": Delivered()}
    entries = enqueue(queue, "shop", *(sale(n, item=f"SKU-{n}") for n in range(1, 5)))
    heard = []
    shop = MemorySystem(reply=lambda change: verdicts[change.item])
    dispatcher(queue, metrics, shop, on_final=lambda target, finals: heard.append((target, finals))).run_once("w")
    assert len(heard) == 1 and heard[0][0] == "shop"
    assert [(f.entry.id, f.state, f.error) for f in heard[0][1]] == [
        (entries[0].id, State.DONE, None), (entries[1].id, State.DEAD, "RejectedError: HTTP 400: unknown sku"),
        (entries[3].id, State.DONE, None)]
    def failing(target, finals):
        raise RuntimeError("report failed")

    more = enqueue(queue, "shop", sale(5, item="SKU-1"))
    dispatcher(queue, metrics, shop, on_final=failing).run_once("w")
    assert queue.get(more[0].id).state is State.DONE


def test_a_quota_spent_for_the_day_pauses_the_target_and_never_dead_letters(tmp_path, clock, metrics, caplog):
    """Zoho Inventory answers 429 for the rest of the day once the plan's calls are spent: a move
    (not a sale: it could dead-letter) waits through any number of refusals without counting an
    attempt; the pause doubles from the policy's base to its cap and a delivery ends it."""
    q = SQLiteQueue(tmp_path / "quota.db", RetryPolicy(max_attempts=3, base_s=1, cap_s=600, jitter=0), clock=clock)
    refusing = [True]
    zoho = MemorySystem("zoho", reply=lambda item: Throttled("HTTP 429 from POST X: Zoho error 45: daily limit")
                        if refusing[0] else Delivered())
    d = dispatcher(q, metrics, zoho)
    [entry] = enqueue(q, "zoho", MOVE)
    pauses = []
    with caplog.at_level(logging.WARNING, "erp_bridge.delivery"):
        for _ in range(14):
            assert d.run_once("w") == 1
            stored = q.get(entry.id)
            pauses.append(stored.available_at.timestamp() - clock())
            clock.advance(pauses[-1])
    assert pauses == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600, 600]
    assert (stored.state, stored.attempts) == (State.PENDING, 0)  # 14 refusals, max_attempts 3
    assert stored.last_error == "HTTP 429 from POST X: Zoho error 45: daily limit"
    assert {a.outcome for a in q.attempts(entry.id)} == {Outcome.RELEASED}
    assert metrics.registry.get_sample_value("erp_bridge_throttled_total", {"target": "zoho"}) == 14
    assert metrics.registry.get_sample_value("erp_bridge_retries_total", {"target": "zoho"}) is None
    assert "delivery zoho: throttled, 1 entries wait 600 s without counting an attempt (refusal 14 in a row)" \
        in caplog.text
    refusing[0] = False  # the quota is back the next day
    d.run_once("w")
    assert q.get(entry.id).state is State.DONE
    [second] = enqueue(q, "zoho", MOVE.model_copy(update={"move_id": "m2"}))
    refusing[0] = True
    d.run_once("w")
    assert q.get(second.id).available_at.timestamp() - clock() == 1  # the delivery ended the run
    q.close()


def test_while_a_target_pauses_nothing_more_is_sent_or_leased_for_it(queue, metrics, clock):
    calls, refusing = [], [True]

    def reply(item):
        calls.append(getattr(item, "order", None) or item.move_id)
        return Throttled("HTTP 429 from POST X: too many", after=30) if refusing[0] else Delivered()
    d = dispatcher(queue, metrics, MemorySystem(reply=reply))
    other = MOVE.model_copy(update={"item": "SKU-9"})  # another key: one lease, two calls (sale, then move)
    sold, moved = enqueue(queue, "shop", sale(1), other)
    assert d.run_once("w") == 2 and calls == ["o1"]  # the move's call was held back
    held = queue.get(moved.id)
    assert (held.state, held.attempts, held.available_at.timestamp() - clock()) == (State.PENDING, 0, 30)
    assert held.last_error == "held back: shop refused calls for its rate limit or quota; calls resume in 30 s"
    [later] = enqueue(queue, "shop", sale(2, item="SKU-2"))  # due at once, but its target pauses
    clock.advance(10)
    assert d.run_once("w") == 0 and queue.get(later.id).state is State.PENDING  # not even leased
    clock.advance(20)
    refusing[0] = False
    assert d.run_once("w") == 3 and calls == ["o1", "o2", "o1", "m1"]  # by due time
    assert {queue.get(e.id).state for e in (sold, moved, later)} == {State.DONE}


def test_the_rest_of_a_refused_batch_waits_out_the_whole_pause(queue, metrics, clock):
    refusal = Throttled("HTTP 429 from POST X: too many")  # no Retry-After: the policy's backoff
    shop = MemorySystem(reply=lambda item: Delivered())
    shop.apply_stock_changes = lambda changes: [refusal] + [NotAttempted(refusal, after=1.0)] * (len(changes) - 1)
    d = dispatcher(queue, metrics, shop)
    entries = enqueue(queue, "shop", sale(1), sale(2, item="SKU-2"), sale(3, item="SKU-3"))
    for _ in range(3):  # refusals 1, 2, 3 in a row: pauses 1, 2, 4 s (base 1, no jitter)
        d.run_once("w")
        waits = {queue.get(e.id).available_at.timestamp() - clock() for e in entries}
        clock.advance(max(waits))
    assert waits == {4} and {queue.get(e.id).attempts for e in entries} == {0}
    assert queue.get(entries[1].id).last_error == "not sent: HTTP 429 from POST X: too many"
    assert metrics.registry.get_sample_value("erp_bridge_throttled_total", {"target": "shop"}) == 9


def test_a_system_of_records_refusal_pauses_it_not_the_channel_that_read_it(queue, metrics, clock, caplog):
    """A channel's availability push reads the system of record first; when that read is refused
    for the SoR's quota, the push waits uncounted for the SoR's pause (it would only be refused
    again), the SoR's own deliveries pause, and the channel's other work goes on."""
    refusing = [True]

    def pusher(target, connector, entries):
        if refusing[0]:
            return [Throttled("reading zoho: HTTP 429 from GET X: Zoho error 45", system="zoho")] * len(entries)
        return connector.push_availability([Figure(e.item, e.location, Decimal(3)) for e in entries])
    shop, zoho = MemorySystem("shop"), MemorySystem("zoho")
    d = dispatcher(queue, metrics, shop, zoho, pusher=pusher)
    [push] = enqueue(queue, "shop", AvailabilityChanged(system="zoho", item="SKU-1", location="WH", sequence=1))
    with caplog.at_level(logging.WARNING, "erp_bridge.delivery"):
        for expected in (1, 2):  # refusals 1 and 2 in a row: the SoR pauses 1 s, then 2 s
            assert d.run_once("w") == 1
            stored = queue.get(push.id)
            assert (stored.state, stored.attempts) == (State.PENDING, 0)
            assert stored.available_at.timestamp() - clock() == expected
            if expected == 1:
                clock.advance(1)  # the second pause is still on below
    assert stored.last_error == "reading zoho: HTTP 429 from GET X: Zoho error 45"
    assert "delivery shop: throttled (read from zoho, which refused), 1 entries wait 2 s" in caplog.text
    assert metrics.registry.get_sample_value("erp_bridge_throttled_total", {"target": "zoho"}) == 2
    assert metrics.registry.get_sample_value("erp_bridge_throttled_total", {"target": "shop"}) is None
    [sold] = enqueue(queue, "shop", sale(1, item="SKU-2"))  # the channel itself is not paused
    [moved] = enqueue(queue, "zoho", MOVE)  # the SoR is: its quota is spent for writes too
    assert d.run_once("w") == 1 and queue.get(sold.id).state is State.DONE
    assert queue.get(moved.id).state is State.PENDING and zoho.calls == []
    clock.advance(2)
    refusing[0] = False
    assert d.run_once("w") == 2
    assert {queue.get(e.id).state for e in (push, moved)} == {State.DONE}
