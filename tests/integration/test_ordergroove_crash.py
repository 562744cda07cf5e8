"""Ordergroove and a crash: the real ``erp-bridge worker`` killed with SIGKILL after Ordergroove
applied ``live: false`` but before its answer arrived (so before the flag was stored), then
restarted. The restarted worker sends the same flag again (harmless: an absolute flag), stores it,
and from then on the hysteresis holds: a figure inside the band sends nothing, one at threshold +
hysteresis sends ``live: true`` once. SAP Business One's double is the system of record.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from itertools import groupby
from pathlib import Path

import pytest

from erp_bridge.mapping.loader import load_mappings
from erp_bridge.queue import open_queue
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.sync.router import Router
from tests.fakes.ordergroove import PRODUCTS, SECRETS, FakeOrdergroove
from tests.fakes.sap_b1 import FakeServiceLayer
from tests.fakes.served import Fault
from tests.integration.channels import REPO, SAP_SECRETS, SL_USER, eventually, sap_as_system_of_record

BLUE = PRODUCTS["chair-blue"]
ERP_BRIDGE = str(Path(sys.executable).with_name("erp-bridge"))
CONFIG = """
data_dir: data
mappings_dir: mappings
queue: {lease_s: 2}
workers: {count: 1, poll_interval_s: 0.05, shutdown_deadline_s: 5}
retry: {base_s: 0.2, cap_s: 0.5, jitter: 0}
"""


def configure(tmp_path: Path, sap_url: str, og_url: str) -> Path:
    directory = tmp_path / "mappings"
    directory.mkdir()
    text = (REPO / "mappings" / "ordergroove.yaml").read_text()
    (directory / "ordergroove.yaml").write_text(re.sub(r"base_url: \S+", f"base_url: {og_url}", text))
    sap_as_system_of_record(directory, sap_url)
    (tmp_path / "data").mkdir()
    (tmp_path / "bridge.yaml").write_text(CONFIG)
    return tmp_path / "bridge.yaml"


def start_worker(config: Path) -> subprocess.Popen:
    env = {**os.environ, **{f"ERP_BRIDGE_SECRETS__{k.upper()}": v for k, v in {**SAP_SECRETS, **SECRETS}.items()}}
    return subprocess.Popen([ERP_BRIDGE, "--config", str(config), "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_kill_9_after_ordergroove_applied_the_flag_changes_nothing(tmp_path):
    with FakeServiceLayer(*SL_USER) as sl, FakeOrdergroove() as og:
        config = configure(tmp_path, sl.url, og.url)
        queue = open_queue(f"sqlite:///{tmp_path}/data/queue.sqlite3", RetryPolicy())
        router = Router(load_mappings(tmp_path / "mappings"))

        def sap_shows(quantity: int, cause: str) -> None:
            sl.stock("CHAIR-BLUE", "01", quantity)
            queue.enqueue(router.availability("sap_b1", "chair-blue", "WH/Stock", cause=cause))

        og.fail_next(Fault(200, hang_s=8.0, drop="after_commit"))  # applied; the answer never comes
        sap_shows(1, "low")
        worker = start_worker(config)
        try:
            if not eventually(lambda: og.flags_sent() == [(BLUE, False)], 60):  # a loaded CI starts slowly
                worker.kill()
                raise AssertionError(f"Ordergroove never got the flag: {worker.stderr.read().decode()[-3000:]}"
                                     f" {og.received} {queue.stats()}")
            assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
            worker.send_signal(signal.SIGKILL)
            assert worker.wait(10) == -signal.SIGKILL
            worker = start_worker(config)
            assert eventually(lambda: queue.stats()[0].depth.get(State.DONE) == 1, 60)
            sap_shows(3, "band")  # inside the band: the flag the restarted worker stored holds
            sap_shows(4, "back")
            assert eventually(lambda: queue.stats()[0].depth.get(State.DONE) == 3, 60)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        sent = og.flags_sent()
        depth = queue.stats()[0].depth
        queue.close()
    assert sent == [(BLUE, False), (BLUE, False), (BLUE, True)]  # the false again after the crash, then true
    assert [flag for flag, _ in groupby(sent)] == [(BLUE, False), (BLUE, True)]
    assert depth.get(State.DEAD, 0) == 0 and depth.get(State.PENDING, 0) == 0
