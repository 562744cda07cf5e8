"""Clover over real HTTP against its double (tests/fakes/clover.py): item_stocks out with the
merchant id in every path, the per-token rate limit, 5xx/timeouts/lost answers; the verification
POST, X-Clover-Auth, id-only notifications stored once and resolved from the order as it is now."""
from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest

from erp_bridge.connectors.clover import webhooks
from erp_bridge.connectors.clover.connector import merchant_url
from erp_bridge.connectors.runtime.webhooks import WebhookRejected
from erp_bridge.domain import Delivered, Figure
from erp_bridge.errors import ConfigError, NotAttempted, RejectedError, RetryableError
from tests.fakes import clover as cl


@pytest.fixture
def merchant():
    with cl.stocked_merchant() as m:
        yield m


@pytest.fixture
def build(merchant, tmp_path):
    made = []

    def make(**options):
        made.append(cl.connector_for(merchant.url, tmp_path / "m", tmp_path / "queue.sqlite3", **options))
        return made[-1]
    yield make
    for connector in made:
        connector.close()


def figure(sku: str, quantity: str, location: str = "WH/Stock") -> Figure:
    return Figure(sku, location, Decimal(quantity), idempotency_key=f"odoo:availability:{sku}@{location}:1")


def test_figures_go_out_per_item_with_the_merchant_in_the_path(merchant, build):
    assert build().push_availability([figure("CHAIR-BLUE", "3.5"), figure("CHAIR-RED", "0")]) == [Delivered("set")] * 2
    assert [(r["method"], r["path"], json.loads(r["body"])) for r in merchant.requests] == [
        ("POST", f"/v3/merchants/{cl.MERCHANT}/item_stocks/{cl.BLUE}", {"quantity": 3.5}),
        ("POST", f"/v3/merchants/{cl.MERCHANT}/item_stocks/{cl.RED}", {"quantity": 0})]
    assert (merchant.stock[cl.BLUE], merchant.stock[cl.RED]) == (Decimal("3.5"), 0)


def test_an_unknown_item_fails_alone_with_clovers_message(merchant, build):
    merchant.stock.pop(cl.RED)
    blue, red = build().push_availability([figure("CHAIR-BLUE", "1"), figure("CHAIR-RED", "1")])
    assert blue == Delivered("set")
    assert isinstance(red, RejectedError) and f"Clover: Item {cl.RED} not found" in str(red)


def test_the_per_second_token_limit_is_a_retryable_429_that_stops_the_rest(merchant, build):
    merchant.rate = 1
    merchant.clock = lambda: 1_000_000.0  # one second for all three: none may straddle two windows
    first, second, third = build().push_availability([figure("CHAIR-BLUE", "1"), figure("CHAIR-RED", "1"),
                                                      figure("CHAIR-BLUE", "2")])
    assert first == Delivered("set")
    assert isinstance(second, RetryableError) and "429" in str(second) and isinstance(third, NotAttempted)


@pytest.mark.parametrize("fault, expected", [
    (cl.Fault(502, {"Content-Type": "application/json"}, b'{"message": "Bad Gateway"}'), "Clover: Bad Gateway"),
    (cl.Fault(200, hang_s=1.5), "timed out"),
    (cl.Fault(429, {"retry-after": "2", "Content-Type": "application/json"}, b'{"message": "Too Many Requests"}'),
     "Too Many Requests"),
], ids=["5xx", "timeout", "concurrency 429 with retry-after"])
def test_down_hanging_or_throttled_is_retryable(merchant, build, fault, expected):
    merchant.faults.append(fault)
    connector = build(timeout_s=0.5)  # shorter than the hang
    first, second = connector.push_availability([figure("CHAIR-BLUE", "1"), figure("CHAIR-RED", "1")])
    assert isinstance(first, RetryableError) and expected in str(first) and isinstance(second, NotAttempted)
    if "retry-after" in fault.headers:
        assert first.after == 2


