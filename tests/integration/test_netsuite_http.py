"""NetSuite over real HTTP: SQLite queue -> Dispatcher -> netsuite connector (SOAP) -> the XSD-
validating double. Each move reaches NetSuite exactly once through a lost answer, a crash between
NetSuite's commit and the queue's ack, and a burst wider than the account's concurrency limit; a
bad item dead-letters with NetSuite's statusDetail. As system of record a channel sale, delivered
twice, is applied once. The queue runs on a fake clock, so backoff is stepped, not slept."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from erp_bridge.dispatch.dispatcher import Dispatcher, TargetLimits
from erp_bridge.dispatch.metrics import DispatchMetrics
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import Decrement
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from tests.fakes.clock import FakeClock
from tests.fakes.netsuite import SPECS, FakeNetSuite, Fault, connector_for, move, netsuite_mapping

pytestmark = pytest.mark.skipif(not SPECS.exists(), reason="../shared/specs is not present")


class Crash(BaseException):
    """The worker process dies after NetSuite committed and before the queue recorded it."""


@pytest.fixture
def ns():
    with FakeNetSuite() as fake:
        for item in ("20", "21"):
            fake.put_stock(item, "1", 1000)
        yield fake
        assert fake.invalid == []


@pytest.fixture
def clock():
    return FakeClock(time.time())


@pytest.fixture
def queue(tmp_path, clock):
    q = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=10, base_s=1, jitter=0), clock=clock)
    yield q
    q.close()


def dispatcher_for(queue, connector, **kw):
    return Dispatcher(queue, {"netsuite": connector}, metrics=DispatchMetrics(CollectorRegistry()),
                      batch_size=8, **kw)


def settle(dispatcher, queue, clock, rounds=60):
    for _ in range(rounds):
        if not dispatcher.run_once("w"):
            if not any(s.depth[State.PENDING] or s.depth[State.LEASED] for s in queue.stats()):
                return
            clock.advance(30)
    raise AssertionError("queue did not settle")


def enqueue(queue, *events):
    return [queue.enqueue([entry_for("netsuite", e)])[0] for e in events]


def test_lost_answer_and_crash_still_give_each_move_once(ns, queue, clock, tmp_path):
    moves = [move(str(n), item=("chair-blue", "chair-red")[n % 2], quantity=n) for n in range(1, 11)]
    entries = enqueue(queue, *moves)
    ns.fail_next(Fault(operation="upsertList", drop="after_commit"))  # the first answer is lost
    first = connector_for(ns, tmp_path)
    dispatcher_for(queue, first).run_once("w")
    assert ns.adjustments and all(queue.get(e.id).state is State.PENDING for e in entries)  # committed, not acked

    def crash(target, delivered):
        raise Crash
    clock.advance(30)
    committed = len(ns.adjustments)
    with pytest.raises(Crash):
        dispatcher_for(queue, first, before_ack=crash).run_once("w")
    assert ns.operations == ["upsertList"] * 2 and len(ns.adjustments) == committed  # the replay updated them
    first.close()
    clock.advance(120)  # the dead worker's lease expires
    second = connector_for(ns, tmp_path)
    settle(dispatcher_for(queue, second), queue, clock)
    second.close()
    assert {queue.get(e.id).state for e in entries} == {State.DONE}
    assert sorted(ns.adjustments) == sorted(f"odoo-3Amove-3A{n}" for n in range(1, 11))
    assert ns.on_hand("20", "1") == 1000 - sum(range(2, 11, 2))
    assert ns.on_hand("21", "1") == 1000 - sum(range(1, 11, 2))


def test_a_burst_wider_than_the_concurrency_limit_backs_off_and_lands_once(ns, queue, clock, tmp_path):
    ns.concurrency, ns.latency_s = 2, 0.3
    for n in range(100, 140):
        ns.put_stock(str(n), "1", 50)
    overrides = [{"sku": f"sku-{n}", "code": str(n)} for n in range(100, 140)]
    mapping = netsuite_mapping(ns.url, items={"overrides": overrides, "unlisted": "error"})
    entries = enqueue(queue, *[move(str(n), item=f"sku-{n}", quantity=2) for n in range(100, 140)])
    connectors = [connector_for(ns, tmp_path, mapping=mapping) for _ in range(6)]
    dispatchers = [dispatcher_for(queue, c, limits={"netsuite": TargetLimits(concurrency=6)}) for c in connectors]
    for _ in range(30):
        threads = [threading.Thread(target=d.run_once, args=(f"w{i}",)) for i, d in enumerate(dispatchers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if all(queue.get(e.id).state is State.DONE for e in entries):
            break
        clock.advance(30)
    for c in connectors:
        c.close()
    assert {queue.get(e.id).state for e in entries} == {State.DONE}
    assert len(ns.adjustments) == 40 and {ns.on_hand(str(n), "1") for n in range(100, 140)} == {48}
    assert ns.throttled > 0, "the burst never exceeded the limit: the test proves nothing"


def test_a_bad_item_dead_letters_with_netsuites_reason(ns, queue, clock, tmp_path):
    ns.items.discard("21")
    good, bad = enqueue(queue, move("1"), move("2", item="chair-red"))
    conn = connector_for(ns, tmp_path)
    settle(dispatcher_for(queue, conn), queue, clock)
    conn.close()
    assert queue.get(good.id).state is State.DONE
    dead = queue.get(bad.id)
    assert dead.state is State.DEAD
    assert dead.last_error == ("RejectedError: netsuite refused odoo-3Amove-3A2: INVALID_KEY_OR_REF: "
                               "Invalid item reference key 21.")


def test_a_channel_sale_delivered_twice_is_applied_once(ns, queue, clock, tmp_path):
    sale = Decrement(channel="shopify", order="5001", line="1", item="chair-blue", location="WH/Stock",
                     quantity=Decimal(3))
    enqueue(queue, sale)
    conn = connector_for(ns, tmp_path, mapping=netsuite_mapping(ns.url, role="system_of_record"))
    settle(dispatcher_for(queue, conn), queue, clock)
    enqueue(queue, sale)  # the webhook was redelivered after the first was applied
    settle(dispatcher_for(queue, conn), queue, clock)
    assert conn.read_availability([("chair-blue", "WH/Stock")])[("chair-blue", "WH/Stock")].on_hand == 997
    conn.close()
    assert list(ns.adjustments) == ["shopify-3A5001-3A1"]
