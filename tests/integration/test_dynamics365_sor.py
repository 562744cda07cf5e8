"""Dynamics 365 as the system of record on the real runtime (DESIGN.md flows 1, 3 and 4), without
Odoo: F&O OData (or Inventory Visibility) behind its doubles; Shopify (the example mapping) and a JSON
endpoint as channels, each selling two warehouses as one location (sum) with a safety buffer of 1. A
Shopify sale that D365 throttles at first shows on both channels at once, is applied to D365 exactly
once, and once applied the channels' figures stay where they were (no double count).
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
from tests.fakes.azure_ad import FakeAzureAd
from tests.fakes.d365_finops import FakeFinOps
from tests.fakes.d365_iv import FakeInventoryVisibility
from tests.fakes.http_server import Fault
from tests.fakes.http_target import FakeTarget
from tests.fakes.shopify import ITEMS, LOCATION, TOKEN, WEBHOOK_SECRET, FakeShopify, example_mapping_set

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


def fo_file(fo: FakeFinOps) -> str:
    text = (REPO / "mappings" / "dynamics365.yaml").read_text()
    text = text.replace("https://contoso-prod.operations.dynamics.com/data", fo.url)
    text = text.replace("https://contoso-prod.operations.dynamics.com/.default", fo.scope)
    return text.replace("https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47", fo.aad.authority)


def iv_file(iv: FakeInventoryVisibility) -> str:
    text = (REPO / "mappings" / "dynamics365_iv.yaml").read_text()
    text = re.sub(r'base_url: "https://inventoryservice[^"]*"', f'base_url: "{iv.api_url}"', text, flags=re.S)
    return text.replace("authority: https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47",
                        f"authority: {iv.aad.authority}\n    token_url: {iv.token_url}")


@pytest.fixture(params=["dynamics365", "dynamics365_iv"])
def world(request, tmp_path, monkeypatch):
    kind = request.param
    with FakeAzureAd(tmp_path) as aad, FakeFinOps(aad) as fo, FakeInventoryVisibility(aad) as iv, FakeTarget() as pos, \
            FakeShopify(TOKEN) as shop:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(aad.ca_file))
        fo.stock("CHAIR-BLUE", "11", 10)
        fo.stock("CHAIR-BLUE", "21", 5)
        iv.physical("CHAIR-BLUE", "1", "11", 10)
        iv.physical("CHAIR-BLUE", "2", "21", 5)
        maps = tmp_path / "mappings"
        maps.mkdir()
        text = fo_file(fo) if kind == "dynamics365" else iv_file(iv)
        (maps / f"{kind}.yaml").write_text(re.sub(r"^role: mirror$", "role: system_of_record", text, flags=re.M))
        (maps / "pos.yaml").write_text(POS.format(url=pos.url))
        example_mapping_set(maps, shop.url, timeout_s=3)
        shop.stock(ITEMS["chair-blue"], LOCATION, 14)
        (tmp_path / "bridge.yaml").write_text(
            "data_dir: data\nmappings_dir: mappings\nworkers: {count: 1, poll_interval_s: 0.02}\n"
            "retry: {base_s: 0.2, cap_s: 0.5, jitter: 0, max_attempts: 50}\n")
        monkeypatch.setenv("ERP_BRIDGE_SECRETS__D365_CLIENT_ID", "bridge-app")
        monkeypatch.setenv("ERP_BRIDGE_SECRETS__D365_CLIENT_SECRET", "app-secret-123")
        monkeypatch.setenv("ERP_BRIDGE_SECRETS__SHOPIFY_TOKEN", TOKEN)
        monkeypatch.setenv("ERP_BRIDGE_SECRETS__SHOPIFY_WEBHOOK_SECRET", WEBHOOK_SECRET)
        runtime = build_runtime(load_settings(tmp_path / "bridge.yaml"))
        runtime.start()
        try:
            yield kind, runtime, (fo if kind == "dynamics365" else iv), pos, shop
        finally:
            runtime.stop()


def pushed(pos: FakeTarget) -> list[tuple[str, str, Decimal]]:
    return [(r.body["item_code"], r.body["location_code"], Decimal(r.body["quantity"]))
            for r in pos.received if r.path.endswith("availability")]


def wait_for(predicate, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def applied(kind: str, target) -> int:
    return len(target.journals()) if kind == "dynamics365" else len(target.counted)


def test_a_throttled_sale_shows_at_once_is_applied_once_and_is_not_counted_twice(world):
    kind, runtime, target, pos, shop = world
    runtime.accept(runtime.router.availability(kind, "chair-blue", "WH/Stock", cause="t1"))
    wait_for(lambda: pushed(pos), "the first push")
    assert pushed(pos) == [("chair-blue", "store-1", Decimal(14))]  # 10 + 5 - buffer 1

    # D365 throttles the sale at first (429): the channel must show it at once anyway
    target.served.fail_next(*[Fault(429, {"Retry-After": "0"}, b"", path="/$batch" if kind == "dynamics365"
                                    else "/onhand")] * 3)
    sale = Decrement(channel="shopify", order="A-1", line="1", item="chair-blue", location=LOCATION,
                     quantity=Decimal(3))
    runtime.accept(runtime.router.channel_change(sale))
    runtime.accept(runtime.router.channel_change(sale))  # Shopify delivered it twice
    wait_for(lambda: len(pushed(pos)) >= 2, "the push after the sale")
    assert pushed(pos)[1] == ("chair-blue", "store-1", Decimal(11))  # (10 - 3) + 5 - 1, before D365 applied it
    wait_for(lambda: shop.levels[(ITEMS["chair-blue"], LOCATION)] == 11, "Shopify to show 11")

    wait_for(lambda: applied(kind, target) == 1, "D365 to apply the sale")
    runtime.accept(runtime.router.availability(kind, "chair-blue", "WH/Stock", cause="t2"))
    wait_for(lambda: runtime.queue.stats() and all(s.depth.get("pending", 0) == s.depth.get("leased", 0) == 0
                                                   for s in runtime.queue.stats()), "the queue to drain")
    assert [p[2] for p in pushed(pos)] == [14, 11]  # D365 free fell by 3 once: nothing new to push
    assert shop.levels[(ITEMS["chair-blue"], LOCATION)] == 11
    assert applied(kind, target) == 1
