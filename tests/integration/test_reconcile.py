"""Reconciliation against the doubles: SAP Business One is the system of record, Shopify the channel.
Each kind of drift is created, reported with its cause, and (where safe) fixed once through the queue."""
from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from erp_bridge.cli import main
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import Decrement
from erp_bridge.runtime import build_runtime
from erp_bridge.settings import load_settings
from erp_bridge.sync.reconcile import LAST_REPORT, reconcile
from tests.fakes.sap_b1 import FakeServiceLayer
from tests.fakes.shopify import ITEMS, LOCATION, TOKEN, WEBHOOK_SECRET, FakeShopify, example_mapping_set

REPO = Path(__file__).resolve().parents[2]
ADMIN = "admin-token-for-tests"


@pytest.fixture
def world(tmp_path, monkeypatch):
    with FakeServiceLayer() as sap, FakeShopify(TOKEN) as shop:
        maps = tmp_path / "mappings"
        example_mapping_set(maps, shop.url)
        text = (REPO / "mappings" / "sap_b1.yaml").read_text().replace("https://sap.example.com:50000/b1s/v1", sap.url)
        (maps / "sap_b1.yaml").write_text(re.sub(r"^role: mirror$", "role: system_of_record", text, flags=re.M))
        (tmp_path / "bridge.yaml").write_text("data_dir: data\nmappings_dir: mappings\n"
                                              "retry: {base_s: 0.1, cap_s: 0.2, jitter: 0, max_attempts: 3}\n")
        secrets = {"SAP_B1_USER": sap.credentials[1], "SAP_B1_PASSWORD": sap.credentials[2],
                   "SHOPIFY_TOKEN": TOKEN, "SHOPIFY_WEBHOOK_SECRET": WEBHOOK_SECRET}
        for name, value in secrets.items():
            monkeypatch.setenv(f"ERP_BRIDGE_SECRETS__{name}", value)
        monkeypatch.setenv("ERP_BRIDGE_ADMIN_TOKEN", ADMIN)
        sap.stock("CHAIR-BLUE", "01", in_stock=10, committed=2)  # free 8
        sap.stock("CHAIR-RED", "01", in_stock=4)
        shop.stock(ITEMS["chair-blue"], LOCATION, 7)  # the rule: free - safety buffer 1 (mappings/shopify.yaml)
        shop.stock(ITEMS["chair-red"], LOCATION, 3)
        runtime = build_runtime(load_settings(tmp_path / "bridge.yaml"))
        try:
            yield runtime, sap, shop, tmp_path
        finally:
            runtime.close()


def deliver(runtime) -> None:
    for _ in range(10):
        if not runtime.dispatcher.run_once("w"):
            return


def causes(report) -> dict[str, str]:
    return {d.item: d.cause for d in report.differences}


def test_in_sync_reports_nothing_and_keeps_the_report(world):
    runtime, _, _, tmp_path = world
    report = reconcile(runtime)
    # 4 SKUs in the table at one location; no document written in SAP yet
    assert report.differences == [] and report.checked == {"shopify": 4, "sap_b1": 0}
    kept = json.loads((tmp_path / "data" / LAST_REPORT).read_text())
    assert kept["checked"] == {"shopify": 4, "sap_b1": 0} and kept["differences"] == []


def test_an_edit_on_the_platform_is_reported_then_fixed_once(world):
    runtime, _, shop, _ = world
    runtime.figures.put("shopify", "chair-blue", LOCATION, Decimal(7))  # what the bridge pushed
    shop.stock(ITEMS["chair-blue"], LOCATION, 11)  # a merchant typed 11 in Shopify's admin
    report = reconcile(runtime)
    [diff] = report.differences
    assert (diff.item, diff.shows, diff.should) == ("chair-blue", Decimal(11), Decimal(7))
    assert diff.cause == "changed on the platform (the bridge pushed 7; it shows 11)" and not diff.fixed

    fixed = reconcile(runtime, fix=True)
    assert [d.fixed for d in fixed.differences] == [True]
    deliver(runtime)
    assert shop.levels[(ITEMS["chair-blue"], LOCATION)] == 7
    assert len(shop.mutations()) == 1  # one compare-and-set push, 11 -> 7
    assert reconcile(runtime, fix=True).differences == []  # nothing left, nothing pushed again
    deliver(runtime)
    assert len(shop.mutations()) == 1


