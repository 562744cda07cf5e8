"""Square's webhook signature and envelope: the vendor's own test vector, forged, replayed, stale
and malformed deliveries; a verified delivery is stored (deduped by event_id) and nudges the poller."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from erp_bridge.connectors.square import webhooks
from erp_bridge.connectors.square.webhooks import WebhookRejected, signature, verify
from tests.fakes.square import NOTIFICATION_URL, FakeSquare, connector_for

# square/square-python-sdk tests/utilities/test_webhooks_helper.py: Square's published vector
VECTOR_BODY = (b'{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-'
               b'a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368'
               b'e64-01aa-407e-b46e-3231809b1129"}}')
VECTOR_KEY, VECTOR_SIGNATURE = "Ibxx_5AKakO-3qeNVR61Dw", "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4="
VECTOR_URL = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9"
KEY = "sig-key-0123"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def event(kind: str = "inventory.count.updated", created: datetime = NOW, **extra) -> bytes:
    body = {"merchant_id": "M1", "type": kind, "event_id": "evt-1", "created_at": created.isoformat(),
            "data": {"type": "inventory_counts", "id": "x", "object": {"inventory_counts": [
                {"catalog_object_id": "V1", "location_id": "L1", "state": "IN_STOCK", "quantity": "4"},
                {"catalog_object_id": "V1", "location_id": "L1", "state": "SOLD", "quantity": "1"}]}}}
    body.update(extra)
    return json.dumps(body).encode()


def signed(body: bytes, url: str = NOTIFICATION_URL, key: str = KEY) -> dict[str, str]:
    return {"X-Square-HmacSha256-Signature": signature(key, url, body)}


def test_square_published_vector():
    assert signature(VECTOR_KEY, VECTOR_URL, VECTOR_BODY) == VECTOR_SIGNATURE
    assert signature(VECTOR_KEY, VECTOR_URL[:-1], VECTOR_BODY) != VECTOR_SIGNATURE


def test_independent_implementation_agrees():
    body = event()
    independent = base64.b64encode(hmac.new(KEY.encode(), (NOTIFICATION_URL + body.decode()).encode(),
                                            hashlib.sha256).digest()).decode()
    assert signature(KEY, NOTIFICATION_URL, body) == independent


def test_a_signed_state_change_names_its_key_once():
    notice = verify(KEY, NOTIFICATION_URL, signed(event()), event(), NOW)
    assert (notice.event_id, notice.type, notice.counts) == ("evt-1", "inventory.count.updated", (("V1", "L1"),))


@pytest.mark.parametrize("headers, body, why", [
    ({}, event(), "missing x-square-hmacsha256-signature"),
    ({"x-square-hmacsha256-signature": "not base64!"}, event(), "not base64"),
    (signed(event(), key="other-key"), event(), "does not match"),
    (signed(event()), event().replace(b'"4"', b'"40"'), "does not match"),
    (signed(event(), url=NOTIFICATION_URL + "/"), event(), "notification_url differs"),
    (signed(event(), url=NOTIFICATION_URL.replace("https", "http")), event(), "does not match"),
], ids=["missing", "not-base64", "wrong-key", "altered-body", "url-trailing-slash", "url-scheme"])
def test_forged_deliveries_are_401(headers, body, why):
    with pytest.raises(WebhookRejected) as refused:
        verify(KEY, NOTIFICATION_URL, headers, body, NOW)
    assert refused.value.status == 401 and why in str(refused.value) and KEY not in str(refused.value)


@pytest.mark.parametrize("body, why", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (json.dumps({"type": "inventory.count.updated"}).encode(), "no event_id"),
    (event(kind="catalog.version.updated"), "unsupported event type"),
    (event(data={"object": {}}), "without data.object.inventory_counts"),
    (event(data={"object": {"inventory_counts": [{"location_id": "L1"}]}}), "lacks catalog_object_id"),
    (event(data={"object": {"inventory_counts": [{"catalog_object_id": str(n), "location_id": "L"}
                                                 for n in range(101)]}}), "at most 100"),
    (event(created_at="yesterday"), "not an RFC 3339 time"),
    (event(created=NOW - timedelta(hours=26)), "stale notification"),
    (event(created=NOW + timedelta(hours=1)), "dated in the future"),
], ids=["not-json", "not-object", "no-event-id", "other-type", "no-counts", "count-without-id", "101-counts",
        "bad-time", "stale", "future"])
def test_malformed_stale_and_future_deliveries_are_400(body, why):
    with pytest.raises(WebhookRejected) as refused:
        verify(KEY, NOTIFICATION_URL, signed(body), body, NOW)
    assert refused.value.status == 400 and why in str(refused.value)


def test_order_and_payment_events_are_nudges_without_counts():
    body = event(kind="payment.updated", data={"type": "payment", "id": "p1", "object": {"payment": {}}})
    assert verify(KEY, NOTIFICATION_URL, signed(body), body, NOW).counts == ()
    assert set(webhooks.TYPES) >= {"order.updated", "payment.updated", "refund.updated"}


def test_connector_stores_each_event_once_and_wakes_the_poller_once(tmp_path):
    with FakeSquare() as square:
        connector = connector_for(square, tmp_path)
        woken: list[int] = []
        connector.on_notice(lambda: woken.append(1))
        body = square.notification([("V1", "L1")], event_id="evt-42")
        headers = {"x-square-hmacsha256-signature": square.sign(NOTIFICATION_URL, body)}
        assert connector.verify_webhook(headers, body, "http://10.0.0.5:8080/webhooks/square") == []
        assert connector.verify_webhook(headers, body, "http://10.0.0.5:8080/webhooks/square") == []  # redelivered
        assert woken == [1] and connector._inbox.seen("notice", "evt-42")
        connector.close()


def test_a_mapping_with_webhooks_but_no_notification_url_is_refused_at_start(tmp_path):
    from erp_bridge.connectors import registry
    from erp_bridge.errors import ConfigError
    from tests.fakes.square import example_mapping_set
    mappings = example_mapping_set(tmp_path, "http://127.0.0.1:9")
    hooks = mappings.systems["square"].webhooks.model_copy(update={"notification_url": None})
    mapping = mappings.systems["square"].model_copy(update={"webhooks": hooks})
    secrets = {"square_token": "t", "square_webhook_signature_key": "k"}
    with pytest.raises(ConfigError, match="notification_url to the URL exactly as registered"):
        registry.build(mapping, secrets, mappings.lookups, storage_url=f"sqlite:///{tmp_path}/q.sqlite3")
    bare = registry.build(mappings.systems["square"].model_copy(update={"webhooks": None}), {"square_token": "t"},
                          mappings.lookups, storage_url=f"sqlite:///{tmp_path}/q.sqlite3")
    with pytest.raises(WebhookRejected) as refused:
        bare.verify_webhook({}, b"{}", "")
    assert refused.value.status == 404
    bare.close()
