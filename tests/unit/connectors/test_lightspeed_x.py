"""Lightspeed X-Series over real HTTP against its double (tests/fakes/lightspeed_x.py): inventory
per product per outlet out (API 2.1 product update), the rate-limit window, 5xx/timeouts/lost
answers; sale.update deliveries verified (X-Signature), stored once and resolved into keyed changes."""
from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
from decimal import Decimal

import pytest

from erp_bridge.connectors.lightspeed_x import webhooks
from erp_bridge.connectors.runtime.webhooks import WebhookRejected
from erp_bridge.domain import Decrement, Delivered, Figure, Increment
from erp_bridge.errors import ConfigError, NotAttempted, RejectedError, RetryableError
from tests.fakes import lightspeed_x as ls


@pytest.fixture
def store():
    with ls.stocked_store() as s:
        yield s


@pytest.fixture
def connector(store, tmp_path):
    made = ls.connector_for(store.url, tmp_path / "m", tmp_path / "queue.sqlite3")
    yield made
    made.close()


def figure(sku: str, quantity: str, location: str = "WH/Stock") -> Figure:
    return Figure(sku, location, Decimal(quantity), idempotency_key=f"odoo:availability:{sku}@{location}:1")


def test_figures_go_out_per_product_per_outlet(store, connector):
    assert connector.push_availability([figure("CHAIR-BLUE", "3"), figure("CHAIR-RED", "0")]) == [Delivered("set")] * 2
    puts = [(r["path"], json.loads(r["body"])) for r in store.requests if r["method"] == "PUT"]
    assert puts == [(f"/api/2.1/products/{ls.BLUE}", {"details": {"inventory": [{"outlet_id": ls.OUTLET,
                                                                                  "current_amount": 3}]}}),
                    (f"/api/2.1/products/{ls.RED}", {"details": {"inventory": [{"outlet_id": ls.OUTLET,
                                                                                 "current_amount": 0}]}})]
    assert (store.inventory[(ls.BLUE, ls.OUTLET)], store.inventory[(ls.RED, ls.OUTLET)]) == (3, 0)


def test_an_unlisted_sku_and_an_unmapped_location_are_refused_naming_the_file(store, connector):
    ghost, far = connector.push_availability([figure("GHOST", "1"), figure("CHAIR-BLUE", "1", "WH9/Stock")])
    assert isinstance(ghost, RejectedError) and "mappings/lightspeed_x.yaml" in str(ghost) and "GHOST" in str(ghost)
    assert isinstance(far, RejectedError) and "WH9/Stock" in str(far)
    assert store.requests == []


def test_a_spent_window_is_a_429_that_waits_for_its_retry_after_date_and_stops_the_rest(store, connector):
    store.limit = 1
    first, second, third = connector.push_availability([figure("CHAIR-BLUE", "1"), figure("CHAIR-RED", "1"),
                                                        figure("CHAIR-BLUE", "2")])
    assert first == Delivered("set")
    assert isinstance(second, RetryableError) and second.after is not None and 0 < second.after <= 3
    assert "429" in str(second) and "Too Many Requests" in str(second)
    assert isinstance(third, NotAttempted)


@pytest.mark.parametrize("fault, expected", [
    (ls.Fault(503, {"Content-Type": "application/json"}, b'{"error": "Service Unavailable"}'), "Service Unavailable"),
    (ls.Fault(200, hang_s=1.5), "timed out"),
], ids=["5xx", "timeout"])
def test_down_or_hanging_is_retryable(store, tmp_path, fault, expected):
    store.faults.append(fault)
    connector = ls.connector_for(store.url, tmp_path / "m", tmp_path / "queue.sqlite3", timeout_s=0.5)  # < the hang
    first, second = connector.push_availability([figure("CHAIR-BLUE", "1"), figure("CHAIR-RED", "1")])
    connector.close()
    assert isinstance(first, RetryableError) and expected in str(first) and isinstance(second, NotAttempted)


