"""``erp-bridge worker`` (no HTTP service) with ``workers.metrics_port``: the real process serves
Prometheus ``/metrics`` with what it delivered, refuses a port another process holds before it
starts anything, and frees its port on SIGTERM. Without the setting it listens on nothing."""
from __future__ import annotations

import signal
import socket
import subprocess
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from erp_bridge.domain import Decrement
from erp_bridge.mapping.loader import load_mappings
from erp_bridge.queue import open_queue
from erp_bridge.queue.base import RetryPolicy, State
from erp_bridge.sync.router import Router
from tests.fakes.http_target import FakeTarget
from tests.integration.odoo.server import free_port
from tests.integration.test_crash_safety import ERP_BRIDGE, configure, depth, wait_for

SALES = 40


def start(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([ERP_BRIDGE, "--config", str(config), "worker", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """A sample's value in the exposition text (labels in the order prometheus_client writes them)."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_worker_serves_its_metrics_on_the_configured_port(tmp_path):
    with FakeTarget() as target:
        config = configure(tmp_path, target.url)
        (tmp_path / "data").mkdir()
        queue = open_queue(f"sqlite:///{tmp_path}/data/queue.sqlite3", RetryPolicy())
        router = Router(load_mappings(tmp_path / "mappings"))
        queue.enqueue([router.channel_change(Decrement(channel="web", order=f"o{n}", line="1", item=f"SKU-{n % 4}",
                                                       location="WH", quantity=Decimal(1)))[0] for n in range(SALES)])
        port = free_port()
        worker = start(config, "--metrics-port", str(port))
        try:
            wait_for(lambda: depth(queue).get(State.DONE) == SALES, 60, "the worker to deliver every sale")
            wait_for(lambda: listening(port), 10, "the metrics port")
            # the worker counts a batch's deliveries just after its ack commits: wait for the last one
            wait_for(lambda: sample(scrape(port), "erp_bridge_deliveries_total", target="shop") == SALES, 10,
                     f"erp_bridge_deliveries_total to reach {SALES}")
            text = scrape(port)
            assert sample(text, "erp_bridge_queue_depth", state="done", target="shop") == SALES
            assert sample(text, "erp_bridge_queue_depth", state="pending", target="shop") == 0
            calls = sample(text, "erp_bridge_delivery_duration_seconds_count", target="shop")  # one per batch
            assert calls is not None and 1 <= calls <= SALES
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0, worker.stderr.read().decode()
            queue.close()
    assert not listening(port), "the stopped worker still holds its metrics port"


def test_a_metrics_port_another_process_holds_stops_the_worker_before_it_starts(tmp_path):
    config = configure(tmp_path, "http://127.0.0.1:9")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(config.read_text().replace("workers: {", f"workers: {{metrics_port: {port}, "))
        worker = start(config)
        assert worker.wait(30) == 2
    err = worker.stderr.read().decode()
    assert "nothing was started" in err
    assert f"workers.metrics_port {port} at http.host 127.0.0.1: Address already in use" in err
    assert not (tmp_path / "data" / "queue.sqlite3").exists(), "the worker opened its queue before failing"


@pytest.mark.parametrize("port", [0, 65536])
def test_a_metrics_port_out_of_range_names_the_setting(tmp_path, port):
    config = configure(tmp_path, "http://127.0.0.1:9")
    worker = start(config, "--metrics-port", str(port))
    assert worker.wait(30) == 2
    err = worker.stderr.read().decode()
    assert "workers.metrics_port" in err and "nothing was started" in err
