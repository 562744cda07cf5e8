"""The Odoo connector's pure parts: how failures are classified, how results become outcomes,
and what a stock-change line looks like. Its RPC is proven against a real Odoo in
tests/integration/odoo/ (ODOO_SRC)."""
from __future__ import annotations

import urllib.error
from decimal import Decimal

import odoorpc
import pytest

from erp_bridge.connectors.odoo import _outcome, availability_of, classify, rpc_line
from erp_bridge.domain import Count, Decrement, Delivered, Increment
from erp_bridge.errors import ConfigError, RejectedError, RetryableError, Throttled
from erp_bridge.mapping.loader import load_mappings

REPO_MAPPINGS = __import__("pathlib").Path(__file__).resolve().parents[3] / "mappings"


def rpc_error(name: str, message: str) -> odoorpc.error.RPCError:
    return odoorpc.error.RPCError(message, {"data": {"name": name, "message": message}})


@pytest.mark.parametrize("exc, cls, text", [
    pytest.param(rpc_error("odoo.exceptions.AccessError", "Only the stock sync bridge user may call this API."),
                 ConfigError, "is the bridge user in the 'Stock Sync Bridge' group?", id="access-error"),
    pytest.param(rpc_error("odoo.exceptions.AccessDenied", "Access Denied"), ConfigError, "Access Denied", id="bad-login"),
    pytest.param(rpc_error("psycopg2.errors.SerializationFailure", "could not serialize"), RetryableError,
                 "transient", id="serialization-failure"),
    pytest.param(rpc_error("odoo.exceptions.UserError", "No operation type"), RejectedError,
                 "odoo.exceptions.UserError: No operation type", id="user-error"),
    pytest.param(urllib.error.HTTPError("http://x", 503, "Service Unavailable", {}, None), RetryableError,
                 "HTTP 503", id="http-503"),
    pytest.param(urllib.error.HTTPError("http://x", 429, "Too Many Requests", {}, None), Throttled,
                 "HTTP 429", id="http-429"),
    pytest.param(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), RetryableError,
                 "cannot reach the server", id="refused"),
    pytest.param(TimeoutError("timed out"), RetryableError, "cannot reach the server", id="timeout"),
])
def test_failures_are_classified_by_what_the_operator_must_do(exc, cls, text):
    error = classify(exc, "apply_stock_changes")
    assert type(error) is cls and text in str(error)


@pytest.mark.parametrize("result, expected", [
    pytest.param({"key": "k", "status": "applied"}, Delivered("applied"), id="applied"),
    pytest.param({"key": "k", "status": "duplicate"}, Delivered("duplicate"), id="duplicate"),
    pytest.param({"key": "k", "status": "unknown_product", "detail": "no product with SKU 'X'"},
                 "unknown SKU in Odoo: no product with SKU 'X'", id="unknown-product"),
    pytest.param({"key": "k", "status": "insufficient_stock", "detail": "free 1 < 2"},
                 "not enough free stock in Odoo and backorders are off: free 1 < 2", id="insufficient"),
    pytest.param(None, "Odoo returned no result for k", id="missing"),
])
def test_results_become_outcomes(result, expected):
    outcome = _outcome(result, "k")
    assert outcome == expected if isinstance(expected, Delivered) else str(outcome) == expected


def test_a_line_carries_odoo_terms_from_the_mapping():
    mapping = load_mappings(REPO_MAPPINGS).systems["odoo"]
    line = rpc_line(mapping, Increment(channel="shopify", order="9", line="refund-line-3", item="chair-blue",
                                       location="WH2/Stock", quantity=Decimal("1.5"), reason="return"))
    assert {k: line[k] for k in ("key", "kind", "sku", "location", "quantity", "channel", "order_ref")} == {
        "key": "shopify:9:refund-line-3:return", "kind": "increment", "sku": "chair-blue", "location": "WH2/Stock",
        "quantity": 1.5, "channel": "shopify", "order_ref": "9"}


