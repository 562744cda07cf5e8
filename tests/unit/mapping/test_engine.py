"""The pure engine on small inline mappings: one behaviour per test, tables where they read well."""
from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from erp_bridge.domain import AvailabilityChanged, Count, Decrement, Figure, StockMove
from erp_bridge.errors import MappingError
from erp_bridge.mapping.compile import auth_headers
from erp_bridge.mapping.engine import UnmappedError, build_requests
from erp_bridge.mapping.lookups import LookupTable
from erp_bridge.mapping.schema import Auth, SystemMapping

from .conftest import NOW, fixed_ids

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def mapping(**over) -> SystemMapping:
    data = {
        "version": 1, "system": "erp", "connector": "http_json", "role": "mirror",
        "connection": {"base_url": "https://erp.example.com/api", "auth": {"kind": "bearer", "secrets": {"token": "erp_token"}}},
        "locations": {"map": [{"internal": "WH/Stock", "code": "01", "attrs": {"site": "S1"}}]},
        "requests": {"move": {"on": ["move_in", "move_out", "count", "decrement"], "method": "POST",
                              "path": "/moves/{key}", "body": {"sku": {"field": "item_code"},
                                                               "qty": {"field": "signed_quantity"}}}},
    }
    data.update(over)
    return SystemMapping.model_validate(data)


def move(**kw) -> StockMove:
    base = dict(system="odoo", move_id="1", item="007", quantity=D(3), from_location="WH/Stock",
                to_location="Customers", location="WH/Stock", direction="out", occurred_at=T0)
    return StockMove(**{**base, **kw})


def run(event, m=None, lookups=None):
    return build_requests(event, m or mapping(), lookups, now=NOW, new_id=fixed_ids())


def body_of(node, event=None, m_over=None) -> object:
    spec = {"on": ["move_out"], "method": "POST", "path": "/x", "body": {"v": node}}
    return run(event or move(), mapping(requests={"r": spec}, **(m_over or {})))[0].body["v"]


def test_sku_with_leading_zeros_stays_a_string():
    assert run(move())[0].body == {"sku": "007", "qty": D(-3)}


@pytest.mark.parametrize("node, expected", [
    ({"field": "quantity"}, D(3)),
    ({"field": "signed_quantity"}, D(-3)),
    ({"field": "uom"}, None),
    ({"field": "uom", "if_null": "omit"}, "<omitted>"),
    ({"const": 0}, 0),
    ({"const": None}, None),
    ("0", "0"),
    ({"field": "location_code"}, "01"),
    ({"field": "attr.site"}, "S1"),
    ({"format": "{origin_system}/{move_id}"}, "odoo/1"),
    ({"field": "occurred_at", "transform": ["date"]}, "2025-03-14"),
    ({"field": "now", "transform": ["datetime_utc"]}, "2025-03-14T10:00:00Z"),
    ({"field": "quantity", "transform": ["negate", "string"]}, "-3"),
    ({"list": [{"field": "item"}, 1]}, ["007", 1]),
    ({"object": {"a": {"field": "key"}}}, {"a": "odoo:move:1"}),
    ({"lines": {"q": {"field": "quantity"}}}, [{"q": D(3)}]),
], ids=["quantity", "signed", "null_kept", "null_omitted", "zero_const", "null_const", "quoted_zero_is_text",
        "location_code", "location_attr", "format", "date", "now_injected", "transform_chain", "list", "object",
        "lines"])
def test_body_nodes(node, expected):
    spec = {"on": ["move_out"], "method": "POST", "path": "/x", "body": {"v": node}}
    body = run(move(), mapping(requests={"r": spec}))[0].body
    assert body.get("v", "<omitted>") == expected


def test_count_of_zero_is_sent_as_zero_not_null():
    count = Count(system="pos", item="007", location="WH/Stock", quantity=D(0), reference="c1", occurred_at=T0)
    assert run(count)[0].body["qty"] == D(0)


@pytest.mark.parametrize("units, event, expected", [
    ({}, move(quantity=D("2.5")), D("2.5")),
    ({"default": {"factor": 2}}, move(), D(6)),
    ({"uoms": {"Dozens": {"factor": 12}}}, move(uom="Dozens"), D(36)),
    ({"uoms": {"Dozens": {"factor": 12}}, "items": {"007": {"factor": 1}}}, move(uom="Dozens"), D(3)),
    ({"default": {"rounding": 1, "mode": "half_up"}}, move(quantity=D("2.5")), D(3)),
    ({"default": {"rounding": 1, "mode": "half_even"}}, move(quantity=D("2.5")), D(2)),
    ({"default": {"rounding": 1, "mode": "down"}}, move(quantity=D("2.9")), D(2)),
    ({"default": {"rounding": 1, "mode": "up"}}, move(quantity=D("2.1")), D(3)),
    ({"default": {"rounding": "0.5"}}, move(quantity=D("2.2")), D("2.0")),
], ids=["exact_by_default", "factor", "by_uom", "item_wins_over_uom", "half_up", "half_even", "down", "up",
        "to_half_units"])
def test_units(units, event, expected):
    assert body_of({"field": "quantity"}, event, {"units": units}) == expected


def test_items_override_then_lookup_then_rule():
    m = mapping(items={"transform": ["upper"], "overrides": [{"sku": "a", "code": "OVR"}]})
    table = LookupTable("t.csv", {"a": "ROW-A", "b": "ROW-B"})
    codes = [run(move(item=sku), m, {"erp": table})[0].body["sku"] for sku in ("a", "b", "c")]
    assert codes == ["OVR", "ROW-B", "C"]


