"""Lightspeed X-Series and Clover on the whole bridge: the real runtime (queue, dispatcher, router,
inbox poller) and HTTP app, SAP Business One as the system of record (Service Layer fake), both
POS channels on their doubles. A sale on each counts once in SAP through redeliveries and later
updates, a void or refund gives the stock back once, both channels end at SAP's figure, forged
deliveries get a 401 and store nothing, and no delivery gets a 5xx."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from erp_bridge.http.app import create_app
from erp_bridge.runtime import build_runtime
from erp_bridge.settings import Settings
from tests.fakes import clover as cl
from tests.fakes import lightspeed_x as ls
from tests.fakes.sap_b1 import FakeServiceLayer
from tests.integration.channels import SAP_SECRETS, SL_USER, eventually, sap_as_system_of_record


@pytest.fixture
def systems(tmp_path):
    with FakeServiceLayer(*SL_USER) as sl, ls.stocked_store() as store, cl.stocked_merchant() as merchant:
        sl.stock("CHAIR-BLUE", "01", 10)
        directory = ls.write_mapping(tmp_path / "mappings", store.url, timeout_s=3)
        cl.write_mapping(directory, merchant.url, timeout_s=3)
        sap_as_system_of_record(directory, sl.url)
        settings = Settings(data_dir=tmp_path / "var", mappings_dir=directory,
                            workers={"count": 2, "poll_interval_s": 0.02, "outbox_poll_s": 0.2},
                            retry={"base_s": 0.05, "cap_s": 0.2, "jitter": 0},
                            secrets={**SAP_SECRETS, **ls.SECRETS, **cl.SECRETS})
        yield settings, sl, store, merchant


@pytest.fixture
def bridge(systems):
    settings, sl, store, merchant = systems
    with TestClient(create_app(build_runtime(settings))) as client:
        yield client, sl, store, merchant


def blue(sl) -> int:
    return sl.items["CHAIR-BLUE"]["01"]["InStock"]


def shown(store, merchant) -> tuple[int, int]:
    return store.inventory[(ls.BLUE, ls.OUTLET)], merchant.stock[cl.BLUE]


def follow(sl, store, merchant, was: int) -> bool:
    """SAP fell below ``was`` and both channels show SAP's figure. (A push that raced SAP's apply
    counts the sale twice for a moment; once SAP applied it the channels are read again:
    runtime._refresh_after_applied.)"""
    return blue(sl) < was and all(q == blue(sl) for q in shown(store, merchant))


def lightspeed(client, sale: dict) -> int:
    headers, body = ls.signed_delivery(ls.CLIENT_SECRET, sale)
    return client.post("/webhooks/lightspeed_x", content=body, headers=headers).status_code


def clover(client, *events: tuple[str, str, int]) -> int:
    headers, body = cl.notification(cl.AUTH_CODE, *events)
    return client.post("/webhooks/clover", content=body, headers=headers).status_code


def test_a_sale_on_each_pos_counts_once_in_sap_and_both_show_the_figure(bridge):
    client, sl, store, merchant = bridge
    sold = ls.sale("S1", "CLOSED", ("L1", ls.BLUE, 2), version=1)
    assert [lightspeed(client, sold), lightspeed(client, sold),  # Lightspeed's retry
            lightspeed(client, {**sold, "version": 2, "note": "receipt emailed"})] == [200, 200, 200]
    assert eventually(lambda: blue(sl) == 8 and follow(sl, store, merchant, 10), timeout_s=40)

    merchant.add_order("ORD1", "PAID", ("LI1", cl.BLUE, None))
    assert [clover(client, ("O:ORD1", "CREATE", 1)), clover(client, ("O:ORD1", "CREATE", 1)),
            clover(client, ("O:ORD1", "UPDATE", 2))] == [200, 200, 200]
    assert eventually(lambda: blue(sl) == 7 and follow(sl, store, merchant, 8), timeout_s=40)

    assert lightspeed(client, {**sold, "status": "VOIDED", "version": 3}) == 200
    merchant.orders["ORD1"]["paymentState"] = "REFUNDED"
    merchant.orders["ORD1"]["lineItems"][0]["refunded"] = True
    assert clover(client, ("O:ORD1", "UPDATE", 3)) == 200
    assert eventually(lambda: blue(sl) == 10 and all(q == 10 for q in shown(store, merchant)), timeout_s=40), (
        blue(sl), shown(store, merchant))
    assert lightspeed(client, ls.sale("S2", "CLOSED", ("L1", ls.BLUE, 1))) == 200
    assert eventually(lambda: blue(sl) == 9 and follow(sl, store, merchant, 10), timeout_s=40), (
        blue(sl), shown(store, merchant))
    time.sleep(0.5)  # let a duplicate that slipped through reach SAP before counting
    assert blue(sl) == 9 and len(sl.posted("InventoryGenExits")) == 3 and len(sl.posted("InventoryGenEntries")) == 2


def test_a_notification_during_a_clover_outage_is_answered_and_resolved_later(bridge):
    client, sl, _store, merchant = bridge
    merchant.add_order("ORD2", "PAID", ("LI1", cl.BLUE, None))
    merchant.faults.extend([cl.Fault(503, {"Content-Type": "application/json"}, b'{"message": "down"}',
                                     path="/orders/ORD2"),
                            cl.Fault(200, hang_s=4.0, path="/orders/ORD2")])
    started = time.monotonic()
    assert clover(client, ("O:ORD2", "CREATE", 1)) == 200
    assert time.monotonic() - started < 1.0  # answered without waiting for Clover's API
    assert eventually(lambda: blue(sl) == 9, timeout_s=30)
    assert merchant.faults == [] and len(sl.posted("InventoryGenExits")) == 1


def test_forged_and_malformed_deliveries_get_4xx_never_5xx_and_store_nothing(bridge):
    client, sl, store, merchant = bridge
    _, sale_body = ls.signed_delivery(ls.CLIENT_SECRET, ls.sale("S9", "CLOSED", ("L1", ls.BLUE, 1)))
    _, order_body = cl.notification(None, ("O:ORD9", "CREATE", 1))
    answers = [client.post("/webhooks/lightspeed_x", content=sale_body,
                           headers={"X-Signature": "signature=00ff, algorithm=HMAC-SHA256"}),
               client.post("/webhooks/lightspeed_x", content=sale_body, headers={}),
               client.post("/webhooks/lightspeed_x", content=b"\xff\xfe", headers={"X-Signature": "signature=zz"}),
               client.post("/webhooks/clover", content=order_body, headers={"X-Clover-Auth": "guess"}),
               client.post("/webhooks/clover", content=b"{", headers={"X-Clover-Auth": cl.AUTH_CODE})]
    assert [a.status_code for a in answers] == [401, 401, 401, 401, 400]
    assert all(a.json()["error"] and ls.CLIENT_SECRET not in a.text and cl.AUTH_CODE not in a.text for a in answers)
    time.sleep(0.3)
    assert store.requests == [] and merchant.requests == [] and sl.posted() == []


def test_the_clover_verification_post_is_answered_200_and_counts_nothing(bridge):
    client, sl, _store, merchant = bridge
    headers, body = cl.verification()
    assert client.post("/webhooks/clover", content=body, headers=headers).status_code == 200
    time.sleep(0.3)
    assert merchant.requests == [] and sl.posted() == []


def test_a_stored_sale_survives_a_restart_and_nothing_counts_twice_after_it(systems):
    settings, sl, store, merchant = systems
    sold = ls.sale("S5", "CLOSED", ("L1", ls.BLUE, 3))
    merchant.add_order("ORD5", "PAID", ("LI1", cl.BLUE, None))
    store.served.fail_next(*[ls.Fault(503, path="/registers/")] * 50)  # the outlet cannot be read yet
    merchant.served.fail_next(*[cl.Fault(503, path="/orders/ORD5")] * 50)
    with TestClient(create_app(build_runtime(settings))) as client:
        assert lightspeed(client, sold) == 200 and clover(client, ("O:ORD5", "CREATE", 1)) == 200
        time.sleep(0.3)
    assert blue(sl) == 10 and sl.posted() == []  # stopped with both references unresolved
    store.faults.clear()
    merchant.faults.clear()
    with TestClient(create_app(build_runtime(settings))) as client:  # restarted on the same storage
        assert eventually(lambda: blue(sl) == 6, timeout_s=30)
        assert lightspeed(client, sold) == 200 and clover(client, ("O:ORD5", "CREATE", 1)) == 200  # retries
        assert eventually(lambda: follow(sl, store, merchant, 10), timeout_s=40), shown(store, merchant)
    with TestClient(create_app(build_runtime(settings))) as client:
        assert lightspeed(client, {**sold, "version": 9}) == 200 and clover(client, ("O:ORD5", "UPDATE", 2)) == 200
        time.sleep(1.0)
    assert blue(sl) == 6 and len(sl.posted("InventoryGenExits")) == 2
