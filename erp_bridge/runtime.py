"""Wiring: settings -> queue -> mappings -> connectors -> dispatcher. Built once at start."""
from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import ConfigError
from .queue.base import Queue, RetryPolicy
from .settings import Settings
from .systemd import Watchdog, notify, watchdog_interval_s

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, queue: Queue, mappings, connectors: dict, dispatcher):
        self.settings = settings
        self.queue = queue
        self.mappings = mappings
        self.connectors = connectors
        self.dispatcher = dispatcher

    def start(self) -> None:
        self.dispatcher.start()
        log.info("workers started", extra={"workers": self.settings.workers.count,
                                           "targets": sorted(self.connectors)})

    def stop(self) -> None:
        """Stop leasing; in-flight work finishes or is released within the deadline."""
        self.dispatcher.stop(self.settings.workers.shutdown_deadline_s)
        for connector in self.connectors.values():
            connector.close()
        self.queue.close()
        log.info("workers stopped")

    def workers_alive(self) -> bool:
        return self.dispatcher.alive()

    def readiness(self) -> dict[str, dict]:
        checks = {"workers": {"ok": self.workers_alive()}}
        try:
            self.queue.ping()
            checks["queue"] = {"ok": True}
        except Exception as exc:  # readiness reports any failure, whatever its type
            checks["queue"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return checks

    def healthy(self) -> bool:
        return all(check["ok"] for check in self.readiness().values())


def retry_policy(settings: Settings) -> RetryPolicy:
    r = settings.retry
    return RetryPolicy(max_attempts=r.max_attempts, base_s=r.base_s, cap_s=r.cap_s, jitter=r.jitter)


def _open_queue(settings: Settings) -> Queue:
    from .queue import open_queue

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    return open_queue(settings.queue_url, retry_policy(settings))


@contextmanager
def open_queue_for(settings: Settings) -> Iterator[Queue]:
    queue = _open_queue(settings)
    try:
        yield queue
    finally:
        queue.close()


def load_mapping_set(settings: Settings):
    from .mapping.loader import load_mappings

    return load_mappings(Path(settings.mappings_dir), secret_names=set(settings.secrets))


def check_mappings(settings: Settings) -> list[str]:
    mappings = load_mapping_set(settings)
    return [f"mapping {name}: {m.connector} ({', '.join(sorted(m.role_names()))})"
            for name, m in sorted(mappings.systems.items())]


def build_runtime(settings: Settings) -> Runtime:
    from .connectors import registry
    from .dispatch.dispatcher import Dispatcher

    mappings = load_mapping_set(settings)
    connectors = {name: registry.build(m, settings) for name, m in mappings.systems.items()}
    queue = _open_queue(settings)
    dispatcher = Dispatcher(queue, connectors, mappings=mappings, settings=settings)
    return Runtime(settings, queue, mappings, connectors, dispatcher)


def run_workers(settings: Settings) -> int:
    """``erp-bridge worker``: the dispatcher without HTTP, until SIGTERM or SIGINT."""
    runtime = build_runtime(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runtime.start()
    notify("READY=1")
    interval = watchdog_interval_s()
    watchdog = Watchdog(runtime.healthy, interval).start() if interval else None
    stop.wait()
    notify("STOPPING=1")
    if watchdog:
        watchdog.stop()
    runtime.stop()
    return 0


__all__ = ["Runtime", "build_runtime", "run_workers", "open_queue_for", "check_mappings", "ConfigError"]
