"""Every request the Cin7 Core connector sends, checked against Cin7's own API Blueprint
(../shared/specs/cin7-core/dearinventory.apib), parsed here (tests/fakes/cin7_blueprint.py): the
endpoints and query parameters its URI templates name, the stock adjustment's fields and required
fields from its tables, the date format, the page size bounds, the two auth headers, and the
status it gives for the 60-calls-a-minute limit."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from erp_bridge.connectors.cin7_core import AUTH_HEADERS, CALLS_PER_MINUTE
from erp_bridge.connectors.cin7_core.connector import LIMIT, RATE_LIMITED_STATUS, cin7_time
from erp_bridge.domain import Figure
from tests.fakes import cin7_blueprint as blueprint
from tests.fakes.cin7_core import ACCOUNT_ID, APPLICATION_KEY, FakeCin7, connector_for

pytestmark = pytest.mark.skipif(not blueprint.available(), reason="../shared/specs/cin7-core is not beside the repo")
ENDPOINTS = {("GET", "/ExternalApi/v2/saleList"): "saleList", ("GET", "/ExternalApi/v2/sale"): "sale",
             ("POST", "/ExternalApi/v2/stockadjustment"): None}


def test_the_blueprint_is_read_and_states_what_the_connector_relies_on():
    assert blueprint.auth_headers() == list(AUTH_HEADERS)
    assert blueprint.rate_limit_status() == RATE_LIMITED_STATUS == 503 and CALLS_PER_MINUTE < 60
    assert blueprint.page_limit() == (1, 1000) and LIMIT <= 1000
    assert {"UpdatedSince", "Page", "Limit"} <= blueprint.query_params("saleList")
    fields = blueprint.adjustment_fields()
    assert {n for n, f in fields.items() if f.required} == {"EffectiveDate", "Status", "Lines"}
    assert blueprint.line_fields()["Quantity"].required and "New value for QuantityOnHand" in blueprint.section(
        "## New Stock Line Model")
    assert "yyyy-MM-ddTHH:mm:ss.fff" in blueprint.section("## Date Format")


@pytest.mark.parametrize("body, problem", [
    ({"Status": "COMPLETED", "Lines": [{"SKU": "A", "Location": "L", "Quantity": 1, "UnitCost": 0}]},
     "missing required EffectiveDate"),
    ({"EffectiveDate": "2026-11-30T10:00:00Z", "Status": "VOIDED", "Lines": []}, "Status must be DRAFT or COMPLETED"),
    ({"EffectiveDate": "30/11/2026", "Status": "DRAFT", "Lines": []}, "is not yyyy-MM-ddTHH:mm:ss.fff"),
    ({"EffectiveDate": "2026-11-30T10:00:00Z", "Status": "DRAFT", "Lines": [{"SKU": "A", "Quantity": 1, "UnitCost": 0}]},
     "needs LocationID or Location"),
    ({"EffectiveDate": "2026-11-30T10:00:00Z", "Status": "DRAFT",
      "Lines": [{"SKU": "A", "Location": "L", "Quantity": "1", "UnitCost": 0}]}, "Quantity must be a Decimal"),
    ({"EffectiveDate": "2026-11-30T10:00:00Z", "Status": "DRAFT", "Stock": 1,
      "Lines": [{"SKU": "A", "Location": "L", "Quantity": 1, "UnitCost": 0}]}, "unknown field Stock"),
], ids=["no date", "void status", "date format", "no location", "string quantity", "unknown field"])
def test_the_checker_refuses_what_the_blueprint_does_not_allow(body, problem):
    assert any(problem in p for p in blueprint.adjustment_problems(body))


def test_every_request_the_connector_sends_follows_the_blueprint(tmp_path):
    with FakeCin7() as fake:
        connector = connector_for(fake, tmp_path)
        connector.commit_poll(connector.poll_changes())
        sale = fake.cin7.sell([("CHR-BLU", 1)])
        connector.commit_poll(connector.poll_changes())
        time.sleep(0.01)
        fake.cin7.credit(sale, [("CHR-BLU", 1)])
        connector.commit_poll(connector.poll_changes())
        connector.push_availability([Figure("chair-blue", "WH/Stock", Decimal("4")),
                                     Figure("chair-red", "WH/Stock", Decimal("1.25"))])
        connector.close()
    assert fake.cin7.violations == []
    assert {(m, p) for m, p, *_ in fake.cin7.requests} == set(ENDPOINTS)
    for method, path, query, body, headers in fake.cin7.requests:
        assert (headers["api-auth-accountid"], headers["api-auth-applicationkey"]) == (ACCOUNT_ID, APPLICATION_KEY)
        resource = ENDPOINTS[(method, path)]
        if resource is not None:
            assert set(query) <= blueprint.query_params(resource), (path, query)
            assert all(blueprint.date_ok(v[0]) for k, v in query.items() if k.endswith("Since"))
        else:
            assert blueprint.adjustment_problems(body) == []


def test_the_date_format_is_the_blueprints():
    from datetime import UTC, datetime
    assert cin7_time(datetime(2026, 11, 30, 9, 5, 7, 123456, tzinfo=UTC)) == "2026-11-30T09:05:07.123"
    assert blueprint.date_ok(cin7_time(datetime.now(UTC)))
