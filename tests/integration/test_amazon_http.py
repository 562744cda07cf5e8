"""Amazon SP-API end to end over real HTTP.

1. The dispatcher pushing quantities through the connector with Amazon throttling (429
   QuotaExceeded, no Retry-After), failing (5xx), hanging (timeout), losing an answer and letting
   the access token expire mid-batch (403): every figure ends pushed; a SKU Amazon refuses
   dead-letters with Amazon's issue and no secret.
2. The whole service (build_runtime): orders polled from the fake Amazon decrement the system of
   record (an http_json SoR on a fake target) once each, through restarts and status changes, and a
   cancellation gives back what was counted.
3. The real ``erp-bridge worker`` process killed with SIGKILL while a poll pass has read orders but
   not stored them, then restarted: every sale reaches the system of record exactly once.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from erp_bridge.connectors.runtime.inbox import Inbox
from erp_bridge.connectors.runtime.polling import rfc3339, statuses
from erp_bridge.dispatch.dispatcher import Dispatcher
from erp_bridge.dispatch.metrics import DispatchMetrics
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import AvailabilityChanged, Figure
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from erp_bridge.runtime import build_runtime
from erp_bridge.settings import load_settings
from tests.fakes import amazon_spec
from tests.fakes.amazon import (
    CLIENT_SECRET,
    MARKETPLACE,
    QUOTA,
    REFRESH_TOKEN,
    SECRETS,
    FakeAmazon,
    Fault,
    connector_for,
    errors,
    example_mapping_set,
)
from tests.fakes.clock import FakeClock
from tests.fakes.http_target import FakeTarget

pytestmark = pytest.mark.skipif(not amazon_spec.available(), reason="../shared/specs/amazon/ is not beside the repo")
ERP_BRIDGE = str(Path(sys.executable).with_name("erp-bridge"))
LISTINGS = "/listings/2021-08-01/items/"


@pytest.fixture
def amazon():
    with FakeAmazon() as fake:
        for sku in ("chair-blue", "chair-red"):
            fake.list_sku(sku, 0)
        yield fake
        assert fake.violations == []


@pytest.fixture
def sor():
    with FakeTarget() as target:
        yield target


# --- 1. the dispatcher pushing quantities --------------------------------------------------------

class Availability:
    """Injected figures: what the system of record would give now, set by the test."""

    def __init__(self, **free):
        self.free = {sku: Decimal(q) for sku, q in free.items()}

    def __call__(self, target, connector, entries):
        return connector.push_availability(
            [Figure(e.item, e.location, self.free[e.item], idempotency_key=e.idempotency_key) for e in entries])


def dispatch(amazon: FakeAmazon, tmp_path: Path, skus: list[str], free: dict[str, str], rounds: int = 5):
    clock = FakeClock(time.time())
    queue = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=5, base_s=1, jitter=0), clock=clock)
    connector = connector_for(amazon, tmp_path / "mappings")
    dispatcher = Dispatcher(queue, {"amazon_sp": connector}, pusher=Availability(**free),
                            metrics=DispatchMetrics(CollectorRegistry()))
    entries = queue.enqueue([entry_for("amazon_sp", AvailabilityChanged(system="sor", item=sku, location="WH/Stock",
                                                                        sequence=1)) for sku in skus])
    dispatcher.run_once("w")
    for _ in range(rounds):
        clock.advance(60)
        dispatcher.run_once("w")
    states = [queue.get(e.id) for e in entries]
    connector.close()
    queue.close()
    return states


@pytest.mark.parametrize("fault", [
    Fault(429, body=QUOTA, path=LISTINGS),
    Fault(500, body=errors("InternalFailure", "We encountered an internal error. Please try again."), path=LISTINGS),
    Fault(503, body=errors("ServiceUnavailable", "Service temporarily unavailable."), path=LISTINGS),
    Fault(hang_s=1.5, path=LISTINGS),
    Fault(drop="after_commit", path=LISTINGS),
    None,
], ids=["429", "500", "503", "timeout", "lost-answer", "token-expired"])
def test_the_dispatcher_gets_every_quantity_through(amazon, tmp_path, fault):
    if fault is None:
        connector_for(amazon, tmp_path / "warm").push_availability([Figure("chair-blue", "WH/Stock", Decimal(0))])
        amazon.advance(3700)  # the cached token of this process's connector is refused next (403)
    else:
        amazon.fail_next(fault)
    states = dispatch(amazon, tmp_path, ["chair-blue", "chair-red"], {"chair-blue": "6.7", "chair-red": "3"})
    assert [s.state for s in states] == [State.DONE, State.DONE], [s.last_error for s in states]
    assert amazon.listings[("chair-blue", MARKETPLACE)]["quantity"] == 6
    assert amazon.listings[("chair-red", MARKETPLACE)]["quantity"] == 3


def test_a_sku_amazon_refuses_dead_letters_with_amazons_issue_and_the_rest_goes_through(amazon, tmp_path):
    amazon.refuse("chair-red", "90000900", "The product type PRODUCT does not match the listing (LUGGAGE)")
    blue, red, ghost = dispatch(amazon, tmp_path, ["chair-blue", "chair-red", "ghost"],
                                {"chair-blue": "2", "chair-red": "1", "ghost": "1"}, rounds=0)
    assert (blue.state, red.state, ghost.state) == (State.DONE, State.DEAD, State.DEAD)
    assert "chair-red" in red.last_error and "90000900" in red.last_error and "LUGGAGE" in red.last_error
    assert "ghost" in ghost.last_error
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, *amazon.tokens):
        assert secret not in red.last_error and secret not in ghost.last_error


# --- 2. the whole service polling orders ---------------------------------------------------------

def configure(tmp_path: Path, amazon: FakeAmazon, sor: FakeTarget) -> Path:
    example_mapping_set(tmp_path / "mappings", amazon.url, with_sor=sor.url)
    config = tmp_path / "bridge.yaml"
    config.write_text("data_dir: data\nmappings_dir: mappings\n"
                      "workers: {count: 1, poll_interval_s: 0.05, outbox_poll_s: 0.2, shutdown_deadline_s: 3}\n"
                      "retry: {max_attempts: 5, base_s: 0.2}\n")
    (tmp_path / "data").mkdir(exist_ok=True)
    inbox = Inbox(f"sqlite:///{tmp_path}/data/queue.sqlite3", "amazon_sp")
    inbox.advance("orders", rfc3339(amazon.now() - timedelta(hours=1)))  # connected an hour ago
    inbox.close()
    return config


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ERP_BRIDGE_ADMIN_TOKEN", "CREDENTIALS_DIRECTORY")}
    return {**env, **{f"ERP_BRIDGE_SECRETS__{name.upper()}": value for name, value in SECRETS.items()}}


def applied(sor: FakeTarget) -> list[str]:
    return [r.key for r in sor.received if r.path == "stock-changes" and r.status == 200]


def run_service(config: Path, sor: FakeTarget, predicate, monkeypatch) -> None:
    """Start the whole bridge (its first poll pass runs at once), wait for ``predicate``, stop."""
    for name, value in environment().items():
        monkeypatch.setenv(name, value)
    runtime = build_runtime(load_settings(config))
    runtime.start()
    try:
        assert sor.wait_until(predicate, 15)
        time.sleep(0.5)
    finally:
        runtime.stop()


def test_polled_orders_decrement_the_system_of_record_once(amazon, sor, tmp_path, monkeypatch):
    config = configure(tmp_path, amazon, sor)
    amazon.order("111-0000001-0000001", [("chair-blue", 2), ("chair-red", 1)], status="Pending")
    amazon.order("111-0000002-0000002", [("chair-blue", 1)], channel="AFN")  # Amazon's stock, not ours
    run_service(config, sor, lambda t: len(applied(t)) == 2, monkeypatch)
    amazon.update("111-0000001-0000001", "Shipped")
    amazon.order("111-0000003-0000003", [("chair-red", 4)], age_s=240)  # after the stored cursor
    run_service(config, sor, lambda t: len(applied(t)) == 3, monkeypatch)  # a restart: the stored cursor
    amazon.update("111-0000001-0000001", "Canceled")
    run_service(config, sor, lambda t: len(applied(t)) == 5, monkeypatch)
    keys = applied(sor)
    assert len(keys) == len(set(keys)) == 5
    bodies = {r.key: r.body for r in sor.received if r.path == "stock-changes"}
    back = [b for k, b in bodies.items() if k.endswith(":cancel")]
    assert sorted((b["item"], b["quantity"], b["kind"], b["location"]) for b in back) == [
        ("chair-blue", "2", "increment", "WH/Stock"), ("chair-red", "1", "increment", "WH/Stock")]
    inbox = Inbox(f"sqlite:///{tmp_path}/data/queue.sqlite3", "amazon_sp")
    status = [s for s in statuses(inbox) if s["system"] == "amazon_sp"]  # what `erp-bridge status` shows
    inbox.close()
    assert [(s["resource"], s["last_error"]) for s in status] == [("orders", None)]
    assert status[0]["last_success"] and 170 <= status[0]["lag_s"] < 240  # the window ends 3 minutes back


# --- 3. kill -9 between reading and storing ------------------------------------------------------

def test_kill_9_while_a_pass_holds_unstored_orders_loses_and_doubles_nothing(amazon, sor, tmp_path):
    config = configure(tmp_path, amazon, sor)
    for n in range(1, 6):
        amazon.order(f"111-000000{n}-000000{n}", [("chair-blue", n)], age_s=900 - n)
    # the pass reads the orders and the items of the first ones, then hangs on the fourth order's
    # items: its decrements for orders 1-3 are in memory only when the process is killed
    amazon.fail_next(Fault(hang_s=30, path="111-0000004-0000004/orderItems"))
    worker = subprocess.Popen([ERP_BRIDGE, "--config", str(config), "worker"], env=environment(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not amazon.hanging and time.monotonic() < deadline:
            time.sleep(0.05)
        assert amazon.hanging and len(amazon.calls("getOrderItems")) == 3 and applied(sor) == []
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(10) == -signal.SIGKILL
    finally:
        worker.kill()
    worker = subprocess.Popen([ERP_BRIDGE, "--config", str(config), "worker"], env=environment(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert sor.wait_until(lambda t: len(applied(t)) == 5, 20), worker.stderr
        time.sleep(1.0)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(10)
    keys = applied(sor)
    assert len(keys) == len(set(keys)) == 5
    assert sorted(r.body["quantity"] for r in sor.received if r.path == "stock-changes" and r.status == 200) == [
        "1", "2", "3", "4", "5"]
