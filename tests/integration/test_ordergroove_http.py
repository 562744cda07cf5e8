"""Ordergroove on the whole bridge: the real runtime (SQLite queue, dispatcher, router, availability
rule, FigureStore) with SAP Business One as the system of record (its Service Layer double) and
the Ordergroove double as a channel. SAP's stock hovers at the threshold: Ordergroove must get one
``live: false`` and no flapping, then one ``live: true`` at threshold + hysteresis, through 429s,
5xx, lost answers and hangs; a product Ordergroove does not know dead-letters with a reason that
names it and carries no secret.
"""
from __future__ import annotations

import re
from itertools import groupby
from pathlib import Path

import pytest

from erp_bridge.runtime import build_runtime
from erp_bridge.settings import Settings
from tests.fakes.ordergroove import HASH_KEY, PRODUCTS, SECRETS, FakeOrdergroove
from tests.fakes.sap_b1 import FakeServiceLayer
from tests.fakes.served import Fault
from tests.integration.channels import REPO, SAP_SECRETS, SL_USER, eventually, sap_as_system_of_record

BLUE, RED = PRODUCTS["chair-blue"], PRODUCTS["chair-red"]


@pytest.fixture
def world(tmp_path):
    with FakeServiceLayer(*SL_USER) as sl, FakeOrdergroove() as og:
        directory = tmp_path / "mappings"
        directory.mkdir()
        text = (REPO / "mappings" / "ordergroove.yaml").read_text()
        text = re.sub(r"base_url: \S+", f"base_url: {og.url}", text).replace("timeout_s: 10", "timeout_s: 1")
        (directory / "ordergroove.yaml").write_text(text)
        sap_as_system_of_record(directory, sl.url)
        settings = Settings(data_dir=tmp_path / "var", mappings_dir=directory,
                            workers={"count": 2, "poll_interval_s": 0.02},
                            retry={"base_s": 0.05, "cap_s": 0.2, "jitter": 0, "max_attempts": 30},
                            secrets={**SAP_SECRETS, **SECRETS})
        bridge = Bridge(settings)
        try:
            yield bridge, sl, og
        finally:
            bridge.runtime.stop()


class Bridge:
    """The running bridge; ``restart`` stops it and starts a new process on the same storage."""

    def __init__(self, settings: Settings):
        self.runtime = build_runtime(settings)
        self.runtime.start()

    def restart(self) -> None:
        self.runtime.stop()
        self.runtime = build_runtime(self.runtime.settings)
        self.runtime.start()


def drained(runtime) -> bool:
    return all(s.depth.get("pending", 0) == s.depth.get("leased", 0) == 0 for s in runtime.queue.stats())


def sap_shows(runtime, sl, item: str, quantity: int, cause: str) -> None:
    """SAP's stock of ``item`` becomes ``quantity``; the bridge is told and works it off."""
    sl.stock(item.upper(), "01", quantity)
    runtime.accept(runtime.router.availability("sap_b1", item, "WH/Stock", cause=cause))
    assert eventually(lambda: drained(runtime)), "the queue did not drain"


FAULTS = {"healthy": [],
          "429, 5xx, a lost answer, a hang": [
              Fault(429, {"Retry-After": "0.1"}, {"detail": "Request was throttled."}),
              Fault(502, body={"detail": "Bad gateway"}), Fault(200, drop="after_commit"), Fault(200, hang_s=2.0)]}


@pytest.mark.parametrize("faults", FAULTS.values(), ids=FAULTS.keys())
def test_a_figure_hovering_at_the_threshold_sends_one_false_and_no_flapping(world, faults):
    bridge, sl, og = world
    runtime = bridge.runtime
    og.fail_next(*faults)
    for n, quantity in enumerate((2, 3, 2, 3)):  # threshold 2, hysteresis 2 (mappings/ordergroove.yaml)
        sap_shows(runtime, sl, "chair-blue", quantity, f"hover-{n}")
    sap_shows(runtime, sl, "chair-blue", 4, "back")  # threshold + hysteresis: live again
    sap_shows(runtime, sl, "chair-blue", 5, "more")
    sent = og.flags_sent(BLUE)
    assert [flag for flag, _ in groupby(sent)] == [(BLUE, False), (BLUE, True)]
    if not faults:
        assert sent == [(BLUE, False), (BLUE, True)] and len(og.received) == 2
    assert og.faults == [] and runtime.queue.dead_letters() == []  # every planned failure was met
    assert og.live[BLUE] is True


def test_the_flag_survives_a_restart_of_the_bridge(world):
    bridge, sl, og = world
    sap_shows(bridge.runtime, sl, "chair-blue", 1, "low")
    bridge.restart()
    sap_shows(bridge.runtime, sl, "chair-blue", 3, "band")  # a new process: it must know the product is off
    assert og.flags_sent(BLUE) == [(BLUE, False)]
    sap_shows(bridge.runtime, sl, "chair-blue", 4, "back")
    assert og.flags_sent(BLUE) == [(BLUE, False), (BLUE, True)]


def test_a_product_ordergroove_does_not_know_dead_letters_with_the_reason_and_no_secret(world, tmp_path):
    bridge, sl, og = world
    runtime = bridge.runtime
    del og.live[RED]
    sap_shows(runtime, sl, "chair-red", 0, "gone")
    sap_shows(runtime, sl, "chair-blue", 0, "out")
    assert eventually(lambda: len(runtime.queue.dead_letters()) == 1)
    error = runtime.queue.dead_letters()[0].last_error
    assert f"Ordergroove has no product {RED} (SKU chair-red) (404)" in error and "mappings/ordergroove.yaml" in error
    assert og.flags_sent() == [(BLUE, False)]
    stored = b"".join(p.read_bytes() for p in Path(tmp_path / "var").rglob("*") if p.is_file())
    assert HASH_KEY.encode() not in stored