def test_a_missed_change_in_the_system_of_record(world):
    runtime, sap, _, _ = world
    sap.stock("CHAIR-RED", "01", in_stock=1)  # changed in SAP; no event reached the bridge
    assert causes(reconcile(runtime)) == {"chair-red": "an availability change did not reach the channel "
                                                       "(last pushed nothing)"}


def test_a_sale_not_yet_applied_in_the_system_of_record(world):
    runtime, _, _, _ = world
    sale = Decrement(channel="shopify", order="1001", line="1", item="chair-red", location="WH/Stock",
                     quantity=Decimal(3))
    runtime.queue.enqueue([entry_for("sap_b1", sale)])  # received, SAP has not applied it yet
    report = reconcile(runtime)
    [diff] = report.differences
    assert (diff.shows, diff.should) == (Decimal(3), Decimal(0))
    assert diff.cause == "sales received but not yet applied in the system of record (3 units)"


def test_a_document_deleted_or_doubled_in_sap_is_named_by_its_move(world):
    """Two sales applied in SAP (one goods issue each, keyed in U_BridgeKey); then someone deletes
    one issue and someone copies the other in SAP: each move is reported, missing or doubled."""
    runtime, sap, _, _ = world
    for order in ("2001", "2002"):
        sale = Decrement(channel="shopify", order=order, line="1", item="chair-blue", location=LOCATION,
                         quantity=Decimal(1))
        runtime.accept(runtime.router.channel_change(sale))
    deliver(runtime)
    issues = sap.documents["InventoryGenExits"]
    assert len(issues) == 2, [e.last_error for e in runtime.queue.dead_letters()]
    assert reconcile(runtime, system="sap_b1").differences == []  # each move once: nothing to say
    gone, copied = issues
    issues.remove(gone)
    issues.append({**copied, "DocEntry": 99, "DocNum": 99})
    found = {d.item: d for d in reconcile(runtime, system="sap_b1").differences}
    assert set(found) == {"shopify:2001:1", "shopify:2002:1"}
    missing, doubled = found["shopify:2001:1"], found["shopify:2002:1"]
    assert (missing.shows, missing.should) == (Decimal(0), Decimal(1))
    assert missing.cause.startswith("missing in sap_b1: no InventoryGenExits document carries reference shopify:2001:1")
    assert (doubled.shows, doubled.should) == (Decimal(2), Decimal(1))
    assert doubled.cause.startswith(f"doubled in sap_b1: InventoryGenExits documents {copied['DocEntry']}, 99 all")
    assert not missing.fixed and not doubled.fixed  # documents are people's to correct


def test_a_sale_sap_applied_makes_the_channels_read_again(world):
    """SAP keeps no outbox: once it applied a channel sale, the bridge reads the channels' figures
    again, so a push that raced the apply (and counted the sale twice: low, never high) is set
    right without waiting for the item's next change."""
    runtime, sap, shop, _ = world
    runtime.figures.put("shopify", "chair-red", LOCATION, Decimal(1))  # a racing push left 1 (truth: 2)
    shop.stock(ITEMS["chair-red"], LOCATION, 1)
    sale = Decrement(channel="shopify", order="3001", line="1", item="chair-red", location=LOCATION,
                     quantity=Decimal(1))
    [to_sap, *pushes] = runtime.router.channel_change(sale)
    runtime.accept([to_sap])  # the sale alone: its own push is the racing one above
    deliver(runtime)
    assert sap.items["CHAIR-RED"]["01"]["InStock"] == 3
    keys = [e.idempotency_key for e in runtime.queue.dead_letters()] + [
        e.idempotency_key for e in runtime.queue.unfinished("shopify")]
    assert keys == []
    assert shop.levels[(ITEMS["chair-red"], LOCATION)] == 2  # SAP 3 free, less the buffer of 1


def test_a_key_with_a_delivery_in_flight_is_reported_and_never_corrected(world):
    runtime, _, shop, _ = world
    shop.stock(ITEMS["chair-blue"], LOCATION, 2)
    runtime.accept(runtime.router.availability("sap_b1", "chair-blue", "WH/Stock", cause="t1"))
    report = reconcile(runtime, fix=True)
    [diff] = report.differences
    assert diff.cause.startswith("a delivery is in flight (entry ") and not diff.fixed
    assert len([e for e in runtime.queue.unfinished("shopify")]) == 1  # no second entry was added