def test_a_lost_answer_is_settled_by_sending_the_same_absolute_set_again(store, connector):
    store.faults.append(ls.Fault(drop="after_commit"))
    [lost] = connector.push_availability([figure("CHAIR-BLUE", "4")])
    assert isinstance(lost, RetryableError) and store.inventory[(ls.BLUE, ls.OUTLET)] == 4
    assert connector.push_availability([figure("CHAIR-BLUE", "4")]) == [Delivered("set")]
    assert store.inventory[(ls.BLUE, ls.OUTLET)] == 4


def test_a_revoked_token_names_the_secret_not_its_value(store, connector):
    store.token = "another"
    [result] = connector.push_availability([figure("CHAIR-BLUE", "1")])
    assert isinstance(result, ConfigError) and "lightspeed_x_token" in str(result) and ls.TOKEN not in str(result)


# --- sales in ------------------------------------------------------------------------------------------
def test_a_delivery_is_stored_once_and_resolved_with_the_registers_outlet(store, connector):
    headers, body = ls.signed_delivery(ls.CLIENT_SECRET, ls.sale("S1", "CLOSED", ("L1", ls.BLUE, 2), ("L2", ls.RED, 1)))
    assert connector.verify_webhook(headers, body, "u") == []
    assert connector.verify_webhook(headers, body, "u") == []  # Lightspeed's retry
    assert store.requests == []  # nothing fetched while the delivery waits for its answer
    [reference] = connector.inbox.due()
    changes = connector.resolve(reference)
    assert [(c.idempotency_key, c.item, c.location, c.quantity) for c in changes] == [
        ("lightspeed_x:S1:L1", "CHAIR-BLUE", ls.OUTLET, 2), ("lightspeed_x:S1:L2", "CHAIR-RED", ls.OUTLET, 1)]
    connector.resolve(reference)
    assert len([r for r in store.requests if "registers" in r["path"]]) == 1  # the outlet is remembered


def test_a_register_that_cannot_be_read_raises_for_the_inbox_to_retry(store, connector):
    headers, body = ls.signed_delivery(ls.CLIENT_SECRET, ls.sale("S2", "CLOSED", ("L1", ls.BLUE, 1), register="gone"))
    connector.verify_webhook(headers, body, "u")
    with pytest.raises(RejectedError, match="register gone not found"):
        connector.resolve(connector.inbox.due()[0])


SALES = {
    "closed": (ls.sale("S", "CLOSED", ("a", "p", 2)), [("decrement", "lightspeed_x:S:a", 2)]),
    "parked": (ls.sale("S", "SAVED", ("a", "p", 2)), []),
    "voided": (ls.sale("S", "VOIDED", ("a", "p", 2)),
               [("decrement", "lightspeed_x:S:a", 2), ("increment", "lightspeed_x:S:a:cancel", 2)]),
    "a return": (ls.sale("R", "CLOSED", ("r", "p", -1), return_for="S"), [("increment", "lightspeed_x:R:r:return", 1)]),
    "a voided return": (ls.sale("R", "VOIDED", ("r", "p", -1)),
                        [("increment", "lightspeed_x:R:r:return", 1), ("decrement", "lightspeed_x:R:r", 1)]),
    "2.0 line_items, outlet named": ({"id": "S", "status": "LAYBY", "outlet_id": "o",
                                      "line_items": [{"id": "a", "product_id": "p", "quantity": 1.5}]},
                                     [("decrement", "lightspeed_x:S:a", Decimal("1.5"))]),
}


@pytest.mark.parametrize("sale, expected", SALES.values(), ids=SALES.keys())
def test_what_a_sales_status_means_for_its_lines(sale, expected):
    changes = webhooks.normalise(sale, "lightspeed_x", "o", webhooks.STATUSES, lambda line: line.product_id)
    assert [(c.kind, c.idempotency_key, c.quantity) for c in changes] == expected
    assert all(isinstance(c, (Decrement, Increment)) for c in changes)


