"""What the Shopify connector sends, checked against the Admin API contract it targets.

The contract is Shopify's own Admin GraphQL schema, 2026-04 (../shared/specs/shopify). Every document the connector sends in the scenarios below must
validate there (graphql-core ``validate``, variables coerced to their declared types), every
inventorySetQuantities row must carry changeFromQuantity (mandatory from 2026-04), the mutation
must carry @idempotent (mandatory from 2026-04), and no input array may exceed 250 items.
"""
from __future__ import annotations

from decimal import Decimal

import pytest
from graphql import OperationDefinitionNode, parse, validate
from graphql.execution.values import get_variable_values

from erp_bridge.domain import Figure
from tests.fakes.shopify import ITEMS, LOCATION, TOKEN, FakeShopify, connector_for, real_schema

MANY = {f"bulk-{n:03d}": str(43210987700000 + n) for n in range(300)}
SHOPIFY_MAX_INPUT = 250


def gid(code: str) -> str:
    return f"gid://shopify/InventoryItem/{code}"


@pytest.fixture(scope="module")
def sent(tmp_path_factory):
    """Every request body the connector sent through a run of scenarios."""
    with FakeShopify(TOKEN) as shop:
        for sku in ("chair-blue", "chair-red"):
            shop.stock(ITEMS[sku], LOCATION, 3)
        for code in MANY.values():
            shop.stock(gid(code), LOCATION, 1)
        connector = connector_for(shop, tmp_path_factory.mktemp("contract"), batch_size=1000, extra_items=MANY)
        figure = lambda sku, q, prev=None: Figure(sku, "WH/Stock", Decimal(q), None if prev is None else Decimal(prev))
        connector.push_availability([figure("chair-blue", 5), figure("chair-red", 3)])  # read, set, unchanged
        shop.sell(ITEMS["chair-blue"], LOCATION, 1)
        connector.push_availability([figure("chair-blue", 6)])  # stale -> re-read
        connector.push_availability([figure("chair-red", 1, prev=9)])  # stale on a previous figure
        connector.push_availability([figure(sku, 2, prev=1) for sku in MANY])  # more rows than one mutation takes
        return [r for r in shop.requests]


def operation(document) -> OperationDefinitionNode:
    return next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))


def mutations(sent):
    return [r for r in sent if operation(parse(r["query"])).operation.value == "mutation"]


def test_the_scenarios_cover_reads_mutations_and_a_big_batch(sent):
    kinds = [operation(parse(r["query"])).operation.value for r in sent]
    assert "query" in kinds and kinds.count("mutation") >= 4


def test_every_document_validates_against_the_schema(sent):
    schema = real_schema()
    for request in sent:
        document = parse(request["query"])
        assert validate(schema, document) == [], request["query"]
        coerced = get_variable_values(schema, operation(document).variable_definitions, request["variables"])
        assert not isinstance(coerced, list), coerced  # a list of errors: the variables do not fit their types


def test_every_row_carries_a_change_from_quantity(sent):
    rows = [row for r in mutations(sent) for row in r["variables"]["input"]["quantities"]]
    assert len(rows) > SHOPIFY_MAX_INPUT
    assert all(isinstance(row.get("changeFromQuantity"), int) for row in rows)


def test_every_mutation_carries_the_idempotent_directive_with_a_key(sent):
    for request in mutations(sent):
        field = operation(parse(request["query"])).selection_set.selections[0]
        directives = {d.name.value: d for d in field.directives}
        assert "idempotent" in directives, request["query"]
        argument = directives["idempotent"].arguments[0]
        assert request["variables"][argument.value.name.value]  # the key the variable carries


def test_no_input_array_exceeds_250(sent):
    sizes = [len(r["variables"]["input"]["quantities"]) for r in mutations(sent)]
    assert max(sizes) == SHOPIFY_MAX_INPUT  # the mapping asked for 1000; the connector caps it
    for request in sent:
        assert all(len(v) <= SHOPIFY_MAX_INPUT for v in request["variables"].values() if isinstance(v, list))