def test_a_lost_answer_is_settled_by_sending_the_same_absolute_quantity_again(merchant, build):
    merchant.faults.append(cl.Fault(drop="after_commit"))
    connector = build()
    [lost] = connector.push_availability([figure("CHAIR-BLUE", "4")])
    assert isinstance(lost, RetryableError) and merchant.stock[cl.BLUE] == 4
    assert connector.push_availability([figure("CHAIR-BLUE", "4")]) == [Delivered("set")]


def test_a_revoked_token_names_the_secret_not_its_value(merchant, build):
    merchant.token = "another"
    [result] = build().push_availability([figure("CHAIR-BLUE", "1")])
    assert isinstance(result, ConfigError) and "clover_api_token" in str(result) and cl.TOKEN not in str(result)


@pytest.mark.parametrize("url, ok", [
    ("https://api.clover.com/v3/merchants/ABC123", True), ("https://apisandbox.dev.clover.com/v3/merchants/A1/", True),
    ("https://api.clover.com/v3", False), ("https://api.eu.clover.com/v3/merchants/", False)])
def test_the_base_url_must_name_the_merchant(url, ok):
    if ok:
        assert merchant_url(url)[1] in ("ABC123", "A1")
    else:
        with pytest.raises(ConfigError, match="must be https://<host>/v3/merchants/<merchant id>"):
            merchant_url(url)


# --- orders in -----------------------------------------------------------------------------------------
def test_the_verification_post_is_answered_and_its_code_logged_not_stored(build, caplog):
    connector = build()
    with caplog.at_level(logging.WARNING):
        assert connector.verify_webhook(*cl.verification("0b7c1e2a-1111-4a2b-9c3d-123456789abc"), "u") == []
    assert "0b7c1e2a-1111-4a2b-9c3d-123456789abc" in caplog.text and "clover_webhook_auth_code" in caplog.text
    assert connector.inbox.pending() == []


def test_before_the_auth_code_is_set_notifications_are_refused_saying_which_secret(merchant, tmp_path):
    connector = cl.connector_for(merchant.url, tmp_path / "m", tmp_path / "q.sqlite3",
                                 secrets={"clover_api_token": cl.TOKEN})
    try:
        assert connector.verify_webhook(*cl.verification(), "u") == []
        with pytest.raises(WebhookRejected, match="webhooks.secret is not set"):
            connector.verify_webhook(*cl.notification(cl.AUTH_CODE, ("O:ORD1", "CREATE", 1)), "u")
    finally:
        connector.close()


def test_a_notification_is_stored_once_and_resolved_from_the_order_as_it_is_now(merchant, build):
    connector = build()
    merchant.add_order("ORD1", "PAID", ("LI1", cl.BLUE, None), ("LI2", cl.RED, 1500), ("LI3", None, None))
    delivery = cl.notification(cl.AUTH_CODE, ("O:ORD1", "CREATE", 1700000000000), ("I:" + cl.BLUE, "UPDATE", 1),
                               OTHERMERCHANT=[("O:ELSE", "CREATE", 1)])
    assert connector.verify_webhook(*delivery, "u") == []
    assert connector.verify_webhook(*delivery, "u") == []  # Clover's retry
    assert merchant.requests == []
    [reference] = connector.inbox.due()
    assert reference.payload == {"merchant": cl.MERCHANT, "order_id": "ORD1", "type": "CREATE", "ts": 1700000000000}
    changes = connector.resolve(reference)
    assert [(c.idempotency_key, c.item, c.location, c.quantity) for c in changes] == [
        ("clover:ORD1:LI1", "CHAIR-BLUE", cl.MERCHANT, 1), ("clover:ORD1:LI2", "CHAIR-RED", cl.MERCHANT, Decimal("1.5"))]
    assert merchant.requests[0]["path"] == f"/v3/merchants/{cl.MERCHANT}/orders/ORD1?expand=lineItems"


def test_a_deleted_order_counts_nothing_and_a_down_api_raises_for_the_inbox_to_retry(merchant, build):
    connector = build()
    connector.verify_webhook(*cl.notification(cl.AUTH_CODE, ("O:GONE", "DELETE", 5)), "u")
    assert connector.resolve(connector.inbox.due()[0]) == []
    merchant.add_order("GONE", "PAID", ("LI1", cl.BLUE, None))
    merchant.faults.append(cl.Fault(503, {"Content-Type": "application/json"}, b'{"message": "Service Unavailable"}'))
    with pytest.raises(RetryableError, match="Service Unavailable"):
        connector.resolve(connector.inbox.due()[0])


