"""The notify protocol against a datagram socket the test opens, and the unit file itself."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from erp_bridge.systemd import Watchdog, notify, watchdog_interval_s

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "scripts" / "systemd" / "erp-bridge.service"


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield str(path), sock
    sock.close()


def test_notify_sends_the_state_as_one_datagram(notify_socket, monkeypatch):
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert notify("READY=1") is True
    assert sock.recv(1024) == b"READY=1"


def test_notify_to_abstract_socket():
    name = f"erp-bridge-test-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert notify("STOPPING=1", socket_path="@" + name)
        assert sock.recv(1024) == b"STOPPING=1"
    finally:
        sock.close()


def test_without_systemd_notify_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_interval_s() is None


def test_watchdog_pings_only_while_healthy(notify_socket, monkeypatch):
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    healthy = {"ok": False}
    dog = Watchdog(lambda: healthy["ok"], 0.05).start()
    try:
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(1024)
        healthy["ok"] = True
        sock.settimeout(5)
        assert sock.recv(1024) == b"WATCHDOG=1"
    finally:
        dog.stop()


def test_unit_file_has_the_required_settings():
    text = UNIT.read_text()
    for line in ("Type=notify", "Restart=on-failure", "User=erp-bridge", "StateDirectory=erp-bridge",
                 "LoadCredential=secret:/etc/erp-bridge/credentials", "ProtectSystem=strict",
                 "NoNewPrivileges=yes", "PrivateTmp=yes", "WatchdogSec="):
        assert line in text, line


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_file_passes_systemd_analyze_verify(tmp_path):
    exe = Path(sys.executable).with_name("erp-bridge")
    unit = tmp_path / "erp-bridge.service"
    unit.write_text(UNIT.read_text().replace("/opt/erp-bridge/venv/bin/erp-bridge", str(exe)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [l for l in (result.stdout + result.stderr).splitlines() if "erp-bridge.service" in l]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_worker_unit_is_the_service_unit_running_worker():
    """The worker-only host's unit keeps every hardening line of the service unit."""
    service, worker = UNIT.read_text(), (UNIT.parent / "erp-bridge-worker.service").read_text()
    assert "config.yaml worker\n" in worker and " serve\n" not in worker
    hardening = [l for l in service.splitlines() if l and not l.startswith(("#", "Description", "ExecStart"))]
    assert [l for l in hardening if l not in worker.splitlines()] == []
