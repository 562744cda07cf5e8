"""Golden files for pull clients: a request to the example mapping's endpoint -> the exact answer.

``golden/pull/<system>-<case>.request.txt`` is the request line and the form body;
``<case>.expected.txt`` the status, the protocol headers and the body, against a fixed stock
(below). ``UPDATE_GOLDEN=1`` rewrites them (reported as skipped); review the diff.
"""
from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.unit.pull.harness import TOKEN, make_app, restock, sell

from .conftest import HERE

GOLDEN = HERE / "golden" / "pull"
REQUESTS = sorted(GOLDEN.glob("*.request.txt"))
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
SHOWN = ("available", "inventory-message", "x-availability-source", "x-availability-detail")
STOCK = {("chair-blue", "WH/Stock"): 5, ("chair-blue", "WH2/Stock"): 2, ("chair-red", "WH/Stock"): 0,
         ("TS-SG-L", "WH/Stock"): 3}


def _case(path):
    return path.name.removesuffix(".request.txt")


@pytest.fixture
def app(tmp_path):
    h = make_app(tmp_path)
    h.sor.free.update({k: Decimal(v) for k, v in STOCK.items()})
    h.sor.restock["chair-red"] = restock("2026-12-01")
    h.sor.read_at = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    sell(h.queue, "chair-blue", "WH/Stock", 1, "order-1")  # received, not yet applied
    return h


def render(response) -> str:
    headers = [f"{k}: {response.headers[k]}" for k in SHOWN if k in response.headers]
    return "\n".join([str(response.status_code), *headers, "", response.text]).rstrip() + "\n"


@pytest.mark.parametrize("request_file", REQUESTS, ids=[_case(p) for p in REQUESTS])
def test_pull_request_gets_the_golden_answer(request_file, app):
    line, body = request_file.read_text(encoding="utf-8").split("\n", 1)
    method, target = line.split(" ", 1)
    response = app.client.request(method, target, content=body.strip().encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Bearer {TOKEN}"})
    expected_file = GOLDEN / f"{_case(request_file)}.expected.txt"
    if UPDATE:
        expected_file.write_text(render(response), encoding="utf-8")
        pytest.skip(f"rewrote {expected_file.name}: review the diff")
    assert render(response) == expected_file.read_text(encoding="utf-8")


def test_every_pull_client_example_has_a_golden_case(example_set):
    clients = {name for name, m in example_set.systems.items() if "pull_client" in m.roles}
    assert clients == {_case(p).split("-")[0] for p in REQUESTS} == {"yahoo_store", "digital_river"}
