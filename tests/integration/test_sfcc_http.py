"""SFCC over real HTTP, at the dispatcher's level.

1. Availability out: the dispatcher pushes figures through the connector to the fake OCI while it
   throttles (429 + Retry-After), fails (5xx), hangs (timeout), loses an answer, or the token
   expires between attempts: every figure ends set, once in effect. A record OCI refuses dead-letters
   with OCI's reason and no secret; the others go through.
2. Sales in: an order placed in the fake SFCC, polled by the one durable poller, routed, stored and
   applied by the dispatcher to an http_json system of record exactly once, through re-reads, a
   restart and the order's cancellation.
"""
from __future__ import annotations

import time
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from erp_bridge.connectors import registry
from erp_bridge.dispatch.dispatcher import Dispatcher
from erp_bridge.dispatch.metrics import DispatchMetrics
from erp_bridge.dispatch.routing import entry_for
from erp_bridge.domain import AvailabilityChanged, Figure
from erp_bridge.mapping.loader import load_mappings
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.queue.sqlite import SQLiteQueue
from erp_bridge.sync.channel_poll import ChannelPoller
from erp_bridge.sync.router import Router, prepare
from tests.fakes import sfcc_spec
from tests.fakes.clock import FakeClock
from tests.fakes.http_target import FakeTarget
from tests.fakes.sfcc import (
    BATCH_PATH,
    CLIENT_SECRET,
    LOCATION,
    RATE_LIMITED,
    FakeSfcc,
    Fault,
    connector_for,
    example_mapping_set,
    problem,
)

pytestmark = [pytest.mark.skipif(not sfcc_spec.available(), reason="../shared/specs/sfcc-oci is not beside the repo"),
              pytest.mark.filterwarnings("ignore:Unsupported scheme type")]
SOR = ("version: 1\nsystem: sor\nconnector: http_json\nrole: system_of_record\n"
       "connection: {{base_url: '{url}', auth: {{kind: none}}, timeout_s: 1}}\n"
       "locations: {{map: [{{internal: WH/Stock, code: WH}}]}}\n")


@pytest.fixture
def fake():
    with FakeSfcc() as double:
        yield double
        assert double.violations == []


class Availability:
    """Injected figures: what the system of record would give now, set by the test."""

    def __init__(self, **free):
        self.free = {sku: Decimal(q) for sku, q in free.items()}

    def __call__(self, target, connector, entries):
        return connector.push_availability(
            [Figure(e.item, e.location, self.free[e.item], idempotency_key=e.idempotency_key) for e in entries])


def enqueue_markers(queue, *skus: str):
    markers = [AvailabilityChanged(system="sor", item=sku, location="WH/Stock", sequence=1) for sku in skus]
    return queue.enqueue([entry_for("sfcc", marker) for marker in markers])


@pytest.mark.parametrize("fault", [
    RATE_LIMITED,
    Fault(500, body=problem("internal-server-error", "Internal Server Error", "boom"), path=BATCH_PATH),
    Fault(hang_s=1.0, path=BATCH_PATH),
    Fault(drop="after_commit", path=BATCH_PATH),
    "expired-token",
], ids=["429", "500", "timeout", "lost-answer", "expired-token"])
def test_the_dispatcher_gets_every_figure_to_oci(fake, tmp_path, fault):
    clock = FakeClock(time.time())
    queue = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=5, base_s=1, jitter=0), clock=clock)
    connector = connector_for(fake, tmp_path / "m")
    dispatcher = Dispatcher(queue, {"sfcc": connector}, pusher=Availability(**{"chair-blue": 6, "stool": 3}),
                            metrics=DispatchMetrics(CollectorRegistry()))
    entries = enqueue_markers(queue, "chair-blue", "stool")
    if fault == "expired-token":
        connector.push_availability([Figure("stool", "WH/Stock", Decimal(1))])  # a token is cached...
        fake.expire_tokens()  # ...and expires before the dispatcher's attempt
    else:
        fake.fail_next(fault)
    dispatcher.run_once("w")
    for _ in range(5):
        clock.advance(60)
        dispatcher.run_once("w")
    assert [queue.get(e.id).state for e in entries] == [State.DONE, State.DONE]
    assert fake.on_hand[("CHAIR-BLUE-01", LOCATION)] == 6 and fake.on_hand[("stool", LOCATION)] == 3
    connector.close()
    queue.close()


def test_a_record_oci_refuses_dead_letters_with_ocis_reason_and_the_rest_goes_through(fake, tmp_path):
    example_mapping_set(tmp_path / "m", fake.url)
    path = tmp_path / "m" / "sfcc.yaml"
    path.write_text(path.read_text().replace(
        "        site: RefArch", "        site: RefArch\n    - internal: WH2/Stock\n      code: closed-store"))
    mappings = load_mappings(tmp_path / "m")
    connector = registry.build(mappings.systems["sfcc"], {"sfcc_client_id": "a7c1e2f0-5b6d-4e3f-9a8b-0c1d2e3f4a5b",
                                                          "sfcc_client_secret": CLIENT_SECRET},
                               storage_url=f"sqlite:///{tmp_path}/q.sqlite3")
    queue = SQLiteQueue(tmp_path / "q.db", RetryPolicy(max_attempts=5, base_s=1, jitter=0))
    dispatcher = Dispatcher(queue, {"sfcc": connector}, metrics=DispatchMetrics(CollectorRegistry()),
                            pusher=Availability(**{"chair-blue": 6, "stool": 3}))
    markers = [AvailabilityChanged(system="sor", item="chair-blue", location="WH/Stock", sequence=1),
               AvailabilityChanged(system="sor", item="stool", location="WH2/Stock", sequence=1)]
    good, refused = queue.enqueue([entry_for("sfcc", m) for m in markers])
    dispatcher.run_once("w")
    assert (queue.get(good.id).state, queue.get(refused.id).state) == (State.DONE, State.DEAD)
    error = queue.get(refused.id).last_error
    assert "Location closed-store does not exist" in error and CLIENT_SECRET not in error
    assert fake.on_hand == {("CHAIR-BLUE-01", LOCATION): 6}
    connector.close()
    queue.close()


