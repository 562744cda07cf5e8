"""Shopify end to end over real HTTP: SQLite queue -> Dispatcher (injected availability figures)
-> ShopifyConnector -> FakeShopify; and vcrpy cassettes of the happy path with the access token
filtered, replayed through the real connector with nothing listening.

To re-record the committed cassette after a deliberate change: ``RECORD_CASSETTES=1`` (the
recording test then reports as skipped, so a re-recording never passes unnoticed).
"""
from __future__ import annotations

import os
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import pytest
import vcr
import yaml
from prometheus_client import CollectorRegistry

from erp_bridge.dispatch.dispatcher import Dispatcher
from erp_bridge.dispatch.metrics import DispatchMetrics
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import AvailabilityChanged, Delivered, Figure
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from tests.fakes.clock import FakeClock
from tests.fakes.shopify import ITEMS, LOCATION, TOKEN, WEBHOOK_SECRET, connector_at, connector_for, stocked_shop

BLUE, RED = ITEMS["chair-blue"], ITEMS["chair-red"]
CASSETTES = Path(__file__).resolve().parents[1] / "cassettes" / "shopify"
HAPPY = CASSETTES / "happy_push.yaml"
RECORD = os.environ.get("RECORD_CASSETTES") == "1"


@pytest.fixture
def shop():
    with stocked_shop() as s:
        yield s


# --- through the real dispatcher ---------------------------------------------------------------

class Availability:
    """Injected figures: what the SoR would give now, set by the test (a pusher around them), each
    with the figure last delivered as ``previous`` (as sync.availability's FigureStore gives it)."""

    def __init__(self, **free):
        self.free = {sku: Decimal(q) for sku, q in free.items()}
        self.pushed: dict[str, Decimal] = {}

    def __call__(self, target, connector, entries):
        figures = [Figure(e.item, e.location, self.free[e.item], previous=self.pushed.get(e.item),
                          idempotency_key=e.idempotency_key) for e in entries]
        outcomes = connector.push_availability(figures)
        self.pushed.update((f.item, f.quantity) for f, o in zip(figures, outcomes) if isinstance(o, Delivered))
        return outcomes


def marker(queue, sequence, item="chair-blue"):
    event = AvailabilityChanged(system="odoo", item=item, location="WH/Stock", sequence=sequence)
    return queue.enqueue([entry_for("shopify", event)])[0]


def test_dispatcher_pushes_then_a_sale_in_shopify_makes_it_recompute_instead_of_overwriting(shop, tmp_path):
    clock = FakeClock(time.time())
    queue = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=5, base_s=1, jitter=0), clock=clock)
    connector = connector_for(shop, tmp_path / "mappings")
    availability = Availability(**{"chair-blue": 5})
    dispatcher = Dispatcher(queue, {"shopify": connector}, pusher=availability,
                            metrics=DispatchMetrics(CollectorRegistry()))
    first = marker(queue, 1)
    dispatcher.run_once("w")
    assert queue.get(first.id).state is State.DONE and shop.levels[(BLUE, LOCATION)] == 5

    shop.sell(BLUE, LOCATION, 2)          # a sale in Shopify: it holds 3 now
    availability.free["chair-blue"] = Decimal(6)  # Odoo received goods before the sale's webhook came
    second = marker(queue, 2)
    dispatcher.run_once("w")
    stale = queue.get(second.id)
    assert stale.state is State.PENDING and "CHANGE_FROM_QUANTITY_STALE" in stale.last_error
    assert shop.levels[(BLUE, LOCATION)] == 3  # the sale was not overwritten

    availability.free["chair-blue"] = Decimal(4)  # the webhook landed: 6 - 2
    clock.advance(2)
    dispatcher.run_once("w")
    assert queue.get(second.id).state is State.DONE
    assert shop.levels[(BLUE, LOCATION)] == 4
    assert shop.mutations()[-1]["variables"]["input"]["quantities"][0]["changeFromQuantity"] == 3
    connector.close()
    queue.close()


# --- cassettes -----------------------------------------------------------------------------------

def recorder() -> vcr.VCR:
    # the fake's port changes per run: match on what the connector chose to send, not where
    return vcr.VCR(match_on=["method", "path", "body"], filter_headers=["X-Shopify-Access-Token"])


def happy_path(connector):
    return connector.push_availability([
        Figure("chair-blue", "WH/Stock", Decimal(5), idempotency_key="odoo:availability:chair-blue@WH/Stock:41"),
        Figure("chair-red", "WH/Stock", Decimal(2), idempotency_key="odoo:availability:chair-red@WH/Stock:42")])


def sent(cassette: Path) -> list[tuple]:
    interactions = yaml.safe_load(cassette.read_text(encoding="utf-8"))["interactions"]
    return [(i["request"]["method"], urlparse(i["request"]["uri"]).path, i["request"]["body"]) for i in interactions]


def test_happy_path_recorded_against_the_fake_matches_the_committed_cassette(shop, tmp_path):
    target = HAPPY if RECORD else tmp_path / "happy_push.yaml"
    connector = connector_for(shop, tmp_path / "mappings")
    with recorder().use_cassette(str(target), record_mode="all"):
        assert happy_path(connector) == [Delivered("set"), Delivered("set")]
    assert TOKEN not in target.read_text(encoding="utf-8")
    if RECORD:
        pytest.skip(f"recorded {target.name}: review the diff")
    assert sent(target) == sent(HAPPY)  # the committed cassette is what the connector sends today


def test_replay_of_the_cassette_through_the_real_connector(tmp_path):
    connector = connector_at("http://127.0.0.1:9", tmp_path / "mappings", token="replay-token")
    with recorder().use_cassette(str(HAPPY), record_mode="none") as cassette:
        assert happy_path(connector) == [Delivered("set"), Delivered("set")]
    assert cassette.play_count == 2  # the read, then the mutation
    assert connector.observed == {(BLUE, LOCATION): 5, (RED, LOCATION): 2}


def test_no_cassette_holds_a_secret():
    files = sorted(p for p in CASSETTES.rglob("*") if p.is_file())
    assert files, "no cassettes found"
    for path in files:
        text = path.read_text(encoding="utf-8")
        for secret in (TOKEN, WEBHOOK_SECRET):
            assert secret not in text, f"{path.name} holds a secret value"
        assert "x-shopify-access-token" not in text.lower(), f"{path.name} keeps the access token header"
