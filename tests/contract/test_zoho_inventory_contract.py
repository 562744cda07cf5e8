"""Every request the zoho_inventory connector sends, captured by the double in one realistic
session (moves both ways, a channel sale, a lost answer settled by the reference search, a stock
read), validated by openapi-core against Zoho's own OpenAPI documents in
../shared/specs/zoho-inventory/ (body, path and query parameters, organization_id included), and
no query parameter the operation does not document. The double's answers are validated against
the same documents, so the double cannot drift from what Zoho answers. The token request has no
OpenAPI document there: it is checked against the documented refresh form (vendor-apis.md §4)."""
from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from ruamel.yaml import YAML

from erp_bridge.domain import Decrement, Increment
from tests.fakes.sap_b1 import Fault, move
from tests.fakes.zoho_inventory import (
    API_ROOT,
    SPECS,
    TOKEN_PATH,
    FakeZoho,
    connector_for,
    openapi,
    stocked,
    zoho_mapping,
)

SERVER = "https://www.zohoapis.com/inventory/v1"  # the documents' server
DOCUMENT = {"/inventoryadjustments": "inventoryadjustments.yml", "/itemdetails": "items.yml"}


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    with FakeZoho() as zoho:
        stocked(zoho)
        mapping = zoho_mapping(zoho, role="system_of_record", location_roles={"WH/Stock": "mirror"})
        connector = connector_for(zoho, tmp_path_factory.mktemp("contract"), mapping=mapping)
        connector.post_moves([move("1", quantity="1.5", item="chair-red"), move("2", direction="in", item="007")])
        zoho.fail_next(Fault(drop="after_commit", path="inventoryadjustments"))
        connector.post_moves([move("3")])
        connector.post_moves([move("3")])  # settled by the search
        connector.apply_stock_changes([
            Decrement(channel="shopify", order="1001", line="1", item="chair-red", location="WH2/Stock", quantity=2),
            Increment(channel="shopify", order="1001", line="1", item="chair-red", location="WH2/Stock", quantity=1,
                      reason="return")])
        connector.read_availability([("chair-blue", "WH/Stock"), ("chair-red", "WH2/Stock")])
        connector.close()
        return list(zoho.received)


def api_calls(captured):
    return [r for r in captured if r.path.startswith(API_ROOT + "/")]


def as_request(r) -> requests.PreparedRequest:
    path = r.path[len(API_ROOT):]
    return requests.Request(r.method, SERVER + path, params=r.query, data=r.raw or None,
                            headers={k: v for k, v in r.headers.items() if k.lower() == "content-type"}).prepare()


@cache
def documented_query(name: str, path: str, method: str) -> frozenset[str]:
    """The query parameters Zoho documents for one operation (path level and operation level)."""
    doc = YAML(typ="safe").load((SPECS / name).read_text(encoding="utf-8"))
    item = doc["paths"][path]
    params = [*item.get("parameters", []), *item[method.lower()].get("parameters", [])]
    resolved = [doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p for p in params]
    return frozenset(p["name"] for p in resolved if p["in"] == "query")


def test_the_session_made_every_kind_of_call(captured):
    kinds = {(r.method, r.path) for r in captured}
    assert kinds == {("POST", TOKEN_PATH), ("POST", API_ROOT + "/inventoryadjustments"),
                     ("GET", API_ROOT + "/inventoryadjustments"), ("GET", API_ROOT + "/itemdetails")}
    posts = [r for r in captured if r.method == "POST" and r.path.endswith("inventoryadjustments")]
    assert len(posts) == 5  # moves 1, 2, 3 (answer lost), the sale, the return


def test_every_api_request_is_valid_against_zohos_openapi_documents(captured):
    calls = api_calls(captured)
    assert calls
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Zoho_Auth is an implicit-flow oauth2 scheme
        for r in calls:
            openapi(DOCUMENT[r.path[len(API_ROOT):]]).validate_request(RequestsOpenAPIRequest(as_request(r)))


def test_no_api_request_sends_an_undocumented_query_parameter(captured):
    for r in api_calls(captured):
        path = r.path[len(API_ROOT):]
        documented = documented_query(DOCUMENT[path], path, r.method)
        assert "organization_id" in documented and set(r.query) <= documented, (r.method, path, set(r.query))
        assert r.query["organization_id"] == "20071234567"


def test_the_doubles_answers_are_valid_against_the_same_documents(captured):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for r in [c for c in api_calls(captured) if c.status == 200 or c.status == 201]:
            response = replay(r)
            openapi(DOCUMENT[r.path[len(API_ROOT):]]).validate_response(
                RequestsOpenAPIRequest(as_request(r)), RequestsOpenAPIResponse(response))


def replay(r) -> requests.Response:
    """The double's answer to ``r`` again, on a fresh double in the same state (status 201 -> the
    documented 200: Zoho's documents list only 200 for creates)."""
    with FakeZoho() as zoho:
        stocked(zoho)
        token = requests.post(zoho.token_url, data={"grant_type": "refresh_token", "client_id": zoho.client[0],
                                                    "client_secret": zoho.client[1], "refresh_token": zoho.client[2]},
                              timeout=5).json()["access_token"]
        response = requests.request(r.method, zoho.url + r.path[len(API_ROOT):], params=r.query, data=r.raw or None,
                                    headers={"Authorization": f"Zoho-oauthtoken {token}",
                                             "Content-Type": "application/json"}, timeout=5)
    response.status_code = 200 if response.status_code == 201 else response.status_code
    return response


def test_adjustments_are_quantity_adjustments_with_the_key_and_a_location_per_line(captured):
    posts = [r for r in captured if r.method == "POST" and r.path.endswith("inventoryadjustments")]
    for r in posts:
        assert r.body["adjustment_type"] == "quantity" and r.body["reference_number"]
        assert all(set(line) == {"item_id", "quantity_adjusted", "location_id"} for line in r.body["line_items"])
    assert [p.body["reference_number"] for p in posts] == [
        "odoo:move:1", "odoo:move:2", "odoo:move:3", "shopify:1001:1", "shopify:1001:1:return"]
    assert [p.body["line_items"][0]["quantity_adjusted"] for p in posts] == [-1.5, 1, -1, -2, 1]


def test_every_api_call_carries_the_zoho_oauthtoken_header(captured):
    for r in api_calls(captured):
        assert r.headers["Authorization"].startswith("Zoho-oauthtoken 1000."), r.path


def test_the_token_request_is_the_documented_refresh_form(captured):
    [token] = [r for r in captured if r.path == TOKEN_PATH]
    form = {k: v[0] for k, v in parse_qs(token.raw.decode()).items()}
    assert token.method == "POST" and token.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert set(form) == {"grant_type", "client_id", "client_secret", "refresh_token"}
    assert form["grant_type"] == "refresh_token"


def test_the_token_host_is_the_accounts_server_the_documents_name():
    from erp_bridge.connectors.zoho_inventory import ACCOUNTS

    doc = YAML(typ="safe").load((SPECS / "zoho-inventory-authentication.yml").read_text(encoding="utf-8"))
    [scheme] = doc["schemes"]
    authorize = scheme["flows"][0]["authorizationUrl"]
    assert authorize == "https://accounts.zoho.com/oauth/v2/auth"
    assert f"https://{ACCOUNTS['com']}/oauth/v2/token" == authorize.replace("/auth", "/token")


def test_the_specs_are_where_the_tests_read_them():
    assert Path(SPECS / "inventoryadjustments.yml").is_file() and Path(SPECS / "items.yml").is_file()