def test_a_dead_letter_an_unlisted_item_and_an_unmapped_sku(world):
    runtime, sap, shop, _ = world
    [entry] = runtime.accept(runtime.router.availability("sap_b1", "chair-red", "WH/Stock", cause="t2"))
    leased = runtime.queue.lease("w", 10, 30)
    runtime.queue.fail(leased[0].id, "w", "RejectedError: refused", retryable=False)
    shop.stock(ITEMS["chair-red"], LOCATION, 9)
    sap.stock("TABLE-OAK", "01", in_stock=2)  # SAP has it; Shopify does not stock it at the location
    runtime.figures.put("shopify", "ghost-sku", LOCATION, Decimal(1))  # pushed once, since unmapped
    sap.stock("GHOST-SKU", "01", in_stock=1)
    found = causes(reconcile(runtime))
    assert found["chair-red"] == f"a dead-lettered delivery (entry {entry.id}: erp-bridge dlq show {entry.id})"
    assert found["table-oak"].startswith("the channel does not list the item at this location")
    assert found["ghost-sku"].startswith("unmapped SKU: item 'ghost-sku' has no shopify id")


def test_the_command_prints_a_table_and_exits_1_on_drift(world, capsys):
    runtime, _, shop, tmp_path = world
    shop.stock(ITEMS["chair-blue"], LOCATION, 11)
    code = main(["--config", str(tmp_path / "bridge.yaml"), "reconcile", "--format", "csv"])
    out = capsys.readouterr().out.splitlines()
    assert code == 1 and out[0] == "system,item,location,shows,should,fixed,cause"
    assert out[1].startswith(f"shopify,chair-blue,{LOCATION},11,7,no,")


def test_the_last_report_is_served_by_the_admin_api_and_drift_is_a_gauge(world):
    from fastapi.testclient import TestClient
    from prometheus_client import REGISTRY

    from erp_bridge.http.app import create_app

    runtime, _, shop, _ = world
    client = TestClient(create_app(runtime, manage_lifecycle=False))
    auth = {"Authorization": f"Bearer {ADMIN}"}
    assert client.get("/admin/reconciliation", headers=auth).status_code == 404  # none has run yet
    shop.stock(ITEMS["chair-red"], LOCATION, 5)
    reconcile(runtime)
    answer = client.get("/admin/reconciliation", headers=auth)
    assert answer.status_code == 200 and [d["item"] for d in answer.json()["differences"]] == ["chair-red"]
    assert client.get("/admin/reconciliation").status_code == 401
    assert REGISTRY.get_sample_value("erp_bridge_reconcile_drift_keys", {"system": "shopify"}) == 1


@pytest.fixture
def mirrored(world):
    """A second SAP company as a mirror of the same warehouses (a second Service Layer double)."""
    runtime, sap, shop, tmp_path = world
    with FakeServiceLayer() as mirror_sl:
        text = (REPO / "mappings" / "sap_b1.yaml").read_text().replace("https://sap.example.com:50000/b1s/v1",
                                                                       mirror_sl.url)
        (tmp_path / "mappings" / "sap_mirror.yaml").write_text(text.replace("system: sap_b1", "system: sap_mirror"))
        runtime.close()
        rebuilt = build_runtime(load_settings(tmp_path / "bridge.yaml"))
        try:
            yield rebuilt, sap, mirror_sl
        finally:
            rebuilt.close()


def test_a_mirror_is_compared_with_the_system_of_record_and_never_corrected(mirrored):
    from erp_bridge.domain import StockMove

    runtime, sap, mirror = mirrored
    mirror.stock("CHAIR-BLUE", "01", in_stock=10)  # the same as SAP: in sync
    mirror.stock("CHAIR-RED", "01", in_stock=6)  # SAP holds 4: someone adjusted the mirror
    sap.stock("TABLE-OAK", "01", in_stock=2)  # a move is on its way for the table
    move = StockMove(system="sap_b1", move_id="m1", item="table-oak", quantity=Decimal(2), from_location="Vendors",
                     to_location="WH/Stock", location="WH/Stock", direction="in")
    runtime.queue.enqueue([entry_for("sap_mirror", move)])
    report = reconcile(runtime, system="sap_mirror", fix=True)
    found = {d.item: (d.shows, d.should, d.cause, d.fixed) for d in report.differences}
    assert set(found) == {"chair-red", "table-oak"}
    assert found["chair-red"][:2] == (Decimal(6), Decimal(4)) and found["chair-red"][2].startswith(
        "the stock differs with no move pending")
    assert found["table-oak"][2].startswith("1 move(s) on their way to the mirror")
    assert not any(fixed for *_, fixed in found.values())  # a mirror is reported, never corrected
    assert mirror.posted() == []