def test_an_order_reaches_the_system_of_record_once_through_re_reads_a_restart_and_its_cancellation(fake, tmp_path):
    with FakeTarget() as sor:
        directory, storage = tmp_path / "m", f"sqlite:///{tmp_path}/q.sqlite3"
        example_mapping_set(directory, fake.url)
        (directory / "sor.yaml").write_text(SOR.format(url=sor.url))
        mappings = load_mappings(directory)
        queue = SQLiteQueue(tmp_path / "q.sqlite3", RetryPolicy(max_attempts=5, base_s=1, jitter=0))

        def run(passes: int) -> None:
            sfcc = registry.build(mappings.systems["sfcc"], {"sfcc_client_id": "a7c1e2f0-5b6d-4e3f-9a8b-0c1d2e3f4a5b",
                                                             "sfcc_client_secret": CLIENT_SECRET}, storage_url=storage)
            target = registry.build(mappings.systems["sor"], {})
            poller = ChannelPoller("sfcc", sfcc, Router(mappings), queue, interval_s=60)
            dispatcher = Dispatcher(queue, {"sor": target}, metrics=DispatchMetrics(CollectorRegistry()),
                                    prepare=lambda event: prepare(mappings, event))  # channel terms -> internal
            for _ in range(passes):
                poller.run_once()
                dispatcher.run_once("w")
            sfcc.close()
            target.close()

        run(1)  # the first pass starts the window
        fake.place("00001000", {"CHAIR-BLUE-01": 2})
        run(3)
        run(2)  # a restart: the stored cursor and seen keys, nothing again
        fake.set_status("00001000", "cancelled")
        run(2)
        applied = [(r.body["kind"], r.body["item"], r.body["location"], r.body["quantity"])
                   for r in sor.received if r.path == "stock-changes" and r.status == 200]
        assert applied == [("decrement", "chair-blue", "WH/Stock", "2"), ("increment", "chair-blue", "WH/Stock", "2")]
        queue.close()


def test_the_whole_bridge_polls_sfcc_and_applies_an_order_once_across_a_restart(fake, tmp_path, monkeypatch):
    """build_runtime picks the sfcc poller up by its capability alone (runtime.py knows no SFCC);
    ``nudge`` stands for the 30-second interval elapsing."""
    from erp_bridge.connectors.runtime.inbox import Inbox
    from erp_bridge.connectors.runtime.polling import statuses
    from erp_bridge.runtime import build_runtime
    from erp_bridge.settings import load_settings
    from tests.integration.channels import eventually
    for key in ("ERP_BRIDGE_ADMIN_TOKEN", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ERP_BRIDGE_SECRETS__SFCC_CLIENT_ID", "a7c1e2f0-5b6d-4e3f-9a8b-0c1d2e3f4a5b")
    monkeypatch.setenv("ERP_BRIDGE_SECRETS__SFCC_CLIENT_SECRET", CLIENT_SECRET)
    with FakeTarget() as sor:
        example_mapping_set(tmp_path / "mappings", fake.url)
        (tmp_path / "mappings" / "sor.yaml").write_text(SOR.format(url=sor.url))
        config = tmp_path / "bridge.yaml"
        config.write_text("data_dir: data\nmappings_dir: mappings\n"
                          "workers: {count: 1, poll_interval_s: 0.05, outbox_poll_s: 0.2}\n")

        def decrements() -> list[str]:
            return [r.key for r in sor.received if r.path == "stock-changes" and r.status == 200]

        def pollers() -> list[dict]:
            inbox = Inbox(runtime.settings.queue_url, "sfcc")
            try:
                return [s for s in statuses(inbox) if s["system"] == "sfcc"]
            finally:
                inbox.close()

        runtime = build_runtime(load_settings(config))
        assert isinstance(runtime.pollers["sfcc"], ChannelPoller)
        runtime.start()
        assert eventually(lambda: pollers() != [], 10)  # the first pass started the window
        fake.place("00002000", {"CHAIR-BLUE-01": 1, "stool": 2})
        runtime.pollers["sfcc"].nudge()
        assert eventually(lambda: len(decrements()) == 2, 15)
        runtime.stop()
        runtime = build_runtime(load_settings(config))  # a restart
        runtime.start()
        runtime.pollers["sfcc"].nudge()
        time.sleep(1.0)
        runtime.stop()
        assert sorted(decrements()) == ["sfcc:00002000:00002000-0", "sfcc:00002000:00002000-1"]
        (status,) = pollers()
        assert status["resource"] == "orders:RefArch" and status["last_error"] is None
