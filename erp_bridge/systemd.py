"""systemd's notify protocol (sd_notify(3)): READY, STOPPING, STATUS and WATCHDOG datagrams.

Ten lines of socket code; the PyPI wrappers (sdnotify, systemd-python) are unmaintained or
need libsystemd headers, so the protocol is spoken here directly.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def notify(state: str, socket_path: str | None = None) -> bool:
    """Send ``state`` (e.g. 'READY=1') to $NOTIFY_SOCKET. False when not run by systemd."""
    path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # '@' = abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True


def watchdog_interval_s() -> float | None:
    """Half of WATCHDOG_USEC (as systemd recommends), when the watchdog is on for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


class Watchdog:
    """Pings WATCHDOG=1 while ``healthy()`` says so; a wedged service is then restarted by systemd."""

    def __init__(self, healthy: Callable[[], bool], interval_s: float):
        self.healthy = healthy
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="systemd-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if self.healthy():
                    notify("WATCHDOG=1")
                else:
                    log.warning("not healthy: withholding the systemd watchdog ping")
            except Exception:  # the watchdog must never die of a failed health probe
                log.exception("health probe for the watchdog failed")
