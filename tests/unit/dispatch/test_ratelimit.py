from __future__ import annotations

import threading
import time

import pytest

from erp_bridge.dispatch.dispatcher import Gate, TargetLimits
from erp_bridge.dispatch.ratelimit import TokenBucket
from tests.fakes.clock import FakeClock
from tests.pg import pg_url  # noqa: F401 - fixture


@pytest.mark.parametrize("rate, burst, takes, expected_waits", [
    (10, 3, [1, 1, 1, 1], [0, 0, 0, 0.1]),
    (10, None, [10, 1], [0, 0.1]),
    (2, 4, [4, 1], [0, 0.5]),
    (10, 2, [5, 1], [0, 0.4]),
], ids=["burst-then-rate", "burst-defaults-to-rate", "slow-rate", "oversized-take-goes-into-debt"])
def test_reserve_waits(rate, burst, takes, expected_waits):
    bucket = TokenBucket(rate, burst, clock=FakeClock())
    assert [pytest.approx(bucket.reserve(n)) for n in takes] == expected_waits


def test_tokens_refill_with_time_up_to_burst():
    clock = FakeClock()
    bucket = TokenBucket(10, 2, clock=clock)
    assert bucket.reserve(2) == 0
    clock.advance(0.15)  # 1.5 tokens (epoch-sized floats: not exactly 0.1 s)
    assert bucket.reserve(1) == 0
    assert bucket.reserve(1) > 0
    clock.advance(60)
    assert [bucket.reserve(1) for _ in range(3)][:2] == [0, 0]


def test_take_gives_up_when_told():
    bucket = TokenBucket(0.001, 1, clock=FakeClock())
    assert bucket.take(1) is True
    give_up = threading.Event()
    give_up.set()
    assert bucket.take(1, give_up) is False


def test_rate_must_be_positive():
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_a_vendor_s_account_lowers_and_resizes_a_bucket_never_raises_it():
    """What a vendor reports (runtime/pacing.SharedLeakyBucket): ``at_most`` only lowers the
    level, ``resize`` takes the stated rate and size and keeps the level within it."""
    clock = FakeClock()
    bucket = TokenBucket(1, 60, clock=clock)
    bucket.at_most(5)
    assert bucket.reserve(5) == 0 and bucket.reserve(1) == pytest.approx(1.0)
    bucket.at_most(50)  # more than it holds: no change
    assert bucket.reserve(1) == pytest.approx(1.0)
    bucket.resize(20, 25)
    clock.advance(10)  # refilled at the new rate, up to the new size
    assert bucket.reserve(25) == 0 and bucket.reserve(1) == pytest.approx(0.05)


def test_gate_admits_no_more_than_its_concurrency():
    gate = Gate(TargetLimits(concurrency=1))
    never, give_up, result = threading.Event(), threading.Event(), []

    def second():
        with gate.enter(1, give_up) as inside:
            result.append(inside)

    with gate.enter(1, never) as first:
        thread = threading.Thread(target=second)
        thread.start()
        give_up.set()
        thread.join(5)
    assert first is True and result == [False]
    with gate.enter(1, never) as again:
        assert again is True


def race(threads: list[threading.Thread], stop: threading.Event, seconds: float = 1.0) -> float:
    """Run ``threads`` for ``seconds``, then set ``stop`` and wait for them; the seconds it took."""
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(5)
    return time.monotonic() - started


# -- one bucket for every process (PostgreSQL) ---------------------------------------------------

@pytest.mark.postgres
def test_two_processes_share_one_bucket_per_target(pg_url):  # noqa: F811
    """Two processes' buckets for one target (separate pools, as two hosts have) take from one
    row: together they take what one bucket allows, not twice that; another target has its own."""
    from erp_bridge.storage import postgres as pg
    from erp_bridge.storage.limits import SharedTokenBucket

    urls = [pg_url + f"&application_name=host-{n}" for n in "ab"]
    pools = [pg.acquire(url) for url in urls]
    try:
        a, b = (SharedTokenBucket(pool, "shop", 20, 4) for pool in pools)
        assert [a.reserve(1) for _ in range(2)] + [b.reserve(1) for _ in range(2)] == [0, 0, 0, 0]  # the burst
        assert a.reserve(1) > 0 and b.reserve(1) > 0  # empty for both
        assert SharedTokenBucket(pools[1], "other", 20, 4).reserve(4) == 0
        taken, stop = [0, 0], threading.Event()

        def take(n: int, bucket: SharedTokenBucket) -> None:
            while bucket.take(1, stop) and not stop.is_set():
                taken[n] += 1

        elapsed = race([threading.Thread(target=take, args=(n, bucket)) for n, bucket in enumerate((a, b))], stop)
        assert sum(taken) <= 20 * elapsed + 2, taken  # one bucket's rate (each alone would allow this much)
        assert sum(taken) >= 20 * 0.5 and min(taken) > 0, taken  # both got some, the rate was not starved
    finally:
        for url in urls:
            pg.release(url)


