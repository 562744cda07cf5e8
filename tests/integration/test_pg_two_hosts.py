"""Two bridge hosts on one PostgreSQL, each the whole runtime and HTTP app (webhook intake, pull,
workers), SAP Business One as the system of record over HTTP (Service Layer fake).

- Shopify retries a webhook to the other host: stored once, applied to SAP once.
- A sale taken by host A is netted out of the pull answer host B gives at once, even from B's
  cache, because both read the shared queue; no host ever answers more than remains.
- A figure a host read while another host's worker had applied a sale but not acked it yet
  (counted twice: low) is forgotten at that ack, on every host (the ack's NOTIFY).

Skipped, with the reason, when no PostgreSQL is reachable (tests/pg.py).
"""
from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from erp_bridge.http.app import create_app
from erp_bridge.queue.base import State
from erp_bridge.runtime import build_runtime
from tests.fakes.http_server import Fault
from tests.fakes.sap_b1 import FakeServiceLayer
from tests.pg import pg_url  # noqa: F401 - fixture
from tests.unit.pull.harness import form
from tests.unit.pull.stack import order_webhook, settings_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def sl():
    with FakeServiceLayer(*("SBODEMOUS", "manager", "secret")) as fake:
        fake.stock("CHAIR-BLUE", "01", 6)
        fake.stock("CHAIR-BLUE", "02", 2)
        yield fake


@pytest.fixture
def hosts(tmp_path, sl, pg_url):  # noqa: F811
    """Host A and host B: own data_dir, own connection pool, one database."""
    clients, runtimes = [], []
    for name in ("a", "b"):
        # live_timeout_s: a slow CI machine once took over the default 0.8 s for host B's SAP read
        settings = settings_for(tmp_path / name, sl.url, fresh_s=60, live_timeout_s=5)
        url = pg_url + f"&application_name=host-{name}"
        settings = settings.model_copy(update={"queue": settings.queue.model_copy(update={"url": url})})
        runtimes.append(build_runtime(settings))
        clients.append(TestClient(create_app(runtimes[-1])).__enter__())
    yield clients, runtimes
    for client in clients:
        client.__exit__(None, None, None)


def sap_depth(runtime) -> dict[State, int]:
    return next(s.depth for s in runtime.queue.stats() if s.target == "sap_b1")


def wait_done(runtime, timeout_s: float = 20.0) -> None:
    """SAP has the sale; wait for its ack to commit."""
    deadline = time.monotonic() + timeout_s
    while sap_depth(runtime)[State.DONE] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)


def available(client) -> str:
    response = client.post("/realtime/yahoo_store", data=form("CHAIR-BLUE", 1))
    assert response.status_code == 200
    return response.headers["Available"]


def test_a_webhook_retried_to_the_other_host_is_stored_and_applied_once(sl, hosts):
    (a, b), (runtime, _) = hosts
    headers, body = order_webhook("chair-blue", 2)
    assert a.post("/webhooks/shopify", content=body, headers=headers).status_code == 200
    assert b.post("/webhooks/shopify", content=body, headers=headers).status_code == 200  # Shopify's retry
    assert sl.wait_for(lambda s: s.items["CHAIR-BLUE"]["01"]["InStock"] == 4)
    wait_done(runtime)
    assert sum(sap_depth(runtime).values()) == 1 and sap_depth(runtime)[State.DONE] == 1
    assert len([r for r in sl.received if r.method == "POST" and "InventoryGen" in r.path]) == 1


def test_a_sale_on_one_host_is_netted_out_of_the_other_hosts_cached_answer(sl, hosts):
    (a, b), (runtime, _) = hosts
    assert available(b) == "7"  # 6 + 2 - buffer 1, now in B's cache (fresh for 60 s)
    headers, body = order_webhook("chair-blue", 2)
    assert a.post("/webhooks/shopify", content=body, headers=headers).status_code == 200
    assert available(b) == "5"  # pending or just applied, B sees it in the shared queue
    assert sl.wait_for(lambda s: s.items["CHAIR-BLUE"]["01"]["InStock"] == 4)
    wait_done(runtime)
    assert available(b) == "5"
    assert available(a) == "5"


def test_a_figure_cached_while_another_host_applied_a_sale_is_forgotten_at_its_ack(sl, hosts):
    """SAP applies the sale, then its answer is lost (the connection drops 6 s later): the sale
    is in SAP's figure while the queue still holds it pending. Both hosts read SAP then (cold
    caches) and count it twice: low, never high. The worker retries, finds the document and acks;
    the ack's NOTIFY makes every host forget the figure it read in that window, so both answer
    right at once, not after fresh_s (60 s here). Host B's workers are stopped: every delivery,
    and every SAP read a delivery makes (the availability push's, which would refresh B's cache),
    happens on host A, so only the NOTIFY can tell B."""
    (a, b), (runtime, runtime_b) = hosts
    runtime_b.dispatcher.stop(5)
    sl.fail_next(Fault(path="InventoryGenExits", drop="after_commit", hang_s=6))  # outlasts both reads
    headers, body = order_webhook("chair-blue", 2)
    assert a.post("/webhooks/shopify", content=body, headers=headers).status_code == 200
    assert sl.wait_for(lambda s: s.items["CHAIR-BLUE"]["01"]["InStock"] == 4)
    assert sap_depth(runtime)[State.DONE] == 0, "acked before the window: the hang did not hold it"
    for host in (runtime, runtime_b):  # figures read at start-up (pushes) age out now: both read SAP
        host.cache.forget(None)
    assert available(a) == available(b) == "3"  # 4 + 2 - 2 pending - buffer 1: counted twice, low
    wait_done(runtime)
    assert sap_depth(runtime)[State.DONE] == 1
    assert len([r for r in sl.received if r.method == "POST" and "InventoryGen" in r.path]) <= 2
    assert sl.items["CHAIR-BLUE"]["01"]["InStock"] == 4  # applied once
    deadline = time.monotonic() + 5  # the NOTIFY reaches the other host's listener thread
    while (available(a), available(b)) != ("5", "5") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (available(a), available(b)) == ("5", "5")


def test_the_hosts_share_a_targets_concurrency(hosts):
    """Shopify's mapping allows 2 calls at once: host A's dispatcher holds both slots, so host
    B's waits (and gives up when told), then enters once A's call ends."""
    _, (runtime_a, runtime_b) = hosts
    gate_a, gate_b = (r.dispatcher._gates["shopify"] for r in (runtime_a, runtime_b))
    never = threading.Event()
    with gate_a.enter(1, never) as first, gate_a.enter(1, never) as second:
        assert first is True and second is True
        give_up = threading.Event()
        threading.Timer(0.3, give_up.set).start()
        with gate_b.enter(1, give_up) as third:
            assert third is False
    with gate_b.enter(1, never) as again:
        assert again is True


def test_the_hosts_share_a_targets_rate_limit(hosts):
    """Shopify's mapping allows 10 calls/s, 20 at once: the hosts' dispatchers take from one
    bucket in the database, so both hosts together get 20 at once, not 40."""
    _, (runtime_a, runtime_b) = hosts
    gate_a, gate_b = (r.dispatcher._gates["shopify"] for r in (runtime_a, runtime_b))
    assert gate_a._bucket.reserve(15) == 0
    assert gate_b._bucket.reserve(5) == 0
    assert gate_b._bucket.reserve(5) > 0 and gate_a._bucket.reserve(5) > 0
