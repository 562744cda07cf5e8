"""runtime/classify.py: on_status precedence (exact > class > the connector's defaults > built-in),
Retry-After as seconds and as an HTTP date, the vendor's message, and the Redactor."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime

import pytest
import requests

from erp_bridge.connectors.runtime.classify import (
    Redactor,
    action_for,
    classify_response,
    finite_decimal,
    retry_after_s,
)
from erp_bridge.connectors.runtime.context import ConnectorContext
from erp_bridge.domain import Delivered
from erp_bridge.errors import RejectedError, RetryableError, Throttled
from tests.fakes.zoho_inventory import FakeZoho, zoho_mapping


def response(status, body=b"", headers=None):
    r = requests.Response()
    r.status_code, r._content = status, body
    r.headers = requests.structures.CaseInsensitiveDict(headers or {})
    return r


@pytest.mark.parametrize("status, on_status, action", [
    (409, {"409": "ignore", "4xx": "fail"}, "ignore"),  # exact beats class
    (409, {"4xx": "retry"}, "retry"),  # the class when no exact entry
    (404, {"409": "ignore"}, "fail"),  # built-in: other 4xx fail
    (429, {}, "retry"), (503, {}, "retry"), (500, {"400": "fail"}, "retry"),  # built-in: 429 and 5xx retry
    (429, {"4xx": "fail"}, "fail"),  # 429 is a 4xx: a class entry overrides the built-in retry
    (429, {"4xx": "fail", "429": "retry"}, "retry"),
    (500, {"5xx": "fail"}, "fail"),
    (418, {}, "fail"),
])
def test_action_for_exact_then_class_then_built_in(status, on_status, action):
    assert action_for(status, on_status) == action


@pytest.fixture(scope="module")
def zoho():
    return FakeZoho()  # only its URLs and names: never started


def context_sender(zoho, file_on_status, defaults):
    mapping = zoho_mapping(zoho, on_status=file_on_status)
    ctx = ConnectorContext(mapping, lambda name: "value-of-" + name)
    return ctx.sender(on_status_defaults=defaults)


@pytest.mark.parametrize("file_on_status, defaults, status, action", [
    ({}, {"409": "ignore"}, 409, "ignore"),  # the connector's default applies when the file is silent
    ({"409": "fail"}, {"409": "ignore"}, 409, "fail"),  # the file's exact entry wins over it
    ({}, {"409": "ignore"}, 404, "fail"),  # and the built-in rules below it
    ({"4xx": "retry"}, {}, 404, "retry"),
    ({}, {}, 429, "retry"),
])
def test_the_connectors_defaults_sit_under_the_mapping_file(zoho, file_on_status, defaults, status, action):
    sender = context_sender(zoho, file_on_status, defaults)
    assert action_for(status, sender.on_status) == action


def test_changing_on_status_changes_the_outcome_of_the_same_answer():
    answer = response(409, b'{"code": 1001, "message": "already exists"}')
    outcomes = [classify_response(answer, "POST X", on_status, Redactor()) for on_status in (
        {}, {"409": "retry"}, {"409": "ignore"})]
    assert [type(o) for o in outcomes] == [RejectedError, RetryableError, Delivered]
    assert outcomes[2] == Delivered("ignored HTTP 409 (writes.on_status)")
    assert outcomes[0].status == 409


def test_retry_after_in_seconds_and_as_an_http_date():
    now = 1_700_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True)
    assert retry_after_s("120", lambda: now) == 120
    assert retry_after_s(" 7 ", lambda: now) == 7
    assert retry_after_s(date, lambda: now) == pytest.approx(90)
    assert retry_after_s(format_datetime(datetime.fromtimestamp(now - 60, UTC), usegmt=True), lambda: now) == 0
    assert retry_after_s(None) is None and retry_after_s("") is None and retry_after_s("soon") is None


def test_a_retry_carries_the_targets_retry_after_and_the_vendors_message():
    answer = response(429, b'{"code": 44, "message": "too many"}', {"Retry-After": "60"})
    outcome = classify_response(answer, "POST X", {}, Redactor(), message=lambda r: "Zoho error 44: too many")
    assert isinstance(outcome, Throttled) and outcome.after == 60 and outcome.status == 429
    assert str(outcome) == "HTTP 429 from POST X: Zoho error 44: too many"
    unavailable = classify_response(response(503, b"down", {}), "POST X", {}, Redactor())
    assert type(unavailable) is RetryableError  # only a 429 says "your rate or quota", not "this data"
    cin7 = classify_response(response(503, b"60 calls per minute", {}), "POST X", {}, Redactor(), throttled_on=(429, 503))
    assert type(cin7) is Throttled  # unless the system says it its own way (Cin7 Core's 503)


def test_the_redactor_removes_every_secret_longest_first_and_bounds_the_excerpt():
    redact = Redactor.of(["abc", "abcdef", "", "tok-1"])
    assert redact.values == ("abcdef", "tok-1", "abc")
    assert redact("key=abcdef token=tok-1 short=abc") == "key=*** token=*** short=***"
    assert redact.excerpt("x" * 2000) == "x" * 200 and redact.excerpt("   ") == "(empty body)"
    assert redact.excerpt("a\n  b\tabcdef") == "a b ***"


def test_an_error_excerpt_never_carries_a_secret():
    secret = "1000.secret-token-value"
    answer = response(400, f'{{"message": "bad token {secret}"}}'.encode())
    outcome = classify_response(answer, "POST X", {}, Redactor.of([secret]))
    assert secret not in str(outcome) and "***" in str(outcome)


def test_a_401_carries_the_vendors_own_words_without_a_secret():
    """Some 401s are not a wrong credential (Magento: the integration lacks an API permission): the
    ConfigError says what the vendor said, redacted, besides which secret to check."""
    from erp_bridge.connectors.runtime.sender import Sender
    from erp_bridge.errors import ConfigError

    def said(response: requests.Response) -> str:
        return response.json()["message"]

    response = requests.Response()
    response.status_code = 401
    response._content = b'{"message": "not authorized to access Magento_Sales::sales with tok-123"}'
    sender = Sender("shop", message=said, secret_values=["tok-123"], secret_names="secrets shop_token")
    error = sender._classify(response, "GET /V1/orders", None)
    assert isinstance(error, ConfigError)
    assert str(error) == ("shop refused the credentials (HTTP 401 from GET /V1/orders: not authorized to access "
                          "Magento_Sales::sales with ***): check secrets shop_token")
    plain = Sender("shop", secret_names="secrets shop_token")._classify(response, "GET /V1/orders", None)
    assert str(plain) == "shop refused the credentials (HTTP 401 from GET /V1/orders): check secrets shop_token"


@pytest.mark.parametrize(("value", "expected"), [
    (3, Decimal(3)), ("2.5", Decimal("2.5")), (1.0, Decimal("1.0")), ("-1", Decimal(-1)),
    ("NaN", None), ("Infinity", None), ("-inf", None), ("two", None), (None, None), ("", None), ([1], None),
])
def test_finite_decimal_reads_a_vendor_quantity_or_says_none(value, expected):
    assert finite_decimal(value) == expected
