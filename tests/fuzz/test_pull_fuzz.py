"""Hypothesis-generated requests to both pull endpoints through the app: never a 5xx, and the
protocol's promises hold whatever arrives (real-time: 200 or 400, Available always an integer;
inventory levels: 200, 400 or 401 with a JSON body)."""
from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.pull.harness import TOKEN, make_app

FIELDS = [".catalog", ".code", ".id", ".quantity", ".price", "Color", "Size", "color", ".other", ""]
CODES = ["CHAIR-BLUE", "TSHIRT", "BOND-CHAIR", "_fake_yahoo_code_", "_fake_yahoo_item_", ""]
IDS = ["310abe81-69f6-44e5-85df-2674045e5460", "ce4ce2de-530c-4da2-bf8a-f0f8cf059095", ""]
text = st.text(max_size=40)
values = st.one_of(st.sampled_from(CODES + ["Sea Green", "L", "1", "-3", "1e9", "NaN", "∞", "0x10"]), text)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    h = make_app(tmp_path_factory.mktemp("fuzz"))
    h.sor.free.update({("chair-blue", "WH/Stock"): Decimal(3), ("TS-SG-L", "WH/Stock"): Decimal(2),
                       ("chair-red", "WH2/Stock"): Decimal(1)})
    return h


@FUZZ
@given(pairs=st.lists(st.tuples(st.one_of(st.sampled_from(FIELDS), text), values), max_size=12),
       raw=st.one_of(st.none(), st.binary(max_size=200)),
       channel=st.sampled_from(["yahoo_store", "digital_river", "nope", "yahoo_store%00"]))
def test_realtime_never_5xx(app, pairs, raw, channel):
    body = raw if raw is not None else urlencode(pairs).encode()
    response = app.client.post(f"/realtime/{channel}", content=body,
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code in (200, 400, 404)
    int(response.headers["Available"])  # the store parses it
    assert "\n" not in response.headers["Inventory-Message"]


@FUZZ
@given(ids=st.lists(st.one_of(st.sampled_from(IDS), text), max_size=6),
       params=st.dictionaries(st.sampled_from(["shipToCountry", "available", "updatedSince", "limit",
                                               "startingAfter", "other"]),
                              st.one_of(st.sampled_from(["SE", "se", "XX", "true", "false", "1", "0", "101",
                                                         "2021-01-12T06:55:14Z", "2021-01-12", IDS[0]]), text)),
       auth=st.sampled_from([f"Bearer {TOKEN}", f"Bearer {TOKEN}", "Bearer x", "", f"bearer  {TOKEN}"]))
def test_inventory_levels_never_5xx(app, ids, params, auth):
    query = [("inventoryItemIds", ",".join(ids))] if ids else []
    response = app.client.get("/inventory-levels?" + urlencode(query + list(params.items())),
                              headers={"Authorization": auth} if auth else {})
    assert response.status_code in (200, 400, 401)
    body = response.json()
    if response.status_code == 200:
        assert all(level["availableQuantity"] >= 0 for level in body["data"])
