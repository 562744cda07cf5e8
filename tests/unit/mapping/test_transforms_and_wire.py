"""The closed transform registry, the generic http_json mapping, the wire JSON, NetSuite field names."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from erp_bridge.domain import StockMove
from erp_bridge.mapping.engine import build_requests
from erp_bridge.mapping.schema import SystemMapping
from erp_bridge.mapping.transforms import TRANSFORMS, TransformError, chain_type
from erp_bridge.mapping.wire import mask, to_json

from .conftest import NOW, REPO, fixed_ids

SPECS = REPO.parent / "shared" / "specs"
T = datetime(2025, 3, 14, 23, 30, tzinfo=timezone(timedelta(hours=2)))

TRANSFORM_CASES = [
    ("upper", "ab-7", "AB-7"), ("lower", "AB", "ab"), ("strip", " a ", "a"),
    ("string", D("1E+2"), "100"), ("string", T, "2025-03-14T21:30:00Z"), ("string", True, "true"),
    ("abs", D(-2), D(2)), ("negate", D(2), D(-2)), ("int", D("3.0"), 3), ("int_text", "12", 12), ("int_floor", D("-0.5"), -1),
    ("date", T, "2025-03-14"), ("datetime_utc", T, "2025-03-14T21:30:00Z"), ("unix_seconds", T, 1741987800),
]


def test_registry_is_closed_and_every_transform_is_tested():
    assert {name for name, _, _ in TRANSFORM_CASES} == set(TRANSFORMS)


@pytest.mark.parametrize("name, given, expected", TRANSFORM_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(TRANSFORM_CASES)])
def test_transform(name, given, expected):
    assert TRANSFORMS[name].fn(given) == expected


def test_int_refuses_a_fraction():
    with pytest.raises(TransformError):
        TRANSFORMS["int"].fn(D("2.5"))


@pytest.mark.parametrize("text", ["WH1", "1.5", ""])
def test_int_text_refuses_text_that_is_no_whole_number(text):
    with pytest.raises(TransformError, match="is not a whole number"):
        TRANSFORMS["int_text"].fn(text)


@pytest.mark.parametrize("start, chain, problem", [
    ("text", ["upper", "strip"], None),
    ("number", ["int", "abs"], None),
    ("number", ["upper"], "transform 'upper' takes text, but gets number"),
    ("text", ["date"], "transform 'date' takes date-time, but gets text"),
    ("date-time", ["date", "upper"], None),
], ids=["text_chain", "integer_is_a_number", "number_to_text_op", "text_to_date_op", "date_then_text"])
def test_chain_types_are_checked_before_anything_runs(start, chain, problem):
    assert chain_type(start, chain)[1] == problem


def test_wire_json_keeps_decimal_digits_and_is_compact():
    body = {"q": D("0.1"), "big": D("12345678901234567890.000001"), "n": None, "s": "007", "l": [1, True]}
    assert to_json(body) == '{"q":0.1,"big":12345678901234567890.000001,"n":null,"s":"007","l":[1,true]}'


def test_mask_hides_every_placeholder():
    assert mask("Bearer {secret:shop_token}; {auth:session}") == "Bearer ***; ***"


def test_http_json_needs_no_requests_items_or_units():
    mapping = SystemMapping.model_validate({
        "version": 1, "system": "custom", "connector": "http_json", "role": "channel",
        "connection": {"base_url": "https://api.example.com", "auth": {"kind": "none"}},
        "limits": {"concurrency": 2, "rate_per_s": 5, "burst": 5},
        "locations": {"map": [{"internal": "WH/Stock", "code": "main"}]},
        "quantity_policy": {"basis": "free"},
    })
    from erp_bridge.mapping.checks import check_mapping
    assert list(check_mapping(mapping, None)) == []
    assert mapping.connection.timeout_s == 10 and mapping.limits.concurrency == 2


def _xsd_names(complex_type: str) -> set[str]:
    ns = {"xsd": "http://www.w3.org/2001/XMLSchema"}
    tree = ET.parse(SPECS / "netsuite-wsdl-2023_2" / "xsd" / "transactions.inventory.xsd")
    node = tree.getroot().find(f"xsd:complexType[@name='{complex_type}']", ns)
    return {e.get("name") for e in node.iter() if e.tag.endswith(("}element", "}attribute"))}


@pytest.mark.skipif(not SPECS.exists(), reason="../shared/specs is not present")
def test_netsuite_body_uses_the_wsdl_field_names(example_set):
    move = StockMove(system="odoo", move_id="9", item="007", quantity=D(1), from_location="Vendors",
                     to_location="WH/Stock", location="WH/Stock", direction="in", occurred_at=NOW)
    body = build_requests(move, example_set.systems["netsuite"], example_set.lookups, now=NOW, new_id=fixed_ids())[0].body
    header, line = _xsd_names("InventoryAdjustment"), _xsd_names("InventoryAdjustmentInventory")
    # the SOAP example: every key is the WSDL's (the connector adds the externalId attribute)
    assert set(body) <= header
    assert set(body["inventoryList"]["inventory"][0]) <= line
    assert "adjustQtyBy" in line and "externalId" in header and "replaceAll" in _xsd_names("InventoryAdjustmentInventoryList")
