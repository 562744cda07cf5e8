"""Shopify webhook verification and normalisation (vendor-apis.md §5, §11)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from decimal import Decimal

import pytest

from erp_bridge.connectors.shopify.webhooks import WebhookRejected, normalise, verify

SECRET = "shpss_test_secret_0123"


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def headers(body: bytes, topic: str = "orders/create", **extra) -> dict:
    return {"X-Shopify-Hmac-Sha256": sign(body), "X-Shopify-Topic": topic,
            "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", **extra}


ORDER = {"id": 820982911946154508, "location_id": None, "line_items": [
    {"id": 466157049, "sku": "IPOD2008GREEN", "variant_id": 39072856, "quantity": 2, "gift_card": False},
    {"id": 518995019, "sku": "", "variant_id": 49148385, "quantity": 1, "gift_card": False},
    {"id": 703073504, "sku": "GIFT", "variant_id": 457924702, "quantity": 1, "gift_card": True},
]}
REFUND = {"id": 509562969, "order_id": 820982911946154508, "refund_line_items": [
    {"id": 104689539, "line_item_id": 466157049, "location_id": 487838322, "quantity": 1, "restock_type": "return",
     "line_item": {"id": 466157049, "sku": "IPOD2008GREEN", "variant_id": 39072856}},
    {"id": 104689540, "line_item_id": 518995019, "location_id": 487838322, "quantity": 1, "restock_type": "no_restock",
     "line_item": {"id": 518995019, "sku": "", "variant_id": 49148385}},
]}


def test_a_signed_order_becomes_one_decrement_per_stocked_line():
    body = json.dumps(ORDER).encode()
    changes = normalise(verify(SECRET, headers(body), body), "shopify", "gid-web")
    assert [(c.kind, c.idempotency_key, c.item, c.location, c.quantity) for c in changes] == [
        ("decrement", "shopify:820982911946154508:466157049", "IPOD2008GREEN", "gid-web", Decimal(2)),
        ("decrement", "shopify:820982911946154508:518995019", "variant:49148385", "gid-web", Decimal(1)),
    ]


def test_a_pos_order_keeps_its_own_location():
    body = json.dumps({**ORDER, "location_id": 487838322}).encode()
    changes = normalise(verify(SECRET, headers(body), body), "shopify", "gid-web")
    assert {c.location for c in changes} == {"487838322"}


def test_only_restocked_refund_lines_give_stock_back():
    body = json.dumps(REFUND).encode()
    changes = normalise(verify(SECRET, headers(body, "refunds/create"), body), "shopify", None)
    assert [(c.kind, c.idempotency_key, c.item, c.location, c.quantity, c.reason) for c in changes] == [
        ("increment", "shopify:820982911946154508:refund-line-104689539:return", "IPOD2008GREEN",
         "487838322", Decimal(1), "return")]


def test_cancellation_and_its_refund_webhook_yield_the_same_key():
    refund = {**REFUND, "refund_line_items": [{**REFUND["refund_line_items"][0], "restock_type": "cancel"}]}
    cancelled = {**ORDER, "refunds": [refund]}
    b1, b2 = json.dumps(cancelled).encode(), json.dumps(refund).encode()
    via_cancel = normalise(verify(SECRET, headers(b1, "orders/cancelled"), b1), "shopify", None)
    via_refund = normalise(verify(SECRET, headers(b2, "refunds/create"), b2), "shopify", None)
    assert [c.idempotency_key for c in via_cancel] == [c.idempotency_key for c in via_refund] == [
        "shopify:820982911946154508:refund-line-104689539:cancel"]


BODY = json.dumps(ORDER).encode()


@pytest.mark.parametrize("hdrs, body, status, reason", [
    pytest.param({"X-Shopify-Topic": "orders/create"}, BODY, 401, "missing X-Shopify-Hmac-Sha256 header", id="missing-signature"),
    pytest.param({"X-Shopify-Hmac-Sha256": "not base64!!"}, BODY, 401, "malformed X-Shopify-Hmac-Sha256 header (not base64)", id="malformed-signature"),
    pytest.param({"X-Shopify-Hmac-Sha256": sign(BODY, "another-secret")}, BODY, 401,
                 "X-Shopify-Hmac-Sha256 does not match the body (wrong secret or altered body)", id="wrong-secret"),
    pytest.param({"X-Shopify-Hmac-Sha256": sign(BODY)}, BODY + b" ", 401,
                 "X-Shopify-Hmac-Sha256 does not match the body (wrong secret or altered body)", id="altered-body"),
    pytest.param({"X-Shopify-Hmac-Sha256": sign(b"{oops")}, b"{oops", 400,
                 "body is not valid JSON: Expecting property name enclosed in double quotes at position 1", id="malformed-json"),
    pytest.param({"X-Shopify-Hmac-Sha256": sign(b"[1]")}, b"[1]", 400, "body must be a JSON object", id="not-an-object"),
    pytest.param({"X-Shopify-Hmac-Sha256": sign(b'{"id": "\xff"}')}, b'{"id": "\xff"}', 400,
                 "body is not UTF-8 (invalid byte at position 8)", id="invalid-utf8"),
    pytest.param({"X-Shopify-Hmac-Sha256": sign(b"[" * 1000 + b"]" * 1000)}, b"[" * 1000 + b"]" * 1000, 400,
                 "body is nested deeper than 64 levels", id="nested-1000-deep"),
    pytest.param({"X-Shopify-Hmac-Sha256": sign(b'{"q": NaN}')}, b'{"q": NaN}', 400,
                 "body is not valid JSON: NaN is not a JSON number", id="nan"),
])
def test_forged_or_malformed_deliveries_are_refused_without_echoing_the_body(hdrs, body, status, reason):
    with pytest.raises(WebhookRejected) as err:
        verify(SECRET, hdrs, body)
    assert (err.value.status, str(err.value)) == (status, reason)
    assert SECRET not in str(err.value)


@pytest.mark.parametrize("topic, payload, reason", [
    pytest.param("orders/create", {"line_items": []},
                 "orders/create: id: must be an id (a number or a non-empty string), got null", id="no-order-id"),
    pytest.param("orders/create", {"id": 1, "line_items": [{"id": 1, "sku": "A", "quantity": "two"}]},
                 "orders/create: line_items[0].quantity: must be a whole number of units, got string 'two'",
                 id="bad-quantity"),
    # issue 9.3: quantities are validated, never coerced
    pytest.param("orders/create", {"id": 1, "line_items": [{"id": 1, "sku": "A", "quantity": 1.5}]},
                 "orders/create: line_items[0].quantity: must be a whole number of units, got 1.5", id="fraction"),
    pytest.param("orders/create", {"id": 1, "line_items": [{"id": 1, "sku": "A", "quantity": 2}, {"id": 2, "sku": "B", "quantity": 0.5}]},
                 "orders/create: line_items[1].quantity: must be a whole number of units, got 0.5", id="half-is-not-dropped"),
    pytest.param("orders/create", {"id": 1, "line_items": [{"id": 1, "sku": "A", "quantity": True}]},
                 "orders/create: line_items[0].quantity: must be a whole number of units, got boolean true", id="boolean"),
    pytest.param("orders/create", {"id": 1, "line_items": [{"id": 1, "sku": "A", "quantity": 1e308}]},
                 "orders/create: line_items[0].quantity: 1e+308 is beyond the bound of 1000000 units per line", id="huge"),
    pytest.param("orders/create", {"id": 1, "line_items": [{"id": 1, "sku": "A", "quantity": -2}]},
                 "orders/create: line_items[0].quantity: must not be negative, got -2", id="negative"),
    pytest.param("orders/create", {"id": 1, "line_items": {"id": 1, "sku": "A", "quantity": 1}},
                 "orders/create: line_items: must be an array of objects, got an object", id="line-items-object"),
    pytest.param("orders/create", {"id": 1, "line_items": ["A"]},
                 "orders/create: line_items[0]: must be an object, got string 'A'", id="line-item-string"),
    pytest.param("refunds/create", {"order_id": 1, "refund_line_items": [{"id": 5, "quantity": 1.25, "restock_type": "return", "line_item": {"sku": "A"}}]},
                 "refunds/create: refund_line_items[0].quantity: must be a whole number of units, got 1.25", id="refund-fraction"),
    pytest.param("orders/updated", {"id": 1}, "unsupported topic 'orders/updated'; subscribe to orders/create, orders/cancelled, refunds/create", id="unknown-topic"),
])
def test_payloads_that_cannot_be_normalised_say_which_field(topic, payload, reason):
    body = json.dumps(payload).encode()
    with pytest.raises(WebhookRejected) as err:
        normalise(verify(SECRET, headers(body, topic), body), "shopify", "gid-web")
    assert (err.value.status, str(err.value)) == (400, reason)


def test_an_order_without_location_and_without_default_is_refused():
    body = json.dumps(ORDER).encode()
    with pytest.raises(WebhookRejected, match="location_id: missing on the order and no webhooks.default_location"):
        normalise(verify(SECRET, headers(body), body), "shopify", None)


def test_current_header_names_without_the_x_prefix_are_accepted():
    body = json.dumps(ORDER).encode()
    hdrs = {"Shopify-Hmac-Sha256": sign(body), "Shopify-Topic": "orders/create",
            "Shopify-Shop-Domain": "example-store.myshopify.com"}
    changes = normalise(verify(SECRET, hdrs, body, shop_domain="example-store.myshopify.com"), "shopify", "gid-web")
    assert len(changes) == 2


def test_a_delivery_signed_for_another_shop_is_refused():
    body = json.dumps(ORDER).encode()
    with pytest.raises(WebhookRejected) as err:
        verify(SECRET, headers(body, **{"X-Shopify-Shop-Domain": "other.myshopify.com"}), body,
               shop_domain="example-store.myshopify.com")
    assert err.value.status == 403 and "other.myshopify.com" in str(err.value)


@pytest.mark.parametrize("body, refused", [
    pytest.param(b'{"a":' * 64 + b"1" + b"}" * 64, False, id="64-levels-taken"),
    pytest.param(b'{"a":' * 65 + b"1" + b"}" * 65, True, id="65-levels-refused"),
    pytest.param(b'{"a": [' + b"[" * 63 + b"]" * 63 + b"]}", True, id="65-levels-of-arrays-refused"),
    pytest.param(b'{"note": "' + b"[{" * 500 + b'", "deep": [[1]]}', False, id="brackets-in-strings-do-not-count"),
    pytest.param(b"[" * 100_000, True, id="100000-open-brackets-refused-by-the-parser-bound"),
])
def test_nesting_is_bounded_at_64_levels_of_arrays_and_objects(body, refused):
    """The bound is checked on the parsed body (the C parser bounds its own recursion first)."""
    if refused:
        with pytest.raises(WebhookRejected, match="nested deeper than 64 levels") as err:
            verify(SECRET, {"X-Shopify-Hmac-Sha256": sign(body)}, body)
        assert err.value.status == 400
    else:
        assert isinstance(verify(SECRET, {"X-Shopify-Hmac-Sha256": sign(body)}, body).payload, dict)
