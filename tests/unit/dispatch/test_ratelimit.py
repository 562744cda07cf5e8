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


# -- one bucket for every process (PostgreSQL) ---------------------------------------------------

@pytest.mark.postgres
def test_two_processes_share_one_bucket_per_target(pg_url):  # noqa: F811
    """Two processes' buckets for one target (separate pools, as two hosts have) take from one
    row: together they take what one bucket allows, not twice that; another target has its own."""
    from erp_bridge.storage import postgres as pg
    from erp_bridge.storage.rate import SharedTokenBucket

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

        threads = [threading.Thread(target=take, args=(n, bucket)) for n, bucket in enumerate((a, b))]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(5)
        elapsed = time.monotonic() - started
        assert sum(taken) <= 20 * elapsed + 2, taken  # one bucket's rate (each alone would allow this much)
        assert sum(taken) >= 20 * 0.5 and min(taken) > 0, taken  # both got some, the rate was not starved
    finally:
        for url in urls:
            pg.release(url)


@pytest.mark.postgres
def test_a_shared_bucket_whose_database_is_gone_stands_in_with_its_own(pg_url, caplog):  # noqa: F811
    from erp_bridge.storage import postgres as pg
    from erp_bridge.storage.rate import SharedTokenBucket

    url = pg_url + "&application_name=closing"
    bucket = SharedTokenBucket(pg.acquire(url), "shop", 10, 2)
    assert bucket.reserve(1) == 0
    pg.release(url)  # the pool is closed: every take now fails to reach the database
    assert [bucket.reserve(1) == 0 for _ in range(3)] == [True, True, False]  # this process's own 2
    assert [r.message for r in caplog.records].count(
        next(r.message for r in caplog.records if "cannot be read" in r.message)) == 1  # said once
