"""BigCommerce and WooCommerce on the whole bridge: the real runtime (queue, dispatcher, router,
inbox poller) and HTTP app, SAP Business One as the system of record (Service Layer fake), both
channels on their fakes. A sale on each channel decrements SAP exactly once through redeliveries
and status callbacks, and the other channel follows; a BigCommerce callback that arrives while
BigCommerce's API is failing is answered 200 at once and resolved later, never lost."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from erp_bridge.connectors.runtime.ledger import prune
from erp_bridge.http.app import create_app
from erp_bridge.queue.base import State
from erp_bridge.runtime import build_runtime
from erp_bridge.settings import Settings
from tests.fakes import bigcommerce as bc
from tests.fakes import woocommerce as woo
from tests.fakes.sap_b1 import FakeServiceLayer
from tests.integration.channels import SAP_SECRETS, SL_USER, eventually, sap_as_system_of_record


@pytest.fixture
def bridge(tmp_path):
    with FakeServiceLayer(*SL_USER) as sl, bc.stocked_store() as store, woo.stocked_shop() as shop:
        sl.stock("CHAIR-BLUE", "01", 10)
        directory = woo.write_mapping(tmp_path / "mappings", shop.url, timeout_s=3)
        bc.write_mapping(directory, store.url, timeout_s=3)
        sap_as_system_of_record(directory, sl.url)
        settings = Settings(data_dir=tmp_path / "var", mappings_dir=directory,
                            workers={"count": 2, "poll_interval_s": 0.02, "outbox_poll_s": 0.2},
                            retry={"base_s": 0.05, "cap_s": 0.2, "jitter": 0},
                            secrets={**SAP_SECRETS, **woo.SECRETS, **bc.SECRETS})
        with TestClient(create_app(build_runtime(settings))) as client:
            yield client, sl, store, shop


def bigcommerce_callback(client, scope: str, order_id: int, msg_id: str | None = None) -> int:
    headers, body = bc.signed_callback(bc.CLIENT_SECRET, scope, order_id, msg_id=msg_id)
    return client.post("/webhooks/bigcommerce", content=body, headers=headers).status_code


def blue(sl) -> int:
    return sl.items["CHAIR-BLUE"]["01"]["InStock"]


def test_a_sale_on_each_channel_counts_once_in_sap_and_the_other_channel_follows(bridge):
    client, sl, store, shop = bridge
    store.add_order(250, 11, (11, "chair-blue", 2))
    assert [bigcommerce_callback(client, "store/order/created", 250, "msg_1"),
            bigcommerce_callback(client, "store/order/created", 250, "msg_1"),  # BigCommerce's retry
            bigcommerce_callback(client, "store/order/statusUpdated", 250)] == [200, 200, 200]
    assert eventually(lambda: blue(sl) == 8)
    assert eventually(lambda: shop.stock("101") == 8 and store.stock[("chair-blue", 1)] == 8)

    headers, body = woo.signed_delivery(woo.WEBHOOK_SECRET, "order.created",
                                        woo.order(7001, "processing", (71, "chair-blue", 3)))
    assert client.post("/webhooks/woocommerce", content=body, headers=headers).status_code == 200
    assert eventually(lambda: blue(sl) == 5)
    assert eventually(lambda: store.stock[("chair-blue", 1)] == 5 and shop.stock("101") == 5)

    store.orders[250]["status_id"] = 5  # cancelled in BigCommerce
    assert bigcommerce_callback(client, "store/order/statusUpdated", 250) == 200
    assert eventually(lambda: blue(sl) == 7 and store.stock[("chair-blue", 1)] == 7 and shop.stock("101") == 7)
    time.sleep(0.5)  # let a duplicate that slipped through reach SAP before counting
    assert blue(sl) == 7 and len(sl.posted("InventoryGenExits")) == 2 and len(sl.posted("InventoryGenEntries")) == 1


PUSH_FAULTS = {
    "quota spent, then 5xx, then a lost answer": [
        bc.Fault(429, {"X-Rate-Limit-Time-Reset-Ms": "300"}, bc.problem(429, "Too many requests"), path="adjustments"),
        bc.Fault(503, body=bc.problem(503, "Service Unavailable"), path="adjustments"),
        bc.Fault(200, hang_s=4.0, applied=True, path="adjustments")],
    "a hang": [bc.Fault(200, hang_s=4.0, path="adjustments")],
}


@pytest.mark.parametrize("faults", PUSH_FAULTS.values(), ids=PUSH_FAULTS.keys())
def test_the_figure_reaches_bigcommerce_through_its_failures(bridge, faults):
    client, sl, store, _shop = bridge
    store.faults += faults
    headers, body = woo.signed_delivery(woo.WEBHOOK_SECRET, "order.created",
                                        woo.order(7002, "processing", (72, "chair-blue", 4)))
    assert client.post("/webhooks/woocommerce", content=body, headers=headers).status_code == 200
    assert eventually(lambda: blue(sl) == 6 and store.stock[("chair-blue", 1)] == 6, timeout_s=30)
    assert store.faults == []


def test_a_callback_during_a_bigcommerce_outage_is_answered_and_resolved_later(bridge):
    client, sl, store, _shop = bridge
    store.add_order(260, 11, (31, "chair-blue", 1))
    store.faults += [bc.Fault(503, body={"status": 503, "title": "Service Unavailable"}, path="/v2/orders/260"),
                     bc.Fault(200, hang_s=4.0, path="/v2/orders/260")]
    started = time.monotonic()
    assert bigcommerce_callback(client, "store/order/created", 260) == 200
    assert time.monotonic() - started < 1.0  # answered without waiting for BigCommerce's API
    assert eventually(lambda: blue(sl) == 9, timeout_s=30)
    assert store.faults == [] and len(sl.posted("InventoryGenExits")) == 1


@pytest.mark.parametrize("headers, body", [
    ({"webhook-id": "msg_x", "webhook-timestamp": "1", "webhook-signature": "v1,bm9wZQ=="}, b'{"id": 1}'),
    ({}, b"{"),
    ({"webhook-id": "msg_x", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,bm9wZQ=="},
     b"\xff\x00"),
], ids=["stale and forged", "unsigned", "forged garbage"])
def test_forged_and_stale_callbacks_get_a_401_and_store_nothing(bridge, headers, body):
    client, sl, store, _shop = bridge
    answer = client.post("/webhooks/bigcommerce", content=body, headers=headers)
    assert answer.status_code == 401 and answer.json()["error"]
    time.sleep(0.3)
    assert store.requests == [] and sl.posted() == []


def test_a_signed_callback_of_another_scope_is_a_400_naming_the_scopes(bridge):
    client, *_ = bridge
    headers, body = bc.signed_callback(bc.CLIENT_SECRET, "store/customer/created", 5)
    answer = client.post("/webhooks/bigcommerce", content=body, headers=headers)
    assert answer.status_code == 400 and "store/order/created" in answer.json()["error"]


def test_a_status_update_weeks_later_counts_nothing_again_after_the_queue_forgot_the_sale(bridge):
    client, sl, store, shop = bridge
    runtime = client.app.state.runtime
    sale = woo.order(7003, "processing", (73, "chair-blue", 1))
    headers, body = woo.signed_delivery(woo.WEBHOOK_SECRET, "order.created", sale)
    assert client.post("/webhooks/woocommerce", content=body, headers=headers).status_code == 200
    store.add_order(270, 11, (41, "chair-blue", 2))
    assert bigcommerce_callback(client, "store/order/created", 270) == 200
    assert eventually(lambda: blue(sl) == 7 and store.stock[("chair-blue", 1)] == 7 and shop.stock("101") == 7)
    assert eventually(lambda: all(t.depth.get(State.PENDING, 0) == 0 and t.depth.get(State.LEASED, 0) == 0
                                  for t in runtime.queue.stats()))
    # queue.retention_days has passed: the keys are gone from the queue and from SAP's document ledger
    assert runtime.queue.purge_done(0) > 0 and prune(runtime.settings.queue_url, 0) > 0

    headers, body = woo.signed_delivery(woo.WEBHOOK_SECRET, "order.updated", {**sale, "status": "completed"})
    assert client.post("/webhooks/woocommerce", content=body, headers=headers).status_code == 200
    store.orders[270]["status_id"] = 2  # shipped
    assert bigcommerce_callback(client, "store/order/statusUpdated", 270) == 200
    assert eventually(lambda: runtime.connectors["woocommerce"].inbox.pending() == []
                      and runtime.connectors["bigcommerce"].inbox.pending() == [])
    time.sleep(0.5)
    assert blue(sl) == 7 and len(sl.posted("InventoryGenExits")) == 2