@pytest.mark.postgres
def test_a_vendor_s_account_lowers_the_bucket_every_process_shares(two_pools):
    from erp_bridge.storage.limits import SharedTokenBucket

    a, b = (SharedTokenBucket(pool, "lightspeed_r:acct", 0.001, 60) for pool in two_pools)
    assert a.reserve(1) == 0  # the row is made full: 59 left
    a.at_most(10)  # an answer to host a: only 10 left at the vendor
    assert b.reserve(10) == 0 and b.reserve(1) > 0  # host b sees it
    b.at_most(50)  # never raised
    assert a.reserve(1) > 0


@pytest.mark.postgres
def test_a_shared_bucket_whose_database_is_gone_stands_in_with_its_own(pg_url, caplog):  # noqa: F811
    from erp_bridge.storage import postgres as pg
    from erp_bridge.storage.limits import SharedTokenBucket

    url = pg_url + "&application_name=closing"
    bucket = SharedTokenBucket(pg.acquire(url), "shop", 10, 2)
    assert bucket.reserve(1) == 0
    pg.release(url)  # the pool is closed: every take now fails to reach the database
    assert [bucket.reserve(1) == 0 for _ in range(3)] == [True, True, False]  # this process's own 2
    assert [r.message for r in caplog.records].count(
        next(r.message for r in caplog.records if "cannot be read" in r.message)) == 1  # said once


# -- one set of concurrency slots for every process (PostgreSQL) ----------------------------------

@pytest.fixture
def two_pools(pg_url):  # noqa: F811
    """Two connection pools on one database, as two hosts have."""
    from erp_bridge.storage import postgres as pg

    urls = [pg_url + f"&application_name=host-{n}" for n in "ab"]
    yield [pg.acquire(url) for url in urls]
    for url in urls:
        pg.release(url)


def _held(slots, give_up: threading.Event | None = None):
    """Enter ``slots`` and stay inside until the returned event is set; returns (inside, leave)."""
    entered, leave, inside = threading.Event(), threading.Event(), []

    def run():
        with slots.hold(give_up or threading.Event()) as got:
            inside.append(got)
            entered.set()
            leave.wait(10)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    entered.wait(10)
    return inside, leave, thread


@pytest.mark.postgres
def test_two_processes_share_a_targets_concurrency(two_pools):
    """concurrency 2 for two processes: two calls at once in all, not four; a third waits until
    one ends (or gives up when told); another target has its own slots."""
    from erp_bridge.storage.limits import SharedSlots

    a, b = (SharedSlots(pool, "shop", 2, 30) for pool in two_pools)
    (got_a, leave_a, thread_a), (got_b, _, _) = _held(a), _held(b)
    assert got_a == [True] and got_b == [True]
    give_up = threading.Event()
    threading.Timer(0.3, give_up.set).start()
    started = time.monotonic()
    with b.hold(give_up) as third:
        assert third is False and time.monotonic() - started >= 0.25  # waited, then gave up
    got_other, leave_other, _ = _held(SharedSlots(two_pools[0], "other", 1, 30))
    assert got_other == [True]
    entered = threading.Event()

    def fourth():
        with b.hold(threading.Event()) as inside:
            if inside:
                entered.set()
    thread = threading.Thread(target=fourth)
    thread.start()
    assert not entered.wait(0.2)  # still full
    leave_a.set()
    thread_a.join(5)
    assert entered.wait(5)  # a's slot given back: b's waiter gets it
    thread.join(5)
    leave_other.set()


@pytest.mark.postgres
def test_never_more_calls_at_once_than_the_shared_concurrency(two_pools):
    """Two processes with four threads each race for 3 slots for a second: at most 3 inside at
    once, the 3 used, and both processes get in."""
    from erp_bridge.storage.limits import SharedSlots

    slots = [SharedSlots(pool, "shop", 3, 30) for pool in two_pools]
    lock, inside, peak, calls, stop = threading.Lock(), [0], [0], [0, 0], threading.Event()

    def work(n: int) -> None:
        while not stop.is_set():
            with slots[n].hold(stop) as got:
                if not got:
                    return
                with lock:
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                time.sleep(0.01)
                with lock:
                    inside[0] -= 1
                calls[n] += 1

    race([threading.Thread(target=work, args=(n % 2,)) for n in range(8)], stop)
    assert peak[0] == 3, peak
    assert min(calls) > 0, calls


