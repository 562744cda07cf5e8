"""Issue 9.1: the system of record is down for longer than the whole retry budget, then comes
back. A channel sale that the SoR has not applied is still a sale: the channels never show more
than the true figure, and the SoR takes every sale exactly once.

SAP Business One (its Service Layer double) is the system of record and refuses the sale's goods
issue with 503 far more often than ``retry.max_attempts``; a JSON channel sells two warehouses as
one location with a buffer of 1. Availability is re-pushed throughout the outage.
"""
from __future__ import annotations

import re
import time
from decimal import Decimal
from pathlib import Path

import pytest

from erp_bridge.domain import Decrement
from erp_bridge.queue.base import State
from erp_bridge.runtime import build_runtime
from erp_bridge.settings import load_settings
from tests.fakes.http_target import FakeTarget
from tests.fakes.sap_b1 import FakeServiceLayer, Fault
from tests.integration.test_availability_rule import POS, pushed, wait_for

REPO = Path(__file__).resolve().parents[2]
MAX_ATTEMPTS = 3
OUTAGE_FAULTS = MAX_ATTEMPTS * 4


@pytest.fixture
def world(tmp_path, monkeypatch):
    with FakeServiceLayer() as sap, FakeTarget() as pos:
        maps = tmp_path / "mappings"
        maps.mkdir()
        text = (REPO / "mappings" / "sap_b1.yaml").read_text()
        text = text.replace("https://sap.example.com:50000/b1s/v1", sap.url)
        (maps / "sap_b1.yaml").write_text(re.sub(r"^role: mirror$", "role: system_of_record", text, flags=re.M))
        (maps / "pos.yaml").write_text(POS.format(url=pos.url))
        (tmp_path / "bridge.yaml").write_text(
            "data_dir: data\nmappings_dir: mappings\nworkers: {count: 1, poll_interval_s: 0.02}\n"
            f"retry: {{base_s: 0.05, cap_s: 0.1, jitter: 0, max_attempts: {MAX_ATTEMPTS}}}\n")
        monkeypatch.setenv("ERP_BRIDGE_SECRETS__SAP_B1_USER", sap.credentials[1])
        monkeypatch.setenv("ERP_BRIDGE_SECRETS__SAP_B1_PASSWORD", sap.credentials[2])
        runtime = build_runtime(load_settings(tmp_path / "bridge.yaml"))
        runtime.start()
        try:
            yield runtime, sap, pos
        finally:
            runtime.stop()


def drained(runtime) -> bool:
    return all(s.depth.get(State.PENDING, 0) == s.depth.get(State.LEASED, 0) == 0 for s in runtime.queue.stats())


def test_sor_down_longer_than_the_retry_budget_never_oversells_and_applies_every_sale_once(world):
    runtime, sap, pos = world
    sap.stock("CHAIR-BLUE", "01", in_stock=10, committed=2)  # free 8
    sap.stock("CHAIR-BLUE", "02", in_stock=5)  # free 5: the channel shows 8 + 5 - 1 = 12
    runtime.accept(runtime.router.availability("sap_b1", "chair-blue", "WH/Stock", cause="before"))
    wait_for(lambda: pushed(pos), "the first push")

    sap.fail_next(*[Fault(503, headers={"Retry-After": "0"}, path="InventoryGenExits")] * OUTAGE_FAULTS)
    sale = Decrement(channel="pos", order="A-1", line="1", item="chair-blue", location="store-1", quantity=Decimal(3))
    runtime.accept(runtime.router.channel_change(sale))
    true_figure = Decimal(9)  # (8 - 3) + 5 - 1, whether or not SAP has applied the sale yet

    n = 0
    while sap.faults and n < 200:  # the outage, far past max_attempts: channels keep re-reading
        n += 1
        runtime.accept(runtime.router.availability("sap_b1", "chair-blue", "WH/Stock", cause=f"outage-{n}"))
        time.sleep(0.05)
    with sap.cond:
        sap.faults.clear()  # SAP is back
    for cause in ("after-1", "after-2"):
        runtime.accept(runtime.router.availability("sap_b1", "chair-blue", "WH/Stock", cause=cause))
        wait_for(lambda: drained(runtime), "the queue to drain")

    figures = [q for _, _, q in pushed(pos)]
    assert figures[0] == 12 and max(figures[1:]) <= true_figure, figures
    assert figures[-1] == true_figure
    assert runtime.queue.dead_letters() == []  # a sale never gives up on a retryable failure
    assert len(sap.lines("InventoryGenExits")) == 1  # applied exactly once
