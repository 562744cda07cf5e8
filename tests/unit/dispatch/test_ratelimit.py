from __future__ import annotations

import threading

import pytest

from erp_bridge.dispatch.dispatcher import Gate, TargetLimits
from erp_bridge.dispatch.ratelimit import TokenBucket
from tests.fakes.clock import FakeClock


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
