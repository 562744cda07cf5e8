"""The one durable poller under ``kill -9`` (issue 13): the real ``erp-bridge worker`` polls the
PrestaShop double's orders and is killed with SIGKILL in the middle of passes, again and again, then
restarted: every order line reaches the system of record exactly once, and the queue holds one entry
per line (nothing lost between reading and storing, nothing doubled by a re-read)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from erp_bridge.queue import open_queue
from erp_bridge.queue.base import RetryPolicy
from tests.contract import prestashop_docs
from tests.fakes.http_target import FakeTarget
from tests.fakes.prestashop import FakePrestaShop

ERP_BRIDGE = str(Path(sys.executable).with_name("erp-bridge"))
ORDERS, KILLS = 150, 4
CONFIG = """
data_dir: data
mappings_dir: mappings
queue: {lease_s: 3, batch_size: 32}
workers: {count: 2, poll_interval_s: 0.05, shutdown_deadline_s: 5}
retry: {max_attempts: 5, base_s: 0.2}
"""
SOR = """
version: 1
system: shop
connector: http_json
role: system_of_record
connection: {{base_url: "{url}", auth: {{kind: none}}, timeout_s: 5}}
locations: {{map: [{{internal: WH, code: WH}}]}}
"""
PRESTASHOP = """
version: 1
system: prestashop
connector: prestashop
role: channel
connection: {{base_url: "{url}", auth: {{kind: basic, secrets: {{username: prestashop_webservice_key}}}}, timeout_s: 5}}
locations: {{map: [{{internal: WH, code: "1"}}]}}
quantity_policy: {{basis: free}}
polling: {{sale_statuses: ["2"], restock_statuses: ["6"]}}
"""


def start_worker(config: Path, key: str) -> subprocess.Popen:
    env = {**os.environ, "ERP_BRIDGE_SECRETS__PRESTASHOP_WEBSERVICE_KEY": key}
    return subprocess.Popen([ERP_BRIDGE, "--config", str(config), "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill(worker: subprocess.Popen) -> None:
    assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
    worker.send_signal(signal.SIGKILL)
    assert worker.wait(10) == -signal.SIGKILL


def orders_read(shop: FakePrestaShop) -> int:
    return sum(1 for r in list(shop.requests) if r["url"].startswith("/api/orders?"))


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_while_polling_loses_and_doubles_nothing(tmp_path):
    if not prestashop_docs.available():
        pytest.skip("../shared/specs/prestashop is not beside the repo")
    with FakeTarget() as sor, FakePrestaShop() as shop:
        (tmp_path / "mappings").mkdir()
        (tmp_path / "data").mkdir()
        (tmp_path / "mappings" / "shop.yaml").write_text(SOR.format(url=sor.url))
        (tmp_path / "mappings" / "prestashop.yaml").write_text(PRESTASHOP.format(url=shop.url))
        (tmp_path / "bridge.yaml").write_text(CONFIG)
        config = tmp_path / "bridge.yaml"

        worker = start_worker(config, shop.key)  # the first pass sets the cursor to now
        wait_for(lambda: orders_read(shop) >= 1, 30, "the first pass")
        kill(worker)
        orders = [shop.place_order([(10 + n % 7, 0, 1), (20 + n % 5, n % 3, 2)]) for n in range(ORDERS)]
        shop.details_delay_s = 0.05  # each pass now lasts ~0.3 s: long enough to die in the middle of
        rng = random.Random(13)
        for _ in range(KILLS):
            before = orders_read(shop)
            worker = start_worker(config, shop.key)
            wait_for(lambda before=before: orders_read(shop) > before, 30, "a pass to start")
            time.sleep(rng.uniform(0.0, 0.4))
            kill(worker)
        worker = start_worker(config, shop.key)
        expected = {f"prestashop:{o}:{d}" for d, line in shop.details.items() for o in [int(line["id_order"])]
                    if o in orders}
        assert sor.wait_until(lambda t: t.counts()[0] >= len(expected), timeout_s=90), sor.counts()
        time.sleep(1.0)  # anything doubled would arrive now
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.stderr.read().decode() if worker.stderr else ""
        applied = list(sor.applied)

    assert sorted(applied) == sorted(expected)  # every line once
    queue = open_queue(f"sqlite:///{tmp_path}/data/queue.sqlite3", RetryPolicy())
    try:
        stored = queue.stats()
    finally:
        queue.close()
    to_sor = next(s for s in stored if s.target == "shop")
    assert sum(to_sor.depth.values()) == len(expected)  # one queue entry per line, whatever was re-read
    assert shop.violations == []
