"""The availability rule on the real runtime (DESIGN.md flows 1 and 4), without Odoo: SAP Business
One is the system of record (its Service Layer double), a generic JSON endpoint is a channel that
sells two warehouses as one location (sum), with a safety buffer of 1.

figure = buffer-and-policy(sum over warehouses of (SAP InStock - Committed - pending decrements))
"""
from __future__ import annotations

import re
import time
from decimal import Decimal
from pathlib import Path

import pytest

from erp_bridge.domain import Decrement
from erp_bridge.runtime import build_runtime
from erp_bridge.settings import load_settings
from tests.fakes.http_target import FakeTarget
from tests.fakes.sap_b1 import FakeServiceLayer, Fault

REPO = Path(__file__).resolve().parents[2]
POS = """version: 1
system: pos
connector: http_json
role: channel
connection: {{base_url: "{url}", timeout_s: 3, auth: {{kind: none}}}}
locations:
  aggregation: sum
  map:
    - {{internal: WH/Stock, code: store-1, primary: true}}
    - {{internal: WH2/Stock, code: store-1}}
quantity_policy: {{basis: free, safety_buffer: 1}}
"""


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
            "retry: {base_s: 0.2, cap_s: 0.5, jitter: 0, max_attempts: 50}\n")
        monkeypatch.setenv("ERP_BRIDGE_SECRETS__SAP_B1_USER", sap.credentials[1])
        monkeypatch.setenv("ERP_BRIDGE_SECRETS__SAP_B1_PASSWORD", sap.credentials[2])
        runtime = build_runtime(load_settings(tmp_path / "bridge.yaml"))
        runtime.start()
        try:
            yield runtime, sap, pos
        finally:
            runtime.stop()


def pushed(pos: FakeTarget) -> list[tuple[str, str, Decimal]]:
    return [(r.body["item_code"], r.body["location_code"], Decimal(r.body["quantity"]))
            for r in pos.received if r.path.endswith("availability")]


def wait_for(predicate, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_figure_is_sor_free_minus_pending_summed_with_buffer_and_unchanged_is_not_pushed(world):
    runtime, sap, pos = world
    sap.stock("CHAIR-BLUE", "01", in_stock=10, committed=2)  # free 8
    sap.stock("CHAIR-BLUE", "02", in_stock=5)  # free 5
    runtime.accept(runtime.router.availability("sap_b1", "chair-blue", "WH/Stock", cause="t1"))
    wait_for(lambda: pushed(pos), "the first push")
    assert pushed(pos) == [("chair-blue", "store-1", Decimal(12))]  # 8 + 5 - buffer 1

    # a sale of 3 that SAP cannot take yet (503): the channel must show it at once anyway
    sap.fail_next(*[Fault(503, headers={"Retry-After": "0"}, path="InventoryGenExits")] * 3)
    sale = Decrement(channel="pos", order="A-1", line="1", item="chair-blue", location="store-1", quantity=Decimal(3))
    runtime.accept(runtime.router.channel_change(sale))
    wait_for(lambda: len(pushed(pos)) == 2, "the push after the sale")
    assert pushed(pos)[1] == ("chair-blue", "store-1", Decimal(9))  # (8 - 3) + 5 - 1, before SAP applied it

    # SAP applies it (InStock 10 -> 7): free is 5 + 5 = 10, minus buffer = 9 again: not pushed twice
    wait_for(lambda: sap.items["CHAIR-BLUE"]["01"]["InStock"] == 7, "SAP to apply the sale")
    runtime.accept(runtime.router.availability("sap_b1", "chair-blue", "WH/Stock", cause="t2"))
    wait_for(lambda: runtime.queue.stats() and all(s.depth.get("pending", 0) == s.depth.get("leased", 0) == 0
                                                   for s in runtime.queue.stats()), "the queue to drain")
    assert len(pushed(pos)) == 2
    assert [len(sap.lines("InventoryGenExits"))] == [1]


def test_a_warehouse_where_the_sor_does_not_hold_the_item_counts_as_nothing(world):
    runtime, sap, pos = world
    sap.stock("CHAIR-BLUE", "01", in_stock=4)  # nothing at all for it in warehouse 02
    runtime.accept(runtime.router.availability("sap_b1", "chair-blue", "WH/Stock", cause="t1"))
    wait_for(lambda: pushed(pos), "the push")
    assert pushed(pos) == [("chair-blue", "store-1", Decimal(3))]  # 4 - buffer 1


def test_an_item_the_sor_holds_nowhere_dead_letters_with_the_reason(world):
    runtime, sap, pos = world
    runtime.accept(runtime.router.availability("sap_b1", "ghost-sku", "WH/Stock", cause="t1"))
    wait_for(lambda: runtime.queue.dead_letters(), "a dead letter")
    assert "does not know item 'ghost-sku' at 'WH/Stock'" in runtime.queue.dead_letters()[0].last_error
    assert pushed(pos) == []