ORDERS = {
    "paid": ("PAID", [{"id": "a", "item": {"id": "i"}}], [("decrement", "clover:O:a")]),
    "open": ("OPEN", [{"id": "a", "item": {"id": "i"}}], []),
    "one line refunded": ("PARTIALLY_REFUNDED", [{"id": "a", "item": {"id": "i"}, "refunded": True},
                                                 {"id": "b", "item": {"id": "i"}}],
                          [("decrement", "clover:O:a"), ("decrement", "clover:O:b"), ("increment", "clover:O:a:refund")]),
    "fully refunded": ("REFUNDED", [{"id": "a", "item": {"id": "i"}, "refunded": True}],
                       [("decrement", "clover:O:a"), ("increment", "clover:O:a:refund")]),
}


@pytest.mark.parametrize("state, lines, expected", ORDERS.values(), ids=ORDERS.keys())
def test_what_an_orders_state_means_for_its_line_items(state, lines, expected):
    order = {"id": "O", "paymentState": state, "lineItems": {"elements": lines}}
    changes = webhooks.normalise(order, "clover", "M", webhooks.STATUSES, lambda item: item)
    assert [(c.kind, c.idempotency_key) for c in changes] == expected


REFUSED = {
    "no auth header": ({"Content-Type": "application/json"}, 401, "missing X-Clover-Auth"),
    "wrong auth code": ({"X-Clover-Auth": "guess"}, 401, "does not match"),
}


@pytest.mark.parametrize("headers, status, reason", REFUSED.values(), ids=REFUSED.keys())
def test_forged_notifications_are_refused_and_store_nothing(build, headers, status, reason):
    connector = build()
    _, body = cl.notification(None, ("O:ORD1", "CREATE", 1))
    with pytest.raises(WebhookRejected) as refused:
        connector.verify_webhook(headers, body, "u")
    assert refused.value.status == status and reason in str(refused.value) and cl.AUTH_CODE not in str(refused.value)
    assert connector.inbox.pending() == []


@pytest.mark.parametrize("body, reason", [
    (b"{", "not valid JSON"), (b'{"merchants": []}', "no merchants object"),
    (b'{"merchants": {"%s": [{"type": "CREATE"}]}}' % cl.MERCHANT.encode(), "without objectId"),
    (b'{"merchants": {"%s": [{"objectId": "O:x/y", "type": "CREATE", "ts": 1}]}}' % cl.MERCHANT.encode(),
     "alphanumeric"),
    (b'{"verificationCode": "<script>"}', "not a Clover verification code"),
], ids=["not JSON", "merchants not an object", "no objectId", "bad order id", "bad verification code"])
def test_malformed_bodies_are_a_400_naming_what_is_wrong(build, body, reason):
    headers = {} if b"verificationCode" in body else {"X-Clover-Auth": cl.AUTH_CODE}
    with pytest.raises(WebhookRejected) as refused:
        build().verify_webhook(headers, body, "u")
    assert refused.value.status == 400 and reason in str(refused.value)


def test_reconciliation_reads_what_each_item_shows(merchant, build):
    merchant.stock[cl.BLUE] = Decimal("2.5")
    listed = build().read_listed([("CHAIR-BLUE", "WH/Stock"), ("CHAIR-RED", "WH/Stock"), ("GHOST", "WH/Stock"),
                                  ("CHAIR-BLUE", "WH9/Stock")])
    assert listed == {("CHAIR-BLUE", "WH/Stock"): Decimal("2.5"), ("CHAIR-RED", "WH/Stock"): 5}
    assert [r["path"] for r in merchant.requests] == [f"/v3/merchants/{cl.MERCHANT}/items/{cl.BLUE}?expand=itemStock",
                                                      f"/v3/merchants/{cl.MERCHANT}/items/{cl.RED}?expand=itemStock"]