@pytest.mark.postgres
def test_a_vanished_holder_s_slot_is_free_after_hold_s_and_its_late_give_back_frees_nothing(two_pools):
    from erp_bridge.storage.limits import SharedSlots

    crashed, other = SharedSlots(two_pools[0], "shop", 1, 0.3), SharedSlots(two_pools[1], "shop", 1, 30)
    slot = crashed._take(threading.Event())  # taken, never given back: its process was killed
    assert slot is not None and slot[0] == 0
    give_up = threading.Event()
    threading.Timer(0.1, give_up.set).start()
    with other.hold(give_up) as inside:
        assert inside is False  # still held
    started = time.monotonic()
    got, leave, thread = _held(other)
    assert got == [True] and time.monotonic() - started < 2  # free at its until
    crashed._give(*slot)  # the vanished holder's late give-back is not the new holder's
    give_up = threading.Event()
    threading.Timer(0.2, give_up.set).start()
    with SharedSlots(two_pools[0], "shop", 1, 30).hold(give_up) as inside:
        assert inside is False
    leave.set()
    thread.join(5)


@pytest.mark.postgres
def test_a_lowered_concurrency_leaves_the_higher_slots_unused(two_pools):
    from erp_bridge.storage.limits import SharedSlots

    got, leave, thread = _held(SharedSlots(two_pools[0], "shop", 3, 30))  # made slots 0-2, took 0
    lowered = SharedSlots(two_pools[1], "shop", 1, 30)
    give_up = threading.Event()
    threading.Timer(0.2, give_up.set).start()
    with lowered.hold(give_up) as inside:
        assert inside is False  # slot 0 is taken; 1 and 2 are past its concurrency
    leave.set()
    thread.join(5)


@pytest.mark.postgres
def test_shared_slots_whose_database_is_gone_stand_in_with_this_process_s_own(pg_url, caplog):  # noqa: F811
    from erp_bridge.storage import postgres as pg
    from erp_bridge.storage.limits import SharedSlots

    url = pg_url + "&application_name=closing"
    slots = SharedSlots(pg.acquire(url), "shop", 1, 30)
    pg.release(url)  # every take now fails to reach the database
    got, leave, thread = _held(slots)
    assert got == [True]  # this process's own slot
    give_up = threading.Event()
    give_up.set()
    with slots.hold(give_up) as second:
        assert second is False  # its own concurrency (1) still holds
    leave.set()
    thread.join(5)
    with slots.hold(threading.Event()) as again:
        assert again is True
    assert sum("cannot be read" in r.message for r in caplog.records) == 1  # said once


@pytest.mark.postgres
def test_a_restarted_process_gives_back_the_slots_its_crashed_predecessor_held(two_pools, pg_url):  # noqa: F811
    """Its leases come back at start (test_queue_reclaim); the target's shared slots it held must
    too, or the new process waits up to lease_s before it may call that target."""
    import subprocess

    from erp_bridge.dispatch.dispatcher import Dispatcher
    from erp_bridge.queue import open_queue
    from erp_bridge.queue.base import RetryPolicy
    from erp_bridge.storage.limits import SharedLimits, SharedSlots

    predecessor = subprocess.Popen(["true"])
    predecessor.wait()  # reaped: its pid names no process
    crashed, elsewhere = SharedSlots(two_pools[0], "shop", 3, 30), SharedSlots(two_pools[0], "shop", 3, 30)
    crashed._holder, elsewhere._holder = f"host:{predecessor.pid}", "other-host:4242"
    assert None not in (crashed._take(threading.Event()), crashed._take(threading.Event()),
                        elsewhere._take(threading.Event()))
    shared = SharedLimits(two_pools[1])
    assert sorted(shared.held()["shop"]) == ["host:" + str(predecessor.pid)] * 2 + ["other-host:4242"]
    queue = open_queue(pg_url, RetryPolicy())
    dispatcher = Dispatcher(queue, {}, workers=0, name="host:1", shared=shared)
    dispatcher.start()
    assert shared.held() == {"shop": ["other-host:4242"]}  # another host's holder: left to its hold_s
    dispatcher.stop(0)
    queue.close()
