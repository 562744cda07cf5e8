"""Square end to end over real HTTP.

1. The whole service (build_runtime + the FastAPI app): a till sale in the fake Square, its signed
   notification POSTed to /webhooks/square, the history poller turns it into one decrement, the
   dispatcher applies it to the system of record (an http_json SoR on a fake target) exactly once,
   through redeliveries, Square's duplicate notifications and a restart. Forged and malformed
   deliveries get 4xx, never 5xx.
2. The dispatcher pushing counts through the connector with Square throttling (429), failing
   (5xx), hanging (timeout) and losing an answer: every figure ends pushed, exactly once in effect.
"""
from __future__ import annotations

import json
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from erp_bridge.dispatch.dispatcher import Dispatcher
from erp_bridge.dispatch.metrics import DispatchMetrics
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import AvailabilityChanged, Figure
from erp_bridge.http.app import create_app
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from erp_bridge.runtime import build_runtime
from erp_bridge.settings import load_settings
from tests.fakes import square_spec
from tests.fakes.clock import FakeClock
from tests.fakes.http_target import FakeTarget
from tests.fakes.square import (
    CREATE_PATH,
    LOCATION,
    NOTIFICATION_URL,
    RATE_LIMITED,
    VARIATIONS,
    FakeSquare,
    Fault,
    connector_for,
    error,
    example_mapping_set,
)

pytestmark = pytest.mark.skipif(not square_spec.available(),
                                reason="../shared/specs/square/api.json is not beside the repo")
BLUE = VARIATIONS["chair-blue"]
SOR = ("version: 1\nsystem: sor\nconnector: http_json\nrole: system_of_record\n"
       "connection: {{base_url: '{url}', auth: {{kind: none}}, timeout_s: 1}}\n"
       "locations: {{map: [{{internal: WH/Stock, code: WH}}]}}\n")


@pytest.fixture
def square():
    with FakeSquare() as fake:
        fake.stock("chair-blue", 10)
        fake.stock("chair-red", 4)
        yield fake
        assert fake.violations == []


@pytest.fixture
def sor():
    with FakeTarget() as target:
        yield target