def test_unlisted_item_is_refused_when_the_mapping_says_so():
    m = mapping(items={"overrides": [{"sku": "a", "code": "1"}], "unlisted": "error"})
    with pytest.raises(UnmappedError, match="item '007' has no erp id"):
        run(move(), m)


def test_unknown_location_is_refused():
    with pytest.raises(UnmappedError, match="location 'WH9/Stock' is not mapped in erp"):
        run(move(location="WH9/Stock"))


def test_fraction_for_an_integer_field_is_an_error_not_a_silent_round():
    with pytest.raises(UnmappedError, match="2.5 is not a whole number"):
        body_of({"field": "quantity", "transform": ["int"]}, move(quantity=D("2.5")))


def test_null_in_text_is_an_error():
    with pytest.raises(UnmappedError, match="field 'uom' is null"):
        body_of({"format": "u={uom}"})


def test_event_kind_without_request_is_a_mapping_error():
    inc = Decrement(channel="shop", order="9", line="1", item="007", location="WH/Stock", quantity=D(1))
    m = mapping(requests={"r": {"on": ["move_out"], "method": "POST", "path": "/x"}})
    with pytest.raises(MappingError, match="no request in the mapping handles decrement events"):
        run(inc, m)


def test_availability_event_needs_a_figure():
    with pytest.raises(TypeError, match="compute it with channel_quantity"):
        run(AvailabilityChanged(system="odoo", item="007", location="WH/Stock"))


def test_url_slots_and_query_are_encoded():
    spec = {"on": ["move_out"], "method": "GET", "path": "/items/{item}/x",
            "query": {"loc": {"field": "location"}, "skip": {"const": None}}}
    request = run(move(item="a b/c"), mapping(requests={"r": spec}))[0]
    assert request.url == "https://erp.example.com/api/items/a%20b%2Fc/x?loc=WH%2FStock"
    assert request.body is None and "Content-Type" not in request.headers


def test_lines_batch_by_batch_size_and_other_requests_go_one_per_event():
    lines = {"on": ["move_out"], "method": "POST", "path": "/doc", "body": {"k": {"field": "key"},
                                                                           "l": {"lines": {"m": {"field": "move_id"}}}}}
    single = {"on": ["move_in"], "method": "POST", "path": "/one", "body": {"m": {"field": "move_id"}}}
    m = mapping(requests={"doc": lines, "one": single}, writes={"batch_size": 2})
    events = [move(move_id=str(i)) for i in range(3)] + [move(move_id=str(i), direction="in") for i in (7, 8)]
    requests = run(events, m)
    assert [(r.name, r.key, r.body) for r in requests] == [
        ("doc", "odoo:move:0+1", {"k": "odoo:move:0", "l": [{"m": "0"}, {"m": "1"}]}),
        ("doc", "odoo:move:2", {"k": "odoo:move:2", "l": [{"m": "2"}]}),
        ("one", "odoo:move:7", {"m": "7"}),
        ("one", "odoo:move:8", {"m": "8"}),
    ]
    assert requests[0].keys == ("odoo:move:0", "odoo:move:1")


def test_figure_rounds_down_and_keeps_unknown_previous_as_null():
    spec = {"on": ["availability"], "method": "POST", "path": "/x",
            "body": {"q": {"field": "quantity"}, "p": {"field": "previous"}, "low": {"field": "low_stock"}}}
    m = mapping(role="channel", quantity_policy={"basis": "free", "low_stock_threshold": 3},
                requests={"r": spec}, units={"default": {"factor": "0.5", "rounding": 1, "mode": "half_up"}})
    body = run(Figure("007", "WH/Stock", D(5)), m)[0].body
    assert body == {"q": D(2), "p": None, "low": True}


def test_new_id_is_called_once_per_request_and_only_when_used():
    calls = []
    spec = {"on": ["move_out"], "method": "POST", "path": "/x", "body": {"a": {"field": "id"}, "b": {"field": "id"}}}
    requests = build_requests([move(), move(move_id="2")], mapping(requests={"r": spec}), None, now=NOW,
                              new_id=lambda: calls.append(1) or f"id{len(calls)}")
    assert [r.body for r in requests] == [{"a": "id1", "b": "id1"}, {"a": "id2", "b": "id2"}]
    build_requests(move(), mapping(), None, now=NOW, new_id=lambda: calls.append(1) or "x")
    assert len(calls) == 2


def test_same_input_same_output_and_nothing_mutated():
    m, event = mapping(), move()
    before = copy.deepcopy(m.model_dump())
    assert run(event, m) == run(event, m)
    assert m.model_dump() == before


@pytest.mark.parametrize("auth, headers", [
    ({"kind": "none"}, {}),
    ({"kind": "bearer", "secrets": {"token": "t"}}, {"Authorization": "Bearer {secret:t}"}),
    ({"kind": "header", "header": "X-Shopify-Access-Token", "secrets": {"token": "s"}},
     {"X-Shopify-Access-Token": "{secret:s}"}),
    ({"kind": "basic"}, {"Authorization": "Basic {auth:basic}"}),
    ({"kind": "oauth2_refresh_token", "prefix": "Zoho-oauthtoken "}, {"Authorization": "Zoho-oauthtoken {auth:oauth2}"}),
    ({"kind": "session_login"}, {"Cookie": "{auth:session}"}),
    ({"kind": "oauth1_tba"}, {"Authorization": "{auth:oauth1}"}),
], ids=["none", "bearer", "header", "basic", "oauth2_prefix", "session", "tba"])
def test_auth_headers_are_placeholders_never_values(auth, headers):
    assert auth_headers(Auth.model_validate(auth)) == headers
