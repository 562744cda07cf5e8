"""BigCommerce callbacks: Standard Webhooks signatures (checked against an independent HMAC, the
openssl command line), freshness, scopes, and what an order's status means for its products."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
from decimal import Decimal

import pytest

from erp_bridge.connectors.bigcommerce.webhooks import (
    RESTOCK_STATUSES,
    SALE_STATUSES,
    normalise,
    reference,
    signing_key,
    verify,
)
from erp_bridge.connectors.runtime.webhooks import WebhookRejected
from tests.fakes.bigcommerce import CLIENT_SECRET, signed_callback

NOW = 1_764_480_000
KEY = CLIENT_SECRET.encode()


def openssl_v1(secret: str, signed: bytes) -> str:
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", secret, "-binary"], input=signed,
                            capture_output=True, check=True).stdout
    return "v1," + base64.b64encode(digest).decode()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command line not installed")
def test_a_callback_signed_by_an_independent_hmac_verifies():
    body = b'{"scope":"store/order/created","store_id":"1025646","data":{"type":"order","id":250},"hash":"dd70"}'
    msg_id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"  # the spec's example id
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(NOW),
               "webhook-signature": openssl_v1(CLIENT_SECRET, f"{msg_id}.{NOW}.".encode() + body)}
    msg_id, callback = verify(KEY, headers, body, now=lambda: NOW + 10)
    assert msg_id == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W" and reference(callback) == {
        "scope": "store/order/created", "order_id": 250, "hash": "dd70"}


def test_a_rotated_secret_passes_while_either_signature_matches_and_whsec_secrets_decode():
    headers, body = signed_callback(CLIENT_SECRET, "store/order/created", 250, timestamp=NOW)
    headers["webhook-signature"] = "v1,b2xkLXNpZ25hdHVyZQ== v1a,c29tZXRoaW5n " + headers["webhook-signature"]
    assert verify(KEY, headers, body, now=lambda: NOW)[1]["data"]["id"] == 250
    whsec = "whsec_" + base64.b64encode(KEY).decode()
    assert signing_key(whsec) == KEY and signing_key(CLIENT_SECRET) == KEY


@pytest.mark.parametrize("change, reason", [
    ("no headers", "missing webhook-id"),
    ("wrong secret", "does not match"),
    ("altered body", "does not match"),
    ("other id", "does not match"),
    ("replayed an hour later", "stale delivery"),
    ("from the future", "stale delivery"),
    ("timestamp not a number", "malformed"),
    ("v1a only", "does not match"),
    ("not base64", "does not match"),
], ids=lambda v: v if " " in v or v.isalpha() else None)
def test_forged_replayed_and_stale_callbacks_are_refused(change, reason):
    headers, body = signed_callback(CLIENT_SECRET, "store/order/created", 250, timestamp=NOW, msg_id="msg_1")
    now = NOW
    if change == "no headers":
        headers = {"Content-Type": "application/json"}
    elif change == "wrong secret":
        headers = signed_callback("not-the-secret", "store/order/created", 250, timestamp=NOW, msg_id="msg_1")[0]
    elif change == "altered body":
        body = body.replace(b"250", b"251")
    elif change == "other id":
        headers["webhook-id"] = "msg_2"
    elif change == "replayed an hour later":
        now = NOW + 3600
    elif change == "from the future":
        now = NOW - 600
    elif change == "timestamp not a number":
        headers["webhook-timestamp"] = "soon"
    elif change == "v1a only":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v1a,")
    elif change == "not base64":
        headers["webhook-signature"] = "v1,%%%"
    with pytest.raises(WebhookRejected) as refused:
        verify(KEY, headers, body, now=lambda: now)
    assert refused.value.status == 401 and reason in str(refused.value)
    assert CLIENT_SECRET not in str(refused.value)


@pytest.mark.parametrize("callback, expected", [
    ({"scope": "store/order/statusUpdated", "data": {"type": "order", "id": 250,
      "status": {"previous_status_id": 0, "new_status_id": 11}}, "hash": "7ee6"},
     {"scope": "store/order/statusUpdated", "order_id": 250, "hash": "7ee6"}),
    ({"scope": "store/order/refund/created", "data": {"type": "order", "id": 250, "refund": {"refund_id": 3}}},
     {"scope": "store/order/refund/created", "order_id": 250, "hash": ""}),
    ({"scope": "store/sku/inventory/order/updated", "data": {"type": "sku", "id": 461}}, None),
    ({"scope": "store/product/inventory/updated", "data": {"type": "product", "id": 206}}, None),
], ids=["statusUpdated", "refund", "sku inventory", "product inventory"])
def test_order_scopes_become_references_and_inventory_scopes_nothing(callback, expected):
    assert reference(callback) == expected


@pytest.mark.parametrize("callback, reason", [
    ({"scope": "store/customer/created", "data": {"type": "customer", "id": 1}}, "unsupported scope"),
    ({"scope": "store/order/created", "data": {"type": "order"}}, "no integer data.id"),
    ({"scope": "store/order/created", "data": {"type": "order", "id": "250"}}, "no integer data.id"),
    ({"scope": "store/order/created", "data": "250"}, "no integer data.id"),
], ids=["customer scope", "no id", "id as text", "data not an object"])
def test_malformed_callbacks_are_a_400(callback, reason):
    with pytest.raises(WebhookRejected) as refused:
        reference(callback)
    assert refused.value.status == 400 and reason in str(refused.value)


def test_the_sample_callbacks_of_the_spec_are_understood():
    from pathlib import Path
    folder = Path("../shared/specs/bigcommerce/callbacks")
    if not folder.is_dir():
        pytest.skip("../shared/specs/bigcommerce/callbacks is not beside the repo")
    refs = {p.stem: reference(json.loads(p.read_text())) for p in folder.glob("store_order_*.json")
            if "message" not in p.stem and "archived" not in p.stem}
    assert {k: v and v["order_id"] for k, v in refs.items()} == {
        "store_order_created": 250, "store_order_updated": 250, "store_order_statusUpdated": 250,
        "store_order_refund_created": 250}
    assert reference(json.loads((folder / "store_sku_inventory_order_updated.json").read_text())) is None


PRODUCTS = [{"id": 11, "product_id": 77, "variant_id": 0, "sku": "chair-blue", "quantity": 2},
            {"id": 12, "product_id": 78, "variant_id": 509, "sku": "", "quantity": 1}]


@pytest.mark.parametrize("status, kinds", [
    ("11", ["decrement", "decrement"]), ("7", ["decrement", "decrement"]), ("0", []), ("4", []),
    ("5", ["decrement", "decrement", "increment", "increment"]),
], ids=["awaiting fulfillment", "awaiting payment", "incomplete", "refunded (not by default)", "cancelled"])
def test_the_default_statuses(status, kinds):
    changes = normalise(250, status, PRODUCTS, "bigcommerce", "1", SALE_STATUSES, RESTOCK_STATUSES)
    assert [c.kind for c in changes] == kinds
    if kinds:
        assert [(c.idempotency_key, c.item, c.quantity) for c in changes[:2]] == [
            ("bigcommerce:250:11", "chair-blue", Decimal(2)), ("bigcommerce:250:12", "variant:78:509", Decimal(1))]