@pytest.fixture
def service(square, sor, tmp_path, monkeypatch):
    """Starts the whole bridge on ``tmp_path`` (call again after closing it: a restart)."""
    for key in ("ERP_BRIDGE_ADMIN_TOKEN", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ERP_BRIDGE_SECRETS__SQUARE_TOKEN", square.token)
    monkeypatch.setenv("ERP_BRIDGE_SECRETS__SQUARE_WEBHOOK_SIGNATURE_KEY", square.signature_key)
    example_mapping_set(tmp_path / "mappings", square.url)
    (tmp_path / "mappings" / "sor.yaml").write_text(SOR.format(url=sor.url))
    config = tmp_path / "bridge.yaml"
    config.write_text("data_dir: data\nmappings_dir: mappings\n"
                      "workers: {count: 1, poll_interval_s: 0.05, outbox_poll_s: 0.2}\n")
    return lambda: TestClient(create_app(build_runtime(load_settings(config))))


def deliver(client, square: FakeSquare, body: bytes, signature: str | None = None):
    headers = {"x-square-hmacsha256-signature": signature or square.sign(NOTIFICATION_URL, body),
               "content-type": "application/json"}
    return client.post("/webhooks/square", content=body, headers=headers)


def decrements(sor: FakeTarget) -> list[str]:
    return [r.key for r in sor.received if r.path == "stock-changes" and r.status == 200]


def history_started(data_dir: Path, timeout_s: float = 15.0) -> None:
    """Wait for the poller's first pass, which starts the history (sales before it are the SoR's)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(data_dir / "queue.sqlite3") as db:
                if db.execute("SELECT 1 FROM inbox_cursors WHERE name = 'changes'").fetchone():
                    return
        except sqlite3.OperationalError:
            pass  # the table is not there yet
        time.sleep(0.05)
    raise AssertionError("the Square history poller never made its first pass")


def test_a_till_sale_decrements_the_system_of_record_once(service, square, sor, tmp_path):
    with service() as client:
        history_started(tmp_path / "data")
        notice = square.sell("chair-blue", 2, "txn-1")
        assert deliver(client, square, notice).status_code == 200
        assert sor.wait_until(lambda t: len(decrements(t)) == 1, 10)
        assert deliver(client, square, notice).status_code == 200  # Square redelivers
        event = json.loads(notice)
        event["event_id"] = "another-event-same-sale"  # Square's own duplicate notification
        assert deliver(client, square, json.dumps(event).encode()).status_code == 200
        time.sleep(1.0)
        adjustment = square.changes("ADJUSTMENT")[0]["adjustment"]["id"]
        assert decrements(sor) == [f"square:txn-1:{adjustment}"]
        body = next(r.body for r in sor.received if r.path == "stock-changes")
        assert (body["item"], body["location"], body["quantity"], body["kind"]) == (
            "chair-blue", "WH/Stock", "2", "decrement")
    with service() as client:  # a restart reads the history again from its stored cursor
        time.sleep(1.0)
        square.recount("chair-red", 9)  # reported, not applied
        assert deliver(client, square, square.sell("chair-blue", 1, "txn-2")).status_code == 200
        assert sor.wait_until(lambda t: len(decrements(t)) == 2, 10)
        time.sleep(0.5)
        assert len(decrements(sor)) == 2 and decrements(sor)[1].startswith("square:txn-2:")


@pytest.mark.parametrize("body, signature, status", [
    (b"{", None, 400),
    (b"", None, 400),
    (b'{"type": "inventory.count.updated"}', None, 400),
    (b'{"type": "inventory.count.updated", "event_id": "e", "created_at": "2020-01-01T00:00:00Z", "data": {}}',
     None, 400),
    (b'{"type": "order.updated", "event_id": "e"}', "Zm9yZ2Vk", 401),
    (b'{"type": "order.updated", "event_id": "e"}', "not base64", 401),
], ids=["truncated", "empty", "no-event-id", "stale-and-no-counts", "forged", "garbage-signature"])
def test_bad_deliveries_get_4xx_never_5xx(service, square, body, signature, status):
    with service() as client:
        answer = deliver(client, square, body, signature)
        assert answer.status_code == status and answer.json()["error"]
        assert square.signature_key not in answer.text


# --- the dispatcher pushing counts ---------------------------------------------------------------

class Availability:
    """Injected figures: what the system of record would give now, set by the test."""

    def __init__(self, **free):
        self.free = {sku: Decimal(q) for sku, q in free.items()}

    def __call__(self, target, connector, entries):
        return connector.push_availability(
            [Figure(e.item, e.location, self.free[e.item], idempotency_key=e.idempotency_key) for e in entries])


@pytest.mark.parametrize("fault", [
    Fault(429, RATE_LIMITED.body, {"Retry-After": "1"}, path=CREATE_PATH),
    Fault(500, error("API_ERROR", "INTERNAL_SERVER_ERROR", "boom"), path=CREATE_PATH),
    Fault(hang_s=2.0, path=CREATE_PATH),
    Fault(lost=True, path=CREATE_PATH),
], ids=["429", "500", "timeout", "lost-answer"])
def test_the_dispatcher_gets_every_count_through(square, tmp_path, fault):
    clock = FakeClock(time.time())
    queue = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=5, base_s=1, jitter=0), clock=clock)
    connector = connector_for(square, tmp_path / "mappings")
    dispatcher = Dispatcher(queue, {"square": connector}, pusher=Availability(**{"chair-blue": 6, "chair-red": 3}),
                            metrics=DispatchMetrics(CollectorRegistry()))
    markers = [AvailabilityChanged(system="sor", item=sku, location="WH/Stock", sequence=1)
               for sku in ("chair-blue", "chair-red")]
    entries = queue.enqueue([entry_for("square", marker) for marker in markers])
    square.fail_next(fault)
    dispatcher.run_once("w")
    assert {queue.get(e.id).state for e in entries} != {State.DONE} or fault.lost
    for _ in range(5):
        clock.advance(60)
        dispatcher.run_once("w")
    assert [queue.get(e.id).state for e in entries] == [State.DONE, State.DONE]
    assert square.counts[(BLUE, LOCATION)] == 6 and square.counts[(VARIATIONS["chair-red"], LOCATION)] == 3
    connector.close()
    queue.close()


def test_a_variation_square_refuses_dead_letters_with_squares_reason_and_the_rest_goes_through(square, tmp_path):
    queue = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=5, base_s=1, jitter=0))
    connector = connector_for(square, tmp_path / "mappings", extra_items={"ghost": "GHOSTVARIATION1"})
    dispatcher = Dispatcher(queue, {"square": connector}, metrics=DispatchMetrics(CollectorRegistry()),
                            pusher=Availability(**{"chair-blue": 6, "ghost": 1, "chair-red": 3}))
    markers = [AvailabilityChanged(system="sor", item=sku, location="WH/Stock", sequence=1)
               for sku in ("chair-blue", "ghost", "chair-red")]
    entries = queue.enqueue([entry_for("square", marker) for marker in markers])
    dispatcher.run_once("w")
    blue, ghost, red = (queue.get(e.id) for e in entries)
    assert (blue.state, ghost.state, red.state) == (State.DONE, State.DEAD, State.DONE)
    assert "NOT_FOUND" in ghost.last_error and "GHOSTVARIATION1" in ghost.last_error
    assert square.token not in ghost.last_error
    connector.close()
    queue.close()
