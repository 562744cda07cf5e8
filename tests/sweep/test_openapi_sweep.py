"""Issue 9: no 5xx, ever, from bad input. A property-based sweep of every route the app's own
OpenAPI document lists (schemathesis), on the real runtime built from the example mappings with
every system's URL on a closed local port (nothing leaves the machine). Bounded: a few dozen
examples per operation, so the whole sweep takes seconds.

The document itself is checked too: validation errors are documented as 400 (never 422), and
``inventoryItemIds`` is a query parameter.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erp_bridge.http.app import create_app
from erp_bridge.runtime import build_runtime
from erp_bridge.settings import load_settings
from tests.integration.test_cli import local_mappings

ADMIN = "adm-sweep-0123"
PULL = "pull-sweep-4567"
SECRETS = {"odoo_user": "u-sweep", "odoo_password": "p-sweep", "odoo_nudge_secret": "n-sweep",
           "shopify_token": "t-sweep", "shopify_webhook_secret": "w-sweep", "sap_b1_user": "su-sweep",
           "sap_b1_password": "sp-sweep", "digital_river_pull_token": PULL, "store_token": PULL}
EXAMPLES = int(os.environ.get("SWEEP_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    config = tmp / "bridge.yaml"
    config.write_text(f"mappings_dir: {local_mappings(tmp)}\ndata_dir: {tmp / 'data'}\n"
                      "workers: {count: 1, poll_interval_s: 0.05, outbox_poll_s: 30}\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("ERP_BRIDGE_ADMIN_TOKEN", ADMIN)
    for name, value in SECRETS.items():
        mp.setenv(f"ERP_BRIDGE_SECRETS__{name.upper()}", value)
    mp.delenv("CREDENTIALS_DIRECTORY", raising=False)
    try:
        runtime = build_runtime(load_settings(config))
    finally:
        mp.undo()
    # schemathesis runs the app's lifespan around each call: the workers are started here instead
    application = create_app(runtime, manage_lifecycle=False)
    runtime.start()
    try:
        yield application
    finally:
        runtime.stop()


#: every route the README lists
README_ROUTES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("POST", "/webhooks/{system}"),
                 ("POST", "/odoo/nudge"), ("POST", "/realtime/{channel}"), ("GET", "/inventory-levels"),
                 ("GET", "/admin/status"), ("GET", "/admin/dead-letters"), ("GET", "/admin/entries/{entry_id}"),
                 ("POST", "/admin/dead-letters/{entry_id}/replay"), ("POST", "/admin/dead-letters/{entry_id}/discard")}


def operations(app) -> list:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def test_the_sweep_covers_every_route(app):
    swept = {(op.method.upper(), op.path) for op in operations(app)}
    assert swept >= README_ROUTES


def test_no_route_answers_5xx_to_any_input(app):
    failures = []
    for operation in operations(app):
        sweep(operation, failures)
    assert not failures, "\n".join(failures[:20])


def sweep(operation, failures: list) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def one(case):
        token = ADMIN if case.path.startswith("/admin") else PULL
        headers = {"Authorization": f"Bearer {token}"} if case.path.startswith(("/admin", "/inventory")) else {}
        response = case.call(headers=headers)
        if response.status_code >= 500 and not (case.path == "/readyz" and response.status_code == 503):
            failures.append(f"{case.method} {case.formatted_path} {case.query or ''} -> "
                            f"{response.status_code}: {response.text[:200]}")
    one()


def test_the_document_says_400_not_422_and_ids_are_a_query_parameter(app):
    doc = TestClient(app).get("/openapi.json").json()
    codes = {code for ops in doc["paths"].values() for op in ops.values() for code in op["responses"]}
    assert "422" not in codes and "400" in codes
    levels = doc["paths"]["/inventory-levels"]["get"]
    assert "requestBody" not in levels
    assert {"name": "inventoryItemIds", "in": "query"}.items() <= next(
        p for p in levels["parameters"] if p["name"] == "inventoryItemIds").items()


def signed(body: bytes, topic: str = "orders/create") -> dict:
    digest = hmac.new(SECRETS["shopify_webhook_secret"].encode(), body, hashlib.sha256).digest()
    return {"X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(), "X-Shopify-Topic": topic,
            "Content-Type": "application/json"}


BIG = str(2 ** 63)


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("GET", f"/admin/entries/{BIG}", {}, 400),
    ("POST", f"/admin/dead-letters/{BIG}/replay", {}, 400),
    ("POST", f"/admin/dead-letters/{BIG}/discard", {"json": {"reason": "x"}}, 400),
    ("GET", "/admin/dead-letters?offset=" + BIG, {}, 400),
    ("GET", "/inventory-levels?inventoryItemIds=a&limit=\u00b2", {}, 400),
    ("POST", "/webhooks/shopify", {"content": b'{"id": 1, "sku": "\xff\xfe"}'}, 400),
    ("POST", "/webhooks/shopify", {"content": b"[" * 1000 + b"]" * 1000}, 400),
    ("POST", "/webhooks/shopify", {"content": b'{"id": 1, "line_items": {"id": 2, "quantity": 1}}'}, 400),
    ("POST", "/webhooks/shopify", {"content": b'{"id": 1, "line_items": [{"id": 2, "sku": "A", "quantity": 1.5}]}'}, 400),
], ids=["entry-id-2^63", "replay-id-2^63", "discard-id-2^63", "offset-2^63", "limit-superscript-two",
        "signed-invalid-utf8", "signed-nested-1000", "signed-line-items-object", "signed-fractional-quantity"])
def test_the_inputs_that_answered_500_answer_4xx_with_a_reason(app, method, path, kwargs, status):
    token = ADMIN if path.startswith("/admin") else PULL
    headers = {"Authorization": f"Bearer {token}"}
    if "content" in kwargs:
        headers = signed(kwargs["content"])
    answer = TestClient(app).request(method, path, headers=headers, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.json()  # a reason, as JSON


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)
ORDERISH = st.fixed_dictionaries({"id": JSON, "line_items": JSON | st.lists(st.dictionaries(
    st.sampled_from(["id", "sku", "quantity", "variant_id", "gift_card"]), JSON), max_size=3)})


@settings(max_examples=EXAMPLES * 4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(payload=JSON | ORDERISH, topic=st.sampled_from(["orders/create", "orders/cancelled", "refunds/create", "x"]),
       raw=st.binary(max_size=64))
def test_signed_webhooks_never_answer_5xx(app, payload, topic, raw):
    client = TestClient(app)
    for body in (json.dumps(payload).encode(), raw):
        answer = client.post("/webhooks/shopify", content=body, headers=signed(body, topic))
        assert answer.status_code in (200, 400), (body[:200], answer.status_code, answer.text[:200])
