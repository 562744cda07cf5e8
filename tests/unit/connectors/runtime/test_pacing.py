"""runtime/pacing.py: a leaky bucket that never lets a request overflow the vendor's bucket, learns
the size and drip rate from the vendor's headers, and spreads threads that wait together; the
sender calls it around every request, whatever the answer's status."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

import pytest

from erp_bridge.connectors.runtime.pacing import LeakyBucket, fraction
from erp_bridge.connectors.runtime.sender import Sender
from tests.fakes.clock import FakeClock
from tests.fakes.served import Served, send_json


class Sleeper:
    """sleep() that moves a FakeClock: waits are measured, not slept."""

    def __init__(self, clock: FakeClock):
        self.clock, self.slept = clock, []

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)


def bucket(size=10.0, drip=1.0, **options):
    clock = FakeClock(0.0)
    sleep = Sleeper(clock)
    return LeakyBucket(size, drip, lambda m: 1.0 if m == "GET" else 5.0, clock=clock, sleep=sleep, **options), sleep


@pytest.mark.parametrize("text, expected", [
    ("12/60", (12.0, 60.0)), ("0.5/90", (0.5, 90.0)), ("60", None), ("a/b", None), ("3/0", None), (None, None)])
def test_the_level_header_reads_used_over_size(text, expected):
    assert fraction(text) == expected


def test_requests_go_at_once_until_the_bucket_is_full_then_at_the_drip_rate():
    pacer, sleep = bucket(size=10, drip=2)
    for _ in range(10):
        pacer.wait("GET")
    assert sleep.slept == []
    pacer.wait("GET")
    pacer.wait("PUT")  # a write costs 5: it waits for 5 units to drain
    assert sleep.slept == pytest.approx([0.5, 2.5])


def test_the_vendors_headers_set_the_size_drip_and_level():
    pacer, sleep = bucket(size=60, drip=1, level_header="X-LS-API-Bucket-Level", drip_header="X-LS-API-Drip-Rate")
    pacer.observe("GET", {"x-ls-api-bucket-level": "19/20", "X-LS-API-Drip-Rate": "4"})
    assert (pacer.size, pacer.drip) == (20.0, 4.0)
    pacer.wait("PUT")  # 19 + 5 > 20: 4 units must drain at 4 a second
    assert sleep.slept == pytest.approx([1.0])


def test_a_vendor_level_below_ours_keeps_ours():
    pacer, sleep = bucket(size=10, drip=1, level_header="L")
    for _ in range(8):
        pacer.wait("GET")
    pacer.observe("GET", {"L": "1/10"})  # the vendor has not seen the requests still on their way
    assert pacer.level() == pytest.approx(8.0)


def test_threads_waiting_together_are_spread_out():
    clock = FakeClock(0.0)
    waits: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            waits.append(seconds)

    pacer = LeakyBucket(1, 10, clock=clock, sleep=sleep)
    threads = [threading.Thread(target=pacer.wait, args=("GET",)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == pytest.approx([0.1, 0.2, 0.3, 0.4])  # the first goes at once


class Bucketed(Served):
    """Answers 429 with the bucket headers: the pacer learns from error answers too."""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                send_json(self, 429, {"X-LS-API-Bucket-Level": "30/30", "X-LS-API-Drip-Rate": "3"}, {"message": "full"})

            def log_message(self, *args: object) -> None:
                pass
        return Handler


def test_the_sender_paces_every_request_and_lets_the_pacer_see_every_answer():
    pacer, sleep = bucket(size=60, drip=1, level_header="X-LS-API-Bucket-Level", drip_header="X-LS-API-Drip-Rate")
    with Bucketed() as server:
        sender = Sender("ls", timeout_s=2, pacer=pacer)
        first = sender.call("GET", f"http://127.0.0.1:{server.port}/x")
        second = sender.call("GET", f"http://127.0.0.1:{server.port}/x")
        sender.close()
    assert getattr(first, "status", None) == 429 and getattr(second, "status", None) == 429
    assert (pacer.size, pacer.drip) == (30.0, 3.0)
    assert sleep.slept == pytest.approx([1 / 3])  # the second waited for one unit to drain at 3/s


def test_a_bucket_needs_a_size_and_a_drip():
    with pytest.raises(ValueError):
        LeakyBucket(0, 1)


def test_the_cost_the_vendor_states_replaces_the_assumed_one_for_that_method():
    pacer, sleep = bucket(size=10, drip=1, cost_header="X-Cost")
    assert pacer.cost("PUT") == 5.0
    pacer.observe("put", {"X-Cost": "2"})
    assert pacer.cost("PUT") == 2.0 and pacer.cost("GET") == 1.0
    for _ in range(5):
        pacer.wait("PUT")
    assert sleep.slept == []  # 5 x 2 fits the bucket of 10; at the assumed 5 the third would have waited
