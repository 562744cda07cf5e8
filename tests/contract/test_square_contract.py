"""What the Square connector sends, checked against Square's own OpenAPI (../shared/specs/square/api.json).

Every request of a run of scenarios (counts out in batches, a refused batch retried row by row,
history and count reads with pages) is validated against its operation's requestBody schema with
jsonschema (tests/fakes/square_spec.py), plus the rules the spec states in prose. The validator
itself is shown to reject what Square rejects, so these tests can fail.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from erp_bridge.domain import Figure
from tests.fakes import square_spec
from tests.fakes.square import FakeSquare, connector_for

pytestmark = pytest.mark.skipif(not square_spec.available(),
                                reason="../shared/specs/square/api.json is not beside the repo")
OPERATIONS = {"/v2/inventory/changes/batch-create", "/v2/inventory/counts/batch-retrieve",
              "/v2/inventory/changes/batch-retrieve"}


@pytest.fixture(scope="module")
def sent(tmp_path_factory):
    directory = tmp_path_factory.mktemp("square-contract")
    extra = {f"bulk-{n:03d}": f"BULKVAR{n:05d}" for n in range(130)}
    with FakeSquare() as square:
        for code in ["chair-blue", "chair-red", *extra.values()]:
            square.stock(code, 1)
        connector = connector_for(square, directory, extra_items={**extra, "ghost": "GHOST1"}, batch_size=1000)
        connector.commit_poll(connector.poll_changes())
        figures = [Figure(sku, "WH/Stock", Decimal("2.5")) for sku in ["chair-blue", "ghost", *extra]]
        connector.push_availability(figures)
        square.sell("chair-red", 1, "txn-1")
        square.recount("chair-blue", 4)
        connector.commit_poll(connector.poll_changes())
        connector.close()
        return list(square.received), list(square.violations), list(square.answered)


def test_every_request_conforms_to_squares_openapi(sent):
    received, violations, _ = sent
    assert violations == []
    for path, body in received:
        assert square_spec.violations("POST", path, body) == [], (path, body)
    assert {path for path, _ in received} == OPERATIONS


def test_the_scenarios_sent_what_they_claim(sent):
    received, _, _ = sent
    creates = [body for path, body in received if path == "/v2/inventory/changes/batch-create"]
    assert max(len(body["changes"]) for body in creates) == 100  # 131 counts: a full batch and the rest
    assert any(len(body["changes"]) == 1 for body in creates)  # the batch refused for GHOST1, row by row
    assert all(1 <= len(body["idempotency_key"]) <= 128 for body in creates)


def test_the_fakes_answers_conform_to_squares_response_schemas(sent):
    _, _, answered = sent
    assert {path for path, _ in answered} == OPERATIONS
    for path, body in answered:
        assert square_spec.response_violations("POST", path, body) == [], (path, body)
    assert square_spec.response_violations("POST", "/v2/inventory/counts/batch-retrieve", {"counts": [{"quantity": 3}]})


GOOD = {"idempotency_key": "k-1", "changes": [{"type": "PHYSICAL_COUNT", "physical_count": {
    "catalog_object_id": "V1", "location_id": "L1", "state": "IN_STOCK", "quantity": "3",
    "occurred_at": "2026-11-30T12:00:00Z", "reference_id": "erp-bridge:x"}}]}


def _with(count_update: dict | None = None, **top) -> dict:
    change = {**GOOD["changes"][0], "physical_count": {**GOOD["changes"][0]["physical_count"], **(count_update or {})}}
    return {**GOOD, "changes": [change], **top}


@pytest.mark.parametrize("body, why", [
    ({"changes": GOOD["changes"]}, "'idempotency_key' is a required property"),
    (_with(idempotency_key=""), "should be non-empty"),
    (_with(idempotency_key="k" * 129), "too long"),
    (_with({"quantity": 3}), "is not of type 'string'"),
    (_with({"quantity": "1.234567"}), "not a decimal string"),
    (_with({"state": "ON_HAND"}), "is not one of"),
    ({**GOOD, "changes": [{**GOOD["changes"][0], "type": "SET"}]}, "is not one of"),
    ({**GOOD, "changes": GOOD["changes"] * 101}, "at most 100"),
    (_with(ignore_unchanged="yes"), "not a field of the request"),
], ids=["no-key", "empty-key", "long-key", "number-quantity", "six-decimals", "bad-state", "bad-type",
        "101-changes", "unknown-field"])
def test_the_validator_rejects_what_square_rejects(body, why):
    assert square_spec.violations("POST", "/v2/inventory/changes/batch-create", GOOD) == []
    assert any(why in v for v in square_spec.violations("POST", "/v2/inventory/changes/batch-create", body))


def test_the_validator_rejects_unknown_operations_and_bad_reads():
    assert square_spec.violations("POST", "/v2/inventory/batch-change", GOOD)  # retired alias
    assert square_spec.violations("POST", "/v2/inventory/changes/batch-retrieve", {"limit": 5000})
    assert square_spec.violations("POST", "/v2/inventory/counts/batch-retrieve", {"states": ["ON_HAND"]})
