"""The binder: one place for SKU/location <-> a system's ids, over the example mappings."""
from __future__ import annotations

import pytest

from erp_bridge.errors import RejectedError
from erp_bridge.mapping.binder import Binder
from erp_bridge.mapping.compile import UnmappedError


@pytest.fixture
def sap(example_set):
    return Binder(example_set.systems["sap_b1"])


@pytest.fixture
def shopify(example_set):
    return Binder(example_set.systems["shopify"], example_set.lookups["shopify"])


def test_item_code_goes_override_then_table_then_rule(sap, shopify, example_set):
    override = example_set.systems["sap_b1"].items.overrides[0]
    assert sap.item_code(override.sku) == override.code
    assert sap.item_code("desk-oak") == "DESK-OAK"  # the rule: upper
    sku, code = next(iter(example_set.lookups["shopify"].codes.items()))
    assert shopify.item_code(sku) == code
    with pytest.raises(UnmappedError, match="has no shopify id"):
        shopify.item_code("not-in-the-table")  # unlisted: error


def test_reverse_lookups(sap, shopify, example_set):
    sku, code = next(iter(example_set.lookups["shopify"].codes.items()))
    assert shopify.sku_of(code) == sku and shopify.sku_of("999") is None
    assert sap.sku_of("DESK-OAK") is None  # a transformed rule cannot be reversed: no guess
    override = example_set.systems["sap_b1"].items.overrides[0]
    assert sap.sku_of(override.code) == override.sku


def test_locations_both_ways(sap):
    code = sap.location_code("WH/Stock")
    assert code is not None and sap.internal_location(code) == "WH/Stock"
    assert sap.location_code("Nowhere/Stock") is None
    assert sap.codes("desk-oak", "WH/Stock") == {"location_code": code, "item_code": "DESK-OAK"}


def test_channel_sku_refuses_what_the_channel_does_not_list(shopify, example_set):
    sku = next(iter(example_set.lookups["shopify"].codes))
    assert shopify.channel_sku(sku) == sku
    with pytest.raises(RejectedError, match="SKU 'ghost' is not listed for shopify"):
        shopify.channel_sku("ghost")
    with pytest.raises(RejectedError, match="line has no SKU"):
        shopify.channel_sku("variant:123")