# --- signatures ----------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command line not installed")
def test_a_delivery_signed_by_an_independent_hmac_verifies():
    body = b"type=sale.update&payload=%7B%22id%22%3A%22S1%22%7D"
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", ls.CLIENT_SECRET, "-r"], input=body,
                            capture_output=True, check=True).stdout.split()[0].decode()
    fields = webhooks.verify(ls.CLIENT_SECRET, {"x-signature": f"signature={digest.upper()}, algorithm=HMAC-SHA256"},
                             body)
    assert fields == {"type": "sale.update", "payload": '{"id":"S1"}'}


def _signed(body: bytes, secret: str = ls.CLIENT_SECRET) -> dict[str, str]:
    return {"X-Signature": f"signature={hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}, "
                           "algorithm=HMAC-SHA256"}


GOOD = b"payload=" + json.dumps(ls.sale("S1", "CLOSED", ("L1", ls.BLUE, 1))).encode().replace(b" ", b"+")
REFUSED = {
    "unsigned": ({}, GOOD, 401, "missing X-Signature"),
    "wrong secret": (_signed(GOOD, "other"), GOOD, 401, "does not match"),
    "altered body": (_signed(GOOD), GOOD + b"&x=1", 401, "does not match"),
    "not hex": ({"X-Signature": "signature=zz, algorithm=HMAC-SHA256"}, GOOD, 401, "not hex"),
    "other algorithm": ({"X-Signature": "signature=00, algorithm=HMAC-MD5"}, GOOD, 401, "malformed"),
    "no payload": (_signed(b"type=sale.update"), b"type=sale.update", 400, "no single payload"),
    "payload not JSON": (_signed(b"payload=%7B"), b"payload=%7B", 400, "not valid JSON"),
    "not a sale": (_signed(b"payload=%7B%7D"), b"payload=%7B%7D", 400, "not a sale"),
    "bad quantity": (_signed(b"payload=" + json.dumps(ls.sale("S", "CLOSED", ("l", "p", "x"))).encode()),
                     b"payload=" + json.dumps(ls.sale("S", "CLOSED", ("l", "p", "x"))).encode(), 400, "malformed line"),
}


@pytest.mark.parametrize("headers, body, status, reason", REFUSED.values(), ids=REFUSED.keys())
def test_forged_and_malformed_deliveries_are_refused_and_store_nothing(connector, headers, body, status, reason):
    with pytest.raises(WebhookRejected) as refused:
        connector.verify_webhook(headers, body, "u")
    assert refused.value.status == status and reason in str(refused.value)
    assert ls.CLIENT_SECRET not in str(refused.value) and connector.inbox.pending() == []


def test_another_topic_is_acknowledged_and_stores_nothing(connector):
    headers, body = ls.signed_delivery(ls.CLIENT_SECRET, {"id": "p1", "name": "Chair"}, topic="product.update")
    assert connector.verify_webhook(headers, body, "u") == [] and connector.inbox.pending() == []


def test_reconciliation_reads_what_each_outlet_shows(store, connector):
    store.inventory[(ls.BLUE, ls.OUTLET)] = Decimal(2)
    store.inventory[(ls.BLUE, "another-outlet")] = Decimal(9)
    listed = connector.read_listed([("CHAIR-BLUE", "WH/Stock"), ("CHAIR-RED", "WH/Stock"), ("GHOST", "WH/Stock"),
                                    ("CHAIR-BLUE", "WH9/Stock")])
    assert listed == {("CHAIR-BLUE", "WH/Stock"): 2, ("CHAIR-RED", "WH/Stock"): 5}
    assert [r["path"] for r in store.requests] == [f"/api/2.0/products/{ls.BLUE}/inventory",
                                                   f"/api/2.0/products/{ls.RED}/inventory"]
