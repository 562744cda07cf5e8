"""Every request the SFCC connector sends, checked against the vendor's contract:

- getOrders against ``../shared/specs/sfcc-oci/orders-oas-v1-public.yaml`` (openapi-core: path,
  every query parameter, ``siteId`` required, ``limit`` <= 200, offset + limit <= 10000);
- the OCI batch-update against the documented fields of "OCI Batch Update Single Input" (Connect
  REST API v62; no machine-readable OCI spec is public, see tests/fakes/sfcc_spec.py);
- the token request against Account Manager's client-credentials flow (the OAS's
  ``AmOAuth2.flows.clientCredentials.tokenUrl``; Basic client authentication; the tenant scope).
The connector runs against a recording double; the checks here are independent of the fake's own.
"""
from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import yaml

from erp_bridge.domain import Figure
from tests.fakes import sfcc_spec
from tests.fakes.sfcc import BATCH_PATH, CLIENT_ID, CLIENT_SECRET, ORDERS_PATH, TENANT, FakeSfcc, connector_for

pytestmark = [pytest.mark.skipif(not sfcc_spec.available(), reason="../shared/specs/sfcc-oci is not beside the repo"),
              pytest.mark.filterwarnings("ignore:Unsupported scheme type")]


@pytest.fixture
def exercised(tmp_path):
    """The connector pushing a batch and polling two pages of orders; the double's record of it."""
    with FakeSfcc() as fake:
        connector = connector_for(fake, tmp_path / "m")
        connector.push_availability([Figure("chair-blue", "WH/Stock", Decimal("4.5")),
                                     Figure("stool", "WH/Stock", Decimal(0))])
        connector.commit_poll(connector.poll_changes())
        start = datetime.now(UTC) + timedelta(seconds=1)
        for n in range(sfcc_spec.MAX_RECORDS * 2 + 50):
            fake.place(f"{n:08d}", {"stool": 1}, at=start + timedelta(milliseconds=n))
        connector.commit_poll(connector.poll_changes())
        connector.close()
        yield fake


def test_every_orders_request_conforms_to_the_orders_oas(exercised):
    gets = [(path, query) for method, path, query in exercised.received if method == "GET"]
    assert len(gets) >= 3 and all(path == ORDERS_PATH for path, _ in gets)
    for path, query in gets:
        assert sfcc_spec.orders_request_violations(path, query, {}) == [], query
        assert query["siteId"] == "RefArch" and int(query["limit"]) <= 200


def test_every_batch_update_conforms_to_the_documented_fields(exercised):
    posts = [body for method, path, body in exercised.received if method == "POST" and path == BATCH_PATH]
    assert posts
    for body in posts:
        assert sfcc_spec.batch_update_violations(body) == []
        for record in body["records"]:
            assert isinstance(record["onHand"], (int, float)) and record["onHand"] >= 0
            assert datetime.fromisoformat(record["effectiveDate"].replace("Z", "+00:00")).tzinfo is not None


def test_the_token_request_is_account_managers_client_credentials_grant(exercised):
    spec = yaml.safe_load(sfcc_spec.ORDERS_OAS.read_text())
    flow = spec["components"]["securitySchemes"]["AmOAuth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "https://account.demandware.com/dwsso/oauth2/access_token"
    (request,) = exercised.token_requests  # one token served the whole run (cached until expiry)
    assert request["form"]["grant_type"] == "client_credentials"
    scopes = request["form"]["scope"].split()
    assert f"SALESFORCE_COMMERCE_API:{TENANT}" in scopes and set(scopes) & set(flow["scopes"])
    assert request["authorization"] == "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


def test_the_example_mapping_path_is_the_oci_availability_family():
    mapping = yaml.safe_load(open("mappings/sfcc.yaml"))
    path = mapping["requests"]["set_on_hand"]["path"]
    assert path.startswith("/inventory/availability/v1/organizations/")
    assert path.endswith("/availability-records/actions/batch-update")
    assert mapping["connection"]["auth"]["token_url"] == "https://account.demandware.com/dwsso/oauth2/access_token"


def test_the_validators_refuse_what_the_vendor_refuses():
    assert sfcc_spec.orders_request_violations(ORDERS_PATH, {"limit": "500"}, {})  # no siteId, limit too high
    assert sfcc_spec.orders_request_violations(ORDERS_PATH, {"siteId": "RefArch", "offset": "9900", "limit": "200"}, {})
    assert sfcc_spec.batch_update_violations({"records": [{"sku": "x", "onHand": 1}]})
    assert sfcc_spec.batch_update_violations({"records": [{"stockKeepingUnit": "x", "locationIdentifier": "l",
                                                           "actionRequestId": "a", "onHand": "1"}]})
