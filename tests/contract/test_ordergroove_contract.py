"""Every request the Ordergroove connector sends, checked against the documented fields in
../shared/specs/ordergroove (no machine-readable spec exists; tests/contract/ordergroove_docs.py
quotes the sentences this rests on):

- Real Time Stock Update guide: "PATCH Update Endpoint https://restapi.ordergroove.com/products-batch/update/",
  headers ``'authorization': '{"public_id": "<MERCHANT_PUBLIC_ID>", "ts": <SECONDS_SINCE_EPOCH>,
  "sig_field": "<MERCHANT_LEVEL_ID>", "sig": "<HMAC_SIGNATURE>"}'``, ``'og-authorization': True``,
  ``'content-type': 'application/json'``; body ``[{"product_id": "(external product id)", "live": false}]``,
  "You can also include multiple products in the same request."
- Authentication reference: the string signed is ``customer_id|timestamp`` (here the merchant level
  id), "HMAC-SHA256, Base64 encoded", "This signature is valid for **2 hours**."
- Bulk Update reference: "200 for success. 404 for not found. 400 for error.", "Requests are
  throttled at 600req/min."; at most 100 products a request (PROVENANCE.md, vendor-apis.md).
"""
from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from erp_bridge.domain import Figure
from tests.contract.ordergroove_docs import (
    SPECS,
    auth_problems,
    expected_sig,
    missing_quotes,
    request_problems,
)
from tests.fakes.ordergroove import HASH_KEY, PUBLIC_ID, SIG_FIELD, FakeOrdergroove, connector_for, og_mapping

pytestmark = pytest.mark.skipif(not SPECS.is_dir(), reason="../shared/specs/ordergroove is not beside the repo")
GOOD = {"content-type": "application/json"}


def test_the_docs_still_say_what_the_contract_rests_on():
    assert missing_quotes() == []


@pytest.mark.parametrize("method, path, body, problem", [
    ("POST", "/products-batch/update/", b'[{"product_id": "1", "live": false}]', "is not PATCH"),
    ("PATCH", "/products-batch/update", b'[{"product_id": "1", "live": false}]', "is not PATCH"),
    ("PATCH", "/products-batch/update/", b'{"product_id": "1", "live": false}', "non-empty JSON array"),
    ("PATCH", "/products-batch/update/", b"[]", "non-empty JSON array"),
    ("PATCH", "/products-batch/update/", b'[{"product_id": 1, "live": false}]', "needs product_id (a string"),
    ("PATCH", "/products-batch/update/", b'[{"product_id": "1", "live": "false"}]', "live has the wrong type"),
    ("PATCH", "/products-batch/update/", b'[{"product_id": "1", "in_stock": false}]', "in_stock is not a documented"),
    ("PATCH", "/products-batch/update/", json.dumps([{"product_id": str(n), "live": False} for n in range(101)]).encode(),
     "101 products in one request (at most 100)"),
], ids=["POST", "no trailing slash", "object", "empty", "numeric id", "string live", "unknown field", "101"])
def test_the_validator_refuses_what_the_docs_do_not_allow(method, path, body, problem):
    assert any(problem in p for p in request_problems(method, path, GOOD, body))


def test_the_signature_check_refuses_forged_stale_and_incomplete_headers():
    ts = int(time.time())
    good = {"og-authorization": "True", "authorization": json.dumps(
        {"public_id": PUBLIC_ID, "ts": ts, "sig_field": SIG_FIELD, "sig": expected_sig(HASH_KEY, SIG_FIELD, ts)})}
    assert auth_problems(good, PUBLIC_ID, SIG_FIELD, HASH_KEY) == []
    stale = json.loads(good["authorization"]) | {"ts": ts - 7300, "sig": expected_sig(HASH_KEY, SIG_FIELD, ts - 7300)}
    cases = {"forged": {**good, "authorization": good["authorization"].replace('"sig": "', '"sig": "x')},
             "stale": {**good, "authorization": json.dumps(stale)},
             "no og-authorization": {"authorization": good["authorization"]},
             "string ts": {**good, "authorization": good["authorization"].replace(f'"ts": {ts}', f'"ts": "{ts}"')}}
    assert {name: bool(auth_problems(h, PUBLIC_ID, SIG_FIELD, HASH_KEY)) for name, h in cases.items()} == \
        dict.fromkeys(cases, True)


def test_every_request_the_connector_sends_follows_the_docs(tmp_path):
    with FakeOrdergroove() as og:
        mapping = og_mapping(og)
        skus = {f"sku-{n}": f"{9000 + n}" for n in range(130)}
        for sku, code in skus.items():
            mapping.items.overrides.append(mapping.items.overrides[0].model_copy(update={"sku": sku, "code": code}))
            og.live[code] = True
        connector = connector_for(og, tmp_path, mapping=mapping)
        for quantity in (0, 9, 1):  # off, back on, off again: every request shape the connector makes
            connector.push_availability([Figure(s, "WH/Stock", Decimal(quantity)) for s in [*skus, "chair-blue"]])
        assert len(og.received) == 6
        for r in og.received:
            assert request_problems(r.method, r.path, r.headers, r.body) == []
            assert auth_problems(r.headers, PUBLIC_ID, SIG_FIELD, HASH_KEY) == []
            assert {k.lower() for k in r.headers} >= {"authorization", "og-authorization", "content-type"}
            assert all(set(item) == {"product_id", "live"} for item in json.loads(r.body))
        assert [len(json.loads(r.body)) for r in og.received] == [100, 31] * 3
