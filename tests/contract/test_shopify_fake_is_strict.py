"""Issue 9: the Shopify double refuses what Shopify refuses, so a test that passes against it means
something. Documents run against Shopify's own 2026-04 schema; inventorySetQuantities' own rules
answer with the schema's user-error codes."""
from __future__ import annotations

import json

import pytest
import requests

from tests.fakes.shopify import API_VERSION, ITEMS, LOCATION, TOKEN, USER_ERROR_CODES, FakeShopify, real_schema

BLUE, RED = ITEMS["chair-blue"], ITEMS["chair-red"]
SET = ("mutation Set($input: InventorySetQuantitiesInput!, $key: String!) { "
       "inventorySetQuantities(input: $input) @idempotent(key: $key) { userErrors { code field message } } }")


@pytest.fixture(scope="module")
def shop():
    with FakeShopify(TOKEN) as s:
        s.stock(BLUE, LOCATION, 3)
        s.stock(RED, LOCATION, 7)
        yield s


def post(shop, query: str, variables: dict) -> dict:
    answer = requests.post(f"{shop.url}/admin/api/{API_VERSION}/graphql.json", data=json.dumps({"query": query, "variables": variables}),
                           headers={"X-Shopify-Access-Token": TOKEN, "Content-Type": "application/json"}, timeout=10)
    return answer.json()


def row(item=BLUE, quantity=5, base=3, **extra) -> dict:
    return {"inventoryItemId": item, "locationId": LOCATION, "quantity": quantity, "changeFromQuantity": base, **extra}


def set_input(rows, name="available", reason="correction", **extra) -> dict:
    return {"name": name, "reason": reason, "quantities": rows, **extra}


def test_the_error_codes_are_the_schemas_all_sixteen():
    values = set(real_schema().type_map["InventorySetQuantitiesUserErrorCode"].values)
    assert values == USER_ERROR_CODES and len(values) == 16


@pytest.mark.parametrize("variables, says", [
    ({"input": set_input([row()], ignoreCompareQuantity=True)}, "ignoreCompareQuantity"),
    ({"input": set_input([row(compareQuantity=3)])}, "compareQuantity"),
    ({"input": set_input([row(quantity=2 ** 31)])}, "Int cannot represent non 32-bit signed integer"),
], ids=["ignoreCompareQuantity-is-gone-in-2026-04", "compareQuantity-is-gone-in-2026-04", "beyond-graphql-int"])
def test_inputs_the_2026_04_schema_does_not_have_are_refused(shop, variables, says):
    before = dict(shop.levels)
    answer = post(shop, SET, {**variables, "key": "k-" + says})
    assert says in json.dumps(answer.get("errors")), answer
    assert not (answer.get("data") or {}).get("inventorySetQuantities") and shop.levels == before


@pytest.mark.parametrize("input_, code", [
    (set_input([row()], name="availble"), "INVALID_NAME"),
    (set_input([row()], reason="because"), "INVALID_REASON"),
    (set_input([row(), row(quantity=6)]), "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR"),
    (set_input([row(RED, quantity=1_000_000_001, base=7)]), "INVALID_QUANTITY_TOO_HIGH"),
    (set_input([row(RED, quantity=-1_000_000_001, base=7)]), "INVALID_QUANTITY_TOO_LOW"),
], ids=["misspelt-name", "invalid-reason", "same-item-and-location-twice", "too-high", "too-low"])
def test_what_inventory_set_quantities_refuses_gets_its_code_and_changes_nothing(shop, input_, code):
    before = dict(shop.levels)
    answer = post(shop, SET, {"input": input_, "key": f"k-{code}"})
    codes = [e["code"] for e in answer["data"]["inventorySetQuantities"]["userErrors"]]
    assert code in codes and shop.levels == before


def test_a_key_reused_with_other_arguments_is_a_mismatch(shop):
    first = post(shop, SET, {"input": set_input([row(RED, quantity=8, base=7)]), "key": "reused"})
    assert first["data"]["inventorySetQuantities"]["userErrors"] == []
    again = post(shop, SET, {"input": set_input([row(RED, quantity=9, base=8)]), "key": "reused"})
    assert [e["code"] for e in again["data"]["inventorySetQuantities"]["userErrors"]] == [
        "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"]
