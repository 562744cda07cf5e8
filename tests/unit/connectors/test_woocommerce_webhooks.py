"""WooCommerce webhook verification and normalisation (_webhooks.md; vendor-apis.md §6, §11).

The signature is checked against an independent implementation (the openssl command line), so
the verifier and the test cannot share a mistake."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
from decimal import Decimal

import pytest

from erp_bridge.connectors.runtime.webhooks import WebhookRejected
from erp_bridge.connectors.woocommerce.webhooks import STATUSES, is_ping, normalise, verify
from tests.fakes.woocommerce import WEBHOOK_SECRET, connector_for, order, ping, signed_delivery

LOCATION = "online"


def openssl_signature(secret: str, body: bytes) -> str:
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", secret, "-binary"], input=body,
                            capture_output=True, check=True).stdout
    return base64.b64encode(digest).decode()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command line not installed")
def test_a_delivery_signed_by_an_independent_hmac_verifies():
    body = json.dumps(order(5001, "processing", (11, "chair-blue", 2))).encode()
    headers = {"X-WC-Webhook-Signature": openssl_signature(WEBHOOK_SECRET, body), "X-WC-Webhook-Topic": "order.created"}
    topic, payload = verify(WEBHOOK_SECRET, headers, body)
    assert (topic, payload["id"]) == ("order.created", 5001)


@pytest.mark.parametrize("change, status, reason", [
    ("no signature", 401, "missing X-WC-Webhook-Signature"),
    ("wrong secret", 401, "does not match the body"),
    ("altered body", 401, "does not match the body"),
    ("not base64", 401, "not base64"),
    ("other topic", 400, "unsupported topic 'product.updated'"),
    ("not json", 400, "not valid JSON"),
    ("a list", 400, "must be a JSON object"),
    ("not utf-8", 400, "not UTF-8"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_forged_and_malformed_deliveries_are_refused_with_a_reason(change, status, reason):
    headers, body = signed_delivery(WEBHOOK_SECRET, "order.created", order(5001, "processing", (11, "chair-blue", 1)))
    if change == "no signature":
        del headers["X-WC-Webhook-Signature"]
    elif change == "wrong secret":
        headers = signed_delivery("another-secret", "order.created", json.loads(body))[0]
    elif change == "altered body":
        body = body.replace(b'"quantity":1', b'"quantity":9')
    elif change == "not base64":
        headers["X-WC-Webhook-Signature"] = "%%%"
    elif change == "other topic":
        headers = signed_delivery(WEBHOOK_SECRET, "product.updated", json.loads(body))[0]
    else:
        body = {"not json": b"{oops", "a list": b"[1]", "not utf-8": b"\xff\xfe"}[change]
        headers = {**headers, "X-WC-Webhook-Signature": openssl_signature(WEBHOOK_SECRET, body)}
    with pytest.raises(WebhookRejected) as refused:
        verify(WEBHOOK_SECRET, headers, body)
    assert refused.value.status == status and reason in str(refused.value)
    assert WEBHOOK_SECRET not in str(refused.value)


def test_the_creation_ping_is_recognised_and_nothing_else_is():
    assert is_ping(*ping())
    headers, body = signed_delivery(WEBHOOK_SECRET, "order.created", order(1, "processing"))
    assert not is_ping(headers, body)
    assert not is_ping({}, b"webhook_id=7&sku=x")  # an unsigned body that is more than a ping
    assert not is_ping({"X-WC-Webhook-Topic": "order.created"}, b"webhook_id=7")


STATUS_CASES = [
    ("processing", [("decrement", "woocommerce:5001:11", "chair-blue", Decimal(2)),
                    ("decrement", "woocommerce:5001:12", "mug-s", Decimal(1))]),
    ("on-hold", [("decrement", "woocommerce:5001:11", "chair-blue", Decimal(2)),
                 ("decrement", "woocommerce:5001:12", "mug-s", Decimal(1))]),
    ("pending", []),
    ("failed", []),
    ("cancelled", [("decrement", "woocommerce:5001:11", "chair-blue", Decimal(2)),
                   ("decrement", "woocommerce:5001:12", "mug-s", Decimal(1)),
                   ("increment", "woocommerce:5001:11:cancel", "chair-blue", Decimal(2)),
                   ("increment", "woocommerce:5001:12:cancel", "mug-s", Decimal(1))]),
]


@pytest.mark.parametrize("status, expected", STATUS_CASES, ids=[c[0] for c in STATUS_CASES])
def test_an_orders_status_decides_its_stock_changes_with_the_woocommerce_defaults(status, expected):
    payload = order(5001, status, (11, "chair-blue", 2), (12, "mug-s", 1), (13, "chair-red", 0))
    changes = normalise(payload, "woocommerce", LOCATION, STATUSES)
    assert [(c.kind, c.idempotency_key, c.item, c.quantity) for c in changes] == expected
    assert {c.location for c in changes} <= {LOCATION}


def test_mapped_statuses_replace_the_defaults():
    statuses = STATUSES.of(["completed"], ["cancelled", "refunded"])
    payload = order(5002, "processing", (21, "chair-blue", 1))
    assert normalise(payload, "woocommerce", LOCATION, statuses) == []
    refunded = normalise({**payload, "status": "refunded"}, "woocommerce", LOCATION, statuses)
    assert [(c.kind, c.idempotency_key) for c in refunded] == [
        ("decrement", "woocommerce:5002:21"), ("increment", "woocommerce:5002:21:refund")]


def test_every_delivery_of_one_order_yields_the_same_keys_whatever_the_order_of_arrival():
    created = order(5003, "processing", (31, "chair-blue", 1))
    completed, cancelled = {**created, "status": "completed"}, {**created, "status": "cancelled"}
    keys = [{c.idempotency_key for c in normalise(o, "woocommerce", LOCATION, STATUSES)}
            for o in (created, completed, created, cancelled, completed)]
    assert keys[0] == keys[1] == keys[2] == keys[4] == {"woocommerce:5003:31"}
    assert keys[3] == {"woocommerce:5003:31", "woocommerce:5003:31:cancel"}


def test_a_line_without_sku_names_its_product_and_variation():
    payload = order(5004, "processing", (41, "", 1), variation=231)
    [change] = normalise(payload, "woocommerce", LOCATION, STATUSES)
    assert change.item == "variant:101:231"


@pytest.mark.parametrize("payload", [
    {"status": "processing", "line_items": []},
    {"id": 1, "line_items": []},
    {"id": "x1", "status": "processing"},
    {"id": 1, "status": "processing", "line_items": [{"id": 1, "sku": "a", "quantity": "many"}]},
    {"id": 1, "status": "processing", "line_items": [{"sku": "a", "quantity": 1}]},
    {"id": 1, "status": "processing", "line_items": "none"},
], ids=["no id", "no status", "id not a number", "quantity not a number", "line without id", "lines not a list"])
def test_a_malformed_order_is_a_400_not_a_crash(payload):
    with pytest.raises(WebhookRejected) as refused:
        normalise(payload, "woocommerce", LOCATION, STATUSES)
    assert refused.value.status == 400 and "order payload" in str(refused.value)


def test_the_connector_answers_pings_and_stores_each_distinct_delivery_once(tmp_path):
    connector = connector_for("http://127.0.0.1:9/wp-json/wc/v3", tmp_path / "mappings")
    assert connector.verify_webhook(*ping(), "https://bridge/webhooks/woocommerce") == []
    headers, body = signed_delivery(WEBHOOK_SECRET, "order.updated", order(5005, "completed", (51, "chair-red", 3)))
    for _ in range(2):  # WooCommerce resending the same body
        assert connector.verify_webhook(headers, body, "https://bridge/webhooks/woocommerce") == []
    [stored] = connector.inbox.due()
    [change] = connector.resolve(stored)
    assert (change.channel, change.location, change.item, change.quantity) == ("woocommerce", "online", "chair-red", 3)
    connector.close()


def test_a_signed_but_malformed_order_is_refused_before_anything_is_stored(tmp_path):
    connector = connector_for("http://127.0.0.1:9/wp-json/wc/v3", tmp_path / "mappings")
    headers, body = signed_delivery(WEBHOOK_SECRET, "order.created", {"id": "x", "status": "processing"})
    with pytest.raises(WebhookRejected) as refused:
        connector.verify_webhook(headers, body, "https://bridge/webhooks/woocommerce")
    assert refused.value.status == 400 and connector.inbox.due() == []
    connector.close()
