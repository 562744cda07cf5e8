"""Lightspeed R-Series and Cin7 Core under the dispatcher, over real HTTP to their doubles: the
vendor throttling (429 with Retry-After; Cin7's 503), failing (5xx), hanging past the timeout,
losing an answer after applying it, and (Lightspeed) the access token expiring mid-batch. Every
figure ends pushed, in effect exactly once; a refused item dead-letters with the vendor's reason
and no secret."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from erp_bridge.dispatch.dispatcher import Dispatcher
from erp_bridge.dispatch.metrics import DispatchMetrics
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import AvailabilityChanged, Figure
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from tests.fakes import cin7_blueprint, cin7_core, lightspeed_r
from tests.fakes.clock import FakeClock
from tests.fakes.http_server import Fault

JSON = {"Content-Type": "application/json"}


class Availability:
    """What the system of record gives now, set by the test."""

    def __init__(self, **free):
        self.free = {sku: Decimal(q) for sku, q in free.items()}

    def __call__(self, target, connector, entries):
        return connector.push_availability(
            [Figure(e.item, e.location, self.free[e.item], idempotency_key=e.idempotency_key) for e in entries])


def dispatch_until_done(system: str, connector, tmp_path, free: dict[str, str], before=lambda: None):
    clock = FakeClock(time.time())
    queue = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=5, base_s=1, jitter=0), clock=clock)
    dispatcher = Dispatcher(queue, {system: connector}, pusher=Availability(**free),
                            metrics=DispatchMetrics(CollectorRegistry()))
    markers = [AvailabilityChanged(system="odoo", item=sku, location="WH/Stock", sequence=1) for sku in free]
    entries = queue.enqueue([entry_for(system, marker) for marker in markers])
    before()
    for _ in range(6):
        dispatcher.run_once("w")
        clock.advance(61)
    states = [queue.get(e.id) for e in entries]
    queue.close()
    return states


LIGHTSPEED_FAULTS = [
    Fault(429, {**JSON, "Retry-After": "1"}, b'{"httpCode": "429", "message": "Rate limit exceeded"}', path="/Item/7"),
    Fault(500, JSON, b'{"httpCode": "500", "message": "boom"}', path="/Item/7"),
    Fault(hang_s=2.5, path="/Item/7"),
    Fault(drop="after_commit", path="/Item/7.json", method="PUT"),  # applied, the answer lost
]


@pytest.mark.parametrize("fault", LIGHTSPEED_FAULTS, ids=["429", "500", "timeout", "lost-answer"])
def test_lightspeed_every_figure_gets_through(tmp_path, fault):
    with lightspeed_r.FakeLightspeedR() as fake:
        fake.ls.stock("7", "1", 1)
        fake.ls.stock("8", "1", 1)
        connector = lightspeed_r.connector_for(fake, tmp_path / "m")
        states = dispatch_until_done("lightspeed_r", connector, tmp_path, {"chair-blue": "6", "chair-red": "3"},
                                     before=lambda: fake.fail_next(fault))
        connector.close()
        assert [s.state for s in states] == [State.DONE, State.DONE]
        assert (fake.ls.qoh("7", "1"), fake.ls.qoh("8", "1")) == (6, 3) and fake.ls.violations == []
        puts = [r for r in fake.ls.requests if r[0] == "PUT" and r[1].endswith("/Item/7.json")]
        assert len(puts) == 1  # after a lost answer the retry reads qoh already right: no second PUT


def test_lightspeed_a_token_expiring_mid_batch_is_renewed_once(tmp_path):
    with lightspeed_r.FakeLightspeedR() as fake:
        fake.ls.stock("7", "1", 1)
        fake.ls.stock("8", "1", 1)
        connector = lightspeed_r.connector_for(fake, tmp_path / "m")
        connector.push_availability([Figure("chair-blue", "WH/Stock", Decimal(2))])  # logged in
        fake.fail_next(Fault(401, JSON, b'{"httpCode": "401", "message": "expired"}', path="/Item/8"))
        states = dispatch_until_done("lightspeed_r", connector, tmp_path, {"chair-blue": "6", "chair-red": "3"})
        connector.close()
        assert [s.state for s in states] == [State.DONE, State.DONE]
        assert fake.ls.token_requests == 2 and (fake.ls.qoh("7", "1"), fake.ls.qoh("8", "1")) == (6, 3)


def test_lightspeed_a_refused_item_dead_letters_with_the_reason_and_no_secret(tmp_path):
    with lightspeed_r.FakeLightspeedR() as fake:
        fake.ls.stock("7", "1", 1)  # item 8 (chair-red) does not exist in Lightspeed
        connector = lightspeed_r.connector_for(fake, tmp_path / "m")
        blue, red = dispatch_until_done("lightspeed_r", connector, tmp_path, {"chair-blue": "6", "chair-red": "3"})
        connector.close()
    assert blue.state == State.DONE and red.state == State.DEAD
    assert "no item 8" in red.last_error
    assert not any(s in red.last_error for s in (*lightspeed_r.SECRETS.values(), "ls-access", "ls-refresh"))


needs_blueprint = pytest.mark.skipif(not cin7_blueprint.available(), reason="../shared/specs/cin7-core is not beside the repo")
CIN7_FAULTS = [
    Fault(503, JSON, b'[{"ErrorCode": 503, "Exception": "You reached 60 calls per minute API limit"}]'),
    Fault(500, JSON, b'[{"ErrorCode": 500, "Exception": "boom"}]'),
    Fault(hang_s=2.5),
    Fault(drop="after_commit"),
]


@needs_blueprint
@pytest.mark.parametrize("fault", CIN7_FAULTS, ids=["503-limit", "500", "timeout", "lost-answer"])
def test_cin7_every_figure_gets_through(tmp_path, fault):
    with cin7_core.FakeCin7() as fake:
        connector = cin7_core.connector_for(fake, tmp_path / "m")
        states = dispatch_until_done("cin7_core", connector, tmp_path, {"chair-blue": "6", "chair-red": "3.5"},
                                     before=lambda: fake.fail_next(fault))
        connector.close()
        assert [s.state for s in states] == [State.DONE, State.DONE]
        assert fake.cin7.stock == {("CHR-BLU", cin7_core.LOCATION): Decimal(6),
                                   ("CHR-RED", cin7_core.LOCATION): Decimal("3.5")}
        assert fake.cin7.violations == []


@needs_blueprint
def test_cin7_a_refused_line_dead_letters_with_cin7s_reason_and_no_secret(tmp_path):
    with cin7_core.FakeCin7() as fake:
        fake.cin7.locations = {"Elsewhere"}
        connector = cin7_core.connector_for(fake, tmp_path / "m")
        [blue] = dispatch_until_done("cin7_core", connector, tmp_path, {"chair-blue": "6"})
        connector.close()
    assert blue.state == State.DEAD and "Location 'Main Warehouse' not found" in blue.last_error
    assert not any(s in blue.last_error for s in cin7_core.SECRETS.values())
