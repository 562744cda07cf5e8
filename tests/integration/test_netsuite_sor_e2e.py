"""NetSuite as the system of record, end to end in one process: the service as ``serve`` builds it
(settings, mappings, registry, router, dispatcher, HTTP app), the SOAP double for NetSuite and the
Shopify double. A signed Shopify order, delivered twice, becomes one inventory adjustment in
NetSuite, and Shopify then shows NetSuite's free quantity (both warehouses, less the buffer)."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from erp_bridge.http.app import create_app
from erp_bridge.queue.base import State
from erp_bridge.runtime import build_runtime
from erp_bridge.settings import load_settings
from tests.fakes.netsuite import SPECS, FakeNetSuite
from tests.fakes.shopify import (
    ITEMS,
    LOCATION,
    TOKEN,
    WEBHOOK_SECRET,
    example_mapping_set,
    signed_webhook,
    stocked_shop,
)

pytestmark = pytest.mark.skipif(not SPECS.exists(), reason="../shared/specs is not present")
REPO = Path(__file__).resolve().parents[2]
ORDER = {"id": 4501, "location_id": None, "line_items": [
    {"id": 9001, "sku": "chair-blue", "variant_id": 1, "quantity": 2, "gift_card": False}]}


def write_mappings(directory: Path, ns: FakeNetSuite, shop_url: str) -> None:
    """The example mappings as shipped, with the doubles' URLs (text edits: the files stay YAML 1.2)."""
    directory.mkdir()
    netsuite = (REPO / "mappings" / "netsuite.yaml").read_text()
    netsuite = re.sub(r"(?m)^role: mirror.*$", "role: system_of_record", netsuite)
    netsuite = re.sub(r"(?m)^  base_url: .*$", f"  base_url: {ns.url}", netsuite)
    netsuite = re.sub(r"(?m)^  wsdl: .*$", f"  wsdl: {(SPECS / 'netsuite.wsdl').resolve()}", netsuite)
    (directory / "netsuite.yaml").write_text(netsuite)
    example_mapping_set(directory, shop_url, timeout_s=5)  # mappings/shopify.yaml on the double


@pytest.fixture
def service(tmp_path, monkeypatch):
    with FakeNetSuite() as ns, stocked_shop(blue=0) as shop:
        ns.put_stock("20", "1", 10, committed=1)
        ns.put_stock("20", "2", 4)
        write_mappings(tmp_path / "mappings", ns, shop.url)
        secrets = dict(zip(("ACCOUNT", "CONSUMER_KEY", "CONSUMER_SECRET", "TOKEN_ID", "TOKEN_SECRET"), ns.creds))
        for name, value in {**{f"NETSUITE_{k}": v for k, v in secrets.items()}, "SHOPIFY_TOKEN": TOKEN,
                            "SHOPIFY_WEBHOOK_SECRET": WEBHOOK_SECRET}.items():
            monkeypatch.setenv(f"ERP_BRIDGE_SECRETS__{name}", value)
        config = tmp_path / "bridge.yaml"
        config.write_text(f"data_dir: {tmp_path}/data\nmappings_dir: {tmp_path}/mappings\n"
                          "workers: {count: 2, poll_interval_s: 0.05}\nretry: {base_s: 0.2}\n")
        with TestClient(create_app(build_runtime(load_settings(config)))) as client:
            yield client, ns, shop


def wait_for(predicate, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_shopify_sale_is_applied_once_in_netsuite_and_shopify_follows(service):
    client, ns, shop = service
    for _ in range(2):  # Shopify redelivers the same webhook
        headers, body = signed_webhook(WEBHOOK_SECRET, "orders/create", ORDER)
        assert client.post("/webhooks/shopify", content=body, headers=headers).status_code == 200
    # NetSuite: 10 - 2 in location 1; free = 8 - 1 committed + 4 in location 2 = 11; Shopify: 11 - buffer 1
    runtime = client.app.state.runtime
    assert wait_for(lambda: shop.levels[(ITEMS["chair-blue"], LOCATION)] == 10), [
        (e.idempotency_key, e.last_error) for e in runtime.queue.dead_letters()]
    assert list(ns.adjustments) == ["shopify-3A4501-3A9001"]
    assert ns.on_hand("20", "1") == 8
    assert wait_for(lambda: all(s.depth[State.PENDING] == s.depth[State.LEASED] == 0 for s in runtime.queue.stats()))
    assert sum(s.depth[State.DEAD] for s in runtime.queue.stats()) == 0
