"""POST /webhooks/{system} (issue 15): a connector that verifies without I/O (Shopify) is verified
on the event loop for bodies up to INLINE_VERIFY_BYTES, in a worker thread above that or when the
connector may store the delivery; either way the delivery is stored before the 200, a forged one
gets a 401 and stores nothing, and the commit is shared through the runtime's intake."""
from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from erp_bridge.connectors.base import Capability
from erp_bridge.http import webhooks as route
from erp_bridge.http.app import create_app
from erp_bridge.http.server import SWITCH_INTERVAL_S, share_the_gil
from erp_bridge.runtime import build_runtime
from tests.unit.pull.stack import WEBHOOK_SECRET, closed_port_url, settings_for


@pytest.fixture
def bridge(tmp_path):
    runtime = build_runtime(settings_for(tmp_path, closed_port_url()))
    connector = runtime.connectors["shopify"]
    verify, where = connector.verify_webhook, []

    def recording(headers, body, url):  # on the loop, or in a worker thread (no loop running there)
        try:
            asyncio.get_running_loop()
            where.append("loop")
        except RuntimeError:
            where.append("thread")
        return verify(headers, body, url)

    connector.verify_webhook = recording
    with TestClient(create_app(runtime, manage_lifecycle=False)) as client:
        yield client, runtime, where
    runtime.close()


def order(order_id: int, padding: int = 0, secret: str = WEBHOOK_SECRET) -> tuple[dict, bytes]:
    from tests.fakes.shopify import signed_webhook
    payload = {"id": order_id, "note": "x" * padding,
               "line_items": [{"id": order_id * 10, "sku": "chair-blue", "quantity": 1}]}
    return signed_webhook(secret, "orders/create", payload, webhook_id=f"wh-{order_id}")


def _keys(runtime) -> list[str]:
    """The decrements in the queue file, as stored."""
    db = runtime.queue._db
    return [r[0] for r in db.execute("SELECT idempotency_key FROM entries WHERE kind = 'decrement' ORDER BY id")]


@pytest.mark.parametrize("padding, without_io, runs_on", [
    (0, True, "loop"),
    (route.INLINE_VERIFY_BYTES, True, "thread"),
    (0, False, "thread"),
], ids=["small-body-on-the-loop", "large-body-in-a-thread", "connector-with-io-in-a-thread"])
def test_a_verified_delivery_is_stored_before_the_200_wherever_it_is_verified(bridge, monkeypatch, padding,
                                                                                without_io, runs_on):
    client, runtime, where = bridge
    connector = runtime.connectors["shopify"]
    capabilities = connector.capabilities | {Capability.VERIFIES_WITHOUT_IO}
    monkeypatch.setattr(connector, "capabilities", capabilities if without_io else
                        capabilities - {Capability.VERIFIES_WITHOUT_IO})
    headers, body = order(501, padding)
    answer = client.post("/webhooks/shopify", content=body, headers=headers)
    assert answer.status_code == 200 and answer.json() == {"accepted": 1}
    assert where == [runs_on]
    assert _keys(runtime) == ["shopify:501:5010"]


def test_a_forged_delivery_is_refused_on_the_loop_and_stores_nothing(bridge):
    client, runtime, where = bridge
    headers, body = order(502, secret="not-the-secret")
    answer = client.post("/webhooks/shopify", content=body, headers=headers)
    assert answer.status_code == 401 and "does not match" in answer.json()["error"]
    assert where == ["loop"] and _keys(runtime) == []


def test_a_malformed_delivery_is_a_400_naming_the_field(bridge):
    client, runtime, _ = bridge
    from tests.fakes.shopify import signed_webhook
    headers, body = signed_webhook(WEBHOOK_SECRET, "orders/create", {"id": 503, "line_items": [
        {"id": 1, "sku": "chair-blue", "quantity": 1.5}]})
    answer = client.post("/webhooks/shopify", content=body, headers=headers)
    assert answer.status_code == 400 and "line_items[0].quantity" in json.dumps(answer.json())
    assert _keys(runtime) == []


def test_a_redelivery_is_answered_200_and_stored_once(bridge):
    client, runtime, _ = bridge
    headers, body = order(504)
    assert [client.post("/webhooks/shopify", content=body, headers=headers).status_code for _ in range(3)] == [200] * 3
    assert _keys(runtime) == ["shopify:504:5040"]


def test_a_delivery_that_cannot_be_stored_is_a_503_to_retry_and_not_a_500(bridge):
    """The bridge is shutting down (its intake closed): the platform is told to deliver it again."""
    client, runtime, _ = bridge
    runtime.intake.close()
    headers, body = order(7)
    answer = client.post("/webhooks/shopify", content=body, headers=headers)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert "shutting down" in answer.json()["error"]
    assert _keys(runtime) == []


def test_serve_shortens_the_gil_switch_interval(monkeypatch):
    import sys
    monkeypatch.setattr(sys, "setswitchinterval", lambda s: calls.append(s))
    calls: list[float] = []
    share_the_gil()
    assert calls == [SWITCH_INTERVAL_S] and SWITCH_INTERVAL_S < 0.005  # CPython's default is 5 ms
