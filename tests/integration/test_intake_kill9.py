"""Durable before 2xx, under a burst, across a kill -9: the real `erp-bridge serve` takes signed
Shopify orders from eight concurrent senders (the intake's group commit, its statements on the
event loop and its commit on a thread) and is killed with SIGKILL mid-burst. Every order it
answered 200 is in the queue, once; restarted, it takes every order again (the platform's
retries, the answered ones among them) and each is stored exactly once. On both engines: the
SQLite file, and PostgreSQL (skipped, with the reason, without one)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
import requests

from tests.integration.intake_world import intake_config
from tests.integration.odoo.server import free_port
from tests.pg import storage_url  # noqa: F401  (a fixture)

ERP_BRIDGE = str(Path(sys.executable).with_name("erp-bridge"))
SECRET = "intake-kill9-secret"
SENDERS = 8


def order(n: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"id": n, "location_id": None, "line_items": [
        {"id": n * 10 + 1, "sku": f"BENCH-{n % 5 + 1}", "variant_id": 1, "quantity": 1, "gift_card": False}]}).encode()
    sig = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    return body, {"Content-Type": "application/json", "X-Shopify-Topic": "orders/create",
                  "X-Shopify-Hmac-Sha256": sig, "X-Shopify-Webhook-Id": f"w{n}"}


def serve(config: Path) -> subprocess.Popen:
    env = {**os.environ, "ERP_BRIDGE_SECRETS__ODOO_USER": "u", "ERP_BRIDGE_SECRETS__ODOO_PASSWORD": "p",
           "ERP_BRIDGE_SECRETS__SHOPIFY_TOKEN": "t", "ERP_BRIDGE_SECRETS__SHOPIFY_WEBHOOK_SECRET": SECRET}
    proc = subprocess.Popen([ERP_BRIDGE, "--config", str(config), "serve"], cwd=config.parent, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{config.read_text().split('port: ')[1].split('}')[0]}/healthz"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "serve exited"
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return proc
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "serve did not answer /healthz within 30 s"
        time.sleep(0.1)


def stored_orders(queue_url: str) -> list[int]:
    """The order of every decrement in the queue, once per entry (read as another process would)."""
    if queue_url.startswith("sqlite:///"):
        with sqlite3.connect(f"file:{queue_url.removeprefix('sqlite:///')}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT json_extract(payload, '$.order') FROM entries WHERE kind = 'decrement'")
            return [int(order) for (order,) in rows]
    with psycopg.connect(queue_url) as conn:
        rows = conn.execute("SELECT payload->>'order' FROM bridge_entries WHERE kind = 'decrement'").fetchall()
        return [int(order) for (order,) in rows]


def burst_then_kill(proc: subprocess.Popen, url: str, first: int, answers: int) -> tuple[set[int], list[int]]:
    """Eight senders post new orders until about ``answers`` were answered, then SIGKILL mid-burst:
    the orders answered 200, and every order sent (answered or not)."""
    answered: dict[int, int] = {}
    sent: list[int] = []
    lock = threading.Lock()

    def sender(start: int) -> None:
        with requests.Session() as session:
            for n in range(start, start + 100_000):
                with lock:
                    sent.append(n)
                body, headers = order(n)
                try:
                    status = session.post(url, data=body, headers=headers, timeout=10).status_code
                except requests.RequestException:  # the process is gone: this one got no answer
                    return
                with lock:
                    answered[n] = status

    threads = [threading.Thread(target=sender, args=(first + 100_000 * t,)) for t in range(SENDERS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(answered) < answers and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # requests in flight, a commit likely under way
    proc.wait(10)
    for t in threads:
        t.join(15)
    assert len(answered) >= answers and set(answered.values()) == {200}, sorted(set(answered.values()))
    return {n for n, status in answered.items() if status == 200}, sent


@pytest.mark.slow
def test_every_order_answered_200_survives_a_kill_9_mid_burst_and_is_stored_once(tmp_path, storage_url):  # noqa: F811
    """Killed four times, each mid-burst at another moment; then everything sent again. On SQLite
    (the default file; the statements on the event loop) and on PostgreSQL (the committer thread)."""
    port = free_port()
    sqlite = storage_url.startswith("sqlite")
    config = intake_config(tmp_path, port, skus=5, queue_url=None if sqlite else storage_url)
    url = f"http://127.0.0.1:{port}/webhooks/shopify"
    db = f"sqlite:///{tmp_path}/data/queue.sqlite3" if sqlite else storage_url
    sent: list[int] = []
    for kill in range(4):
        ok, tried = burst_then_kill(serve(config), url, 10_000_000 * (kill + 1), 300 + 97 * kill)
        sent += tried
        stored = stored_orders(db)
        assert ok <= set(stored), f"kill {kill + 1}: {len(ok - set(stored))} orders answered 200 are not in the queue"
        assert len(stored) == len(set(stored)) and set(stored) <= set(sent)

    proc = serve(config)  # the platform sends again what it has no 200 for, and some it has (retries)
    try:
        with requests.Session() as session:
            for n in sent:
                body, headers = order(n)
                assert session.post(url, data=body, headers=headers, timeout=10).status_code == 200, n
    finally:
        proc.terminate()
        proc.wait(30)
    stored = stored_orders(db)
    assert sorted(stored) == sorted(sent)  # every order once: none lost, none doubled