@pytest.mark.parametrize("change, reason", [
    pytest.param(Decrement(channel="s", order="1", line="1", item="a", location="WH9/Stock", quantity=Decimal(1)),
                 "location 'WH9/Stock' is not in the odoo mapping's locations.map", id="unmapped-location"),
    pytest.param(Count(system="pos", item="a", location="WH/Stock", quantity=Decimal(4), reference="c1"),
                 "Odoo takes channel sales and returns, not counts", id="count"),
])
def test_lines_odoo_cannot_take_are_refused_with_the_reason(change, reason):
    mapping = load_mappings(REPO_MAPPINGS).systems["odoo"]
    with pytest.raises(RejectedError, match=reason):
        rpc_line(mapping, change)


def test_availability_figures_become_decimals():
    a = availability_of("a", "WH/Stock", {"on_hand": 10.0, "reserved": 2.0, "free": 8.0, "forecast": 7.5, "uom": "Units",
                                          "restock_at": "2026-12-01T08:30:00"})
    assert (a.on_hand, a.reserved, a.free, a.forecast, a.uom) == (Decimal("10.0"), Decimal("2.0"), Decimal("8.0"),
                                                                 Decimal("7.5"), "Units")
    assert a.restock_at.isoformat() == "2026-12-01T08:30:00+00:00"
    assert availability_of("a", "WH/Stock", {"on_hand": 1, "free": 1, "restock_at": None}).restock_at is None


# --- JSON-2 (Odoo 19) ---------------------------------------------------------------------------
import requests  # noqa: E402

from erp_bridge.connectors.odoo_json2 import Json2Error, classify_json2  # noqa: E402


@pytest.mark.parametrize("exc, cls, text", [
    pytest.param(Json2Error(401, {"name": "werkzeug.exceptions.Unauthorized", "message": "Invalid apikey"}),
                 ConfigError, "wrong, revoked or expired", id="bad-or-expired-key"),
    pytest.param(Json2Error(403, {"name": "odoo.exceptions.AccessError",
                                  "message": "Only the stock sync bridge user may call this API."}),
                 ConfigError, "'Stock Sync Bridge' group", id="not-in-group"),
    pytest.param(Json2Error(404, {"name": "werkzeug.exceptions.NotFound", "message": "no model"}),
                 ConfigError, "is the module stock_sync_bridge installed", id="module-missing"),
    pytest.param(Json2Error(500, {"name": "psycopg2.errors.SerializationFailure", "message": "could not"}),
                 RetryableError, "transient", id="serialization-failure"),
    pytest.param(Json2Error(503, {"message": "maintenance"}, retry_after=7), RetryableError, "HTTP 503",
                 id="unavailable"),
    pytest.param(Json2Error(422, {"name": "odoo.exceptions.UserError", "message": "No operation type"}),
                 RejectedError, "odoo.exceptions.UserError: No operation type", id="user-error"),
    pytest.param(Json2Error(500, {"name": "odoo.exceptions.ValidationError", "message": "bad"}),
                 RejectedError, "ValidationError", id="validation-error"),
    pytest.param(requests.ConnectionError("refused"), RetryableError, "cannot reach the server", id="refused"),
    pytest.param(requests.Timeout("slow"), RetryableError, "cannot reach the server", id="timeout"),
])
def test_json2_failures_are_classified_by_what_the_operator_must_do(exc, cls, text):
    error = classify_json2(exc, "apply_stock_changes")
    assert type(error) is cls and text in str(error)


def test_json2_honours_retry_after():
    throttled = classify_json2(Json2Error(429, {}, retry_after=7), "x")
    assert type(throttled) is Throttled and throttled.after == 7  # the dispatcher pauses Odoo, no attempt
    assert type(classify_json2(Json2Error(503, {}, retry_after=7), "x")) is RetryableError
