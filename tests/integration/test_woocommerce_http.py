"""WooCommerce on the whole bridge: the real runtime (SQLite queue, dispatcher, router) and HTTP app,
SAP Business One as the system of record (Service Layer fake), Shopify and WooCommerce as channels
(their fakes). A WooCommerce sale arrives as WooCommerce delivers it; SAP must lose it exactly once
through redeliveries and status updates, both channels must show the new figure, and a cancellation
must give the stock back once. The real-Odoo end to end is tests/integration/odoo/test_end_to_end_channels.py."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from erp_bridge.http.app import create_app
from erp_bridge.runtime import build_runtime
from erp_bridge.settings import Settings
from tests.fakes.sap_b1 import FakeServiceLayer
from tests.fakes.shopify import ITEMS, LOCATION, TOKEN, FakeShopify
from tests.fakes.woocommerce import (
    SECRETS,
    WEBHOOK_SECRET,
    Fault,
    order,
    ping,
    signed_delivery,
    stocked_shop,
    write_mapping,
)
from tests.integration.channels import REPO, SAP_SECRETS, SL_USER, eventually, sap_as_system_of_record


@pytest.fixture
def systems():
    with FakeServiceLayer(*SL_USER) as sl, FakeShopify(TOKEN) as shopify, stocked_shop() as woo:
        sl.stock("CHAIR-BLUE", "01", 10)
        shopify.stock(ITEMS["chair-blue"], LOCATION, 10)
        yield sl, shopify, woo


def settings(tmp_path: Path, sl, shopify, woo) -> Settings:
    directory = write_mapping(tmp_path / "mappings", woo.url, timeout_s=3)
    for name in ("shopify.yaml", "shopify_items.csv"):
        shutil.copy(REPO / "mappings" / name, directory / name)
    shop = (directory / "shopify.yaml").read_text()
    shop = re.sub(r"base_url: \S+", f"base_url: {shopify.url}/admin/api/2026-07", shop)
    (directory / "shopify.yaml").write_text(shop)
    sap_as_system_of_record(directory, sl.url)
    return Settings(data_dir=tmp_path / "var", mappings_dir=directory, workers={"count": 2, "poll_interval_s": 0.02},
                    retry={"base_s": 0.05, "cap_s": 0.2, "jitter": 0},
                    secrets={**SAP_SECRETS, "shopify_token": TOKEN, "shopify_webhook_secret": "unused-here", **SECRETS})


def deliver(client: TestClient, topic: str, payload: dict) -> int:
    headers, body = signed_delivery(WEBHOOK_SECRET, topic, payload)
    return client.post("/webhooks/woocommerce", content=body, headers=headers).status_code


FAULTS = {"healthy": [],
          "429 then 5xx then a lost answer": [Fault(429, {"Retry-After": "0.2"}, {"code": "rate", "message": "slow"}),
                                              Fault(503), Fault(200, hang_s=4.0, applied=True)],
          "a hang": [Fault(200, hang_s=4.0)]}


@pytest.mark.parametrize("faults", FAULTS.values(), ids=FAULTS.keys())
def test_a_woocommerce_sale_decrements_sap_once_and_every_channel_follows(systems, tmp_path, faults):
    sl, shopify, woo = systems
    woo.faults.extend(faults)
    with TestClient(create_app(build_runtime(settings(tmp_path, sl, shopify, woo)))) as client:
        headers, body = ping()
        assert client.post("/webhooks/woocommerce", content=body, headers=headers).status_code == 200
        sale = order(7001, "processing", (71, "chair-blue", 2))
        assert [deliver(client, "order.created", sale), deliver(client, "order.created", sale),
                deliver(client, "order.updated", {**sale, "status": "completed"})] == [200, 200, 200]
        assert eventually(lambda: sl.items["CHAIR-BLUE"]["01"]["InStock"] == 8)
        assert eventually(lambda: woo.stock("101") == 8 and shopify.levels[(ITEMS["chair-blue"], LOCATION)] == 7)
        assert len([line for line in sl.lines("InventoryGenExits") if line["ItemCode"] == "CHAIR-BLUE"]) == 1
        assert woo.faults == []  # every planned failure was met, and the figure still arrived

        assert deliver(client, "order.updated", {**sale, "status": "cancelled"}) == 200
        assert deliver(client, "order.updated", {**sale, "status": "cancelled"}) == 200
        assert eventually(lambda: sl.items["CHAIR-BLUE"]["01"]["InStock"] == 10)
        assert eventually(lambda: woo.stock("101") == 10 and shopify.levels[(ITEMS["chair-blue"], LOCATION)] == 9)
        time.sleep(0.5)  # let any duplicate that slipped through reach SAP before counting
        assert sl.items["CHAIR-BLUE"]["01"]["InStock"] == 10
        assert len(sl.posted("InventoryGenEntries")) == 1 and len(sl.posted("InventoryGenExits")) == 1


@pytest.mark.parametrize("headers, body, status", [
    ({"X-WC-Webhook-Topic": "order.created", "X-WC-Webhook-Signature": "bm9wZQ=="}, b'{"id": 1}', 401),
    ({"X-WC-Webhook-Topic": "order.created"}, b'{"id": 1}', 401),
    ({}, b"\x00\xff garbage", 401),
], ids=["forged", "unsigned", "garbage"])
def test_forged_deliveries_are_refused_and_nothing_is_queued(systems, tmp_path, headers, body, status):
    sl, shopify, woo = systems
    runtime = build_runtime(settings(tmp_path, sl, shopify, woo))
    with TestClient(create_app(runtime)) as client:
        answer = client.post("/webhooks/woocommerce", content=body, headers=headers)
        assert answer.status_code == status and "X-WC-Webhook-Signature" in answer.json()["error"]
    time.sleep(0.2)
    assert sl.posted() == [] and woo.requests == []


@pytest.mark.parametrize("payload", [b"{", b"[]", b'{"id": "x", "status": "processing"}',
                                     b'{"id": 1, "status": "processing", "line_items": [{"id": 1}]}'],
                         ids=["truncated", "array", "bad id", "line without quantity"])
def test_malformed_signed_bodies_get_a_400_never_a_5xx(systems, tmp_path, payload):
    import base64
    import hashlib
    import hmac
    sl, shopify, woo = systems
    sig = base64.b64encode(hmac.new(WEBHOOK_SECRET.encode(), payload, hashlib.sha256).digest()).decode()
    with TestClient(create_app(build_runtime(settings(tmp_path, sl, shopify, woo)))) as client:
        answer = client.post("/webhooks/woocommerce", content=payload,
                             headers={"X-WC-Webhook-Topic": "order.created", "X-WC-Webhook-Signature": sig})
    assert answer.status_code == 400 and answer.json()["error"]
