"""A channel whose webhooks go through the inbox (BigCommerce) on two bridge hosts sharing one
PostgreSQL: each host the whole runtime and HTTP app (webhook intake, inbox poller, workers), SAP
Business One as the system of record (Service Layer fake), BigCommerce on its fake.

BigCommerce retries an order callback to the other host and sends a status update to it as well:
the callback is stored once in the shared inbox, the order's lines are counted once, and SAP is
decremented once. ``erp-bridge status`` (another process) shows every channel poller's progress
from the database; ``erp-bridge db migrate --inbox-from`` carries a SQLite queue's inboxes over.
Skipped, with the reason, when no PostgreSQL is reachable (tests/pg.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from erp_bridge.connectors.runtime.inbox import Inbox
from erp_bridge.connectors.runtime.polling import PollWindow
from erp_bridge.runtime import build_runtime
from erp_bridge.settings import Settings
from tests.fakes import bigcommerce as bc
from tests.fakes.sap_b1 import FakeServiceLayer
from tests.integration.channels import REPO, SAP_SECRETS, SL_USER, eventually, sap_as_system_of_record
from tests.pg import pg_url  # noqa: F401 - fixture

pytestmark = pytest.mark.postgres


@pytest.fixture
def hosts(tmp_path, pg_url):  # noqa: F811
    """Host A and host B: own data_dir, own connection pool, one database."""
    from erp_bridge.http.app import create_app

    with FakeServiceLayer(*SL_USER) as sl, bc.stocked_store() as store:
        sl.stock("CHAIR-BLUE", "01", 10)
        directory = bc.write_mapping(tmp_path / "mappings", store.url, timeout_s=3)
        sap_as_system_of_record(directory, sl.url)
        clients = []
        for name in ("a", "b"):
            settings = Settings(data_dir=tmp_path / name, mappings_dir=directory,
                                queue={"url": pg_url + f"&application_name=host-{name}"},
                                workers={"count": 2, "poll_interval_s": 0.02, "outbox_poll_s": 0.2},
                                retry={"base_s": 0.05, "cap_s": 0.2, "jitter": 0},
                                secrets={**SAP_SECRETS, **bc.SECRETS})
            clients.append(TestClient(create_app(build_runtime(settings))).__enter__())
        yield clients, sl, store, pg_url
        for client in clients:
            client.__exit__(None, None, None)


def callback(client, scope: str, order_id: int, msg_id: str | None = None) -> int:
    headers, body = bc.signed_callback(bc.CLIENT_SECRET, scope, order_id, msg_id=msg_id)
    return client.post("/webhooks/bigcommerce", content=body, headers=headers).status_code


def test_a_callback_retried_to_the_other_host_is_stored_once_and_sold_once(hosts):
    (a, b), sl, store, url = hosts
    store.add_order(250, 11, (11, "chair-blue", 2))
    assert [callback(a, "store/order/created", 250, "msg_1"),
            callback(b, "store/order/created", 250, "msg_1"),  # BigCommerce's retry, to the other host
            callback(b, "store/order/statusUpdated", 250)] == [200, 200, 200]  # repeats the order's lines
    assert eventually(lambda: sl.items["CHAIR-BLUE"]["01"]["InStock"] == 8)
    inbox = Inbox(url, "bigcommerce")
    try:
        assert eventually(lambda: inbox.pending() == [])
        time.sleep(0.5)  # let a duplicate that slipped through reach SAP before counting
        assert sl.items["CHAIR-BLUE"]["01"]["InStock"] == 8 and len(sl.posted("InventoryGenExits")) == 1
        assert inbox.known("counted", ["bigcommerce:250:11"]) == {"bigcommerce:250:11"}
    finally:
        inbox.close()


def test_status_shows_the_pollers_of_every_process_from_the_database(tmp_path, pg_url):  # noqa: F811
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC).timestamp()
    inbox = Inbox(pg_url, "square", clock=lambda: now)
    window = PollWindow(inbox, "changes", clock=lambda: now)
    window.since()
    window.commit(window.polled([], latest=None))
    window.failed("square: HTTP 503 from POST /v2/inventory/changes/batch-retrieve")
    inbox.close()
    status = cli(tmp_path, pg_url, "status", "--json")
    assert status.returncode == 0, status.stderr
    [poller] = json.loads(status.stdout)["pollers"]
    assert (poller["system"], poller["resource"], poller["cursor"], poller["last_success"]) == (
        "square", "changes", "2026-11-30T10:00:00.000000Z", "2026-11-30T10:00:00.000000Z")
    assert poller["last_error"] == "square: HTTP 503 from POST /v2/inventory/changes/batch-retrieve"


def test_status_shows_every_process_s_calls_in_flight(tmp_path, pg_url):  # noqa: F811
    """A target's slots are rows every process takes (migration 8): status on any host shows who
    holds them, and nothing once they are given back."""
    import socket
    import threading

    from erp_bridge.storage import postgres as pg
    from erp_bridge.storage.limits import SharedSlots

    slots = SharedSlots(pg.acquire(pg_url), "shop", 2, 30)
    try:
        with slots.hold(threading.Event()) as inside:
            assert inside
            status = cli(tmp_path, pg_url, "status", "--json")
            text = cli(tmp_path, pg_url, "status")
        after = cli(tmp_path, pg_url, "status", "--json")
    finally:
        pg.release(pg_url)
    assert status.returncode == 0, status.stderr
    holder = f"{socket.gethostname()}:{os.getpid()}"
    assert json.loads(status.stdout)["calls_in_flight"] == {"shop": [holder]}
    assert f"calls in flight to shop: 1 ({holder})" in text.stdout
    # every bridge process connected (this one, by its sessions' application_name), not the command itself
    [process] = json.loads(status.stdout)["processes"]
    assert process["process"] == holder and process["sessions"] >= 1 and process["since"].endswith("Z")
    assert f"processes on the database: 1 ({holder}: " in text.stdout
    assert json.loads(after.stdout)["calls_in_flight"] == {}


def test_db_migrate_carries_a_sqlite_queues_inboxes_over(tmp_path, pg_url):  # noqa: F811
    old_url = f"sqlite:///{tmp_path}/old/queue.sqlite3"
    old = Inbox(old_url, "woocommerce")
    old.add("delivery-1", {"order": {"id": 7001}})
    old.record("counted", ["woocommerce:7001:71"])
    old.close()
    migrated = cli(tmp_path, pg_url, "db", "migrate", "--inbox-from", old_url)
    assert migrated.returncode == 0, migrated.stderr
    assert "copied 1 references, 1 keys, 0 cursors" in migrated.stdout
    new = Inbox(pg_url, "woocommerce")
    assert [r.ref for r in new.due()] == ["delivery-1"] and new.seen("counted", "woocommerce:7001:71")
    new.close()


def cli(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    """``erp-bridge`` as an operator runs it, with ``url`` as queue.url."""
    config = tmp_path / "bridge.yaml"
    config.write_text(f"data_dir: data\nmappings_dir: {REPO / 'mappings'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_BRIDGE_")}
    return subprocess.run([str(Path(sys.executable).with_name("erp-bridge")), "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, env={**env, "ERP_BRIDGE_QUEUE__URL": url})
