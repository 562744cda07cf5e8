"""Wiring: settings -> queue -> mappings -> connectors -> synchronizers -> dispatcher. Built once.

A system whose mapping names a secret that is not configured is *inactive*: it is validated but
gets no connector, no route and no queue entries, and the log and ``config check`` say which
secret to set. That is what lets the example configuration start with no secrets at all.
"""
from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .queue.base import Queue, RetryPolicy
from .settings import ENV_PREFIX, Settings
from .systemd import Watchdog, notify, watchdog_interval_s

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    queue: Queue
    mappings: Any
    connectors: dict
    dispatcher: Any
    router: Any
    cache: Any
    reader: Any
    figures: Any
    pollers: dict = field(default_factory=dict)
    inactive: dict = field(default_factory=dict)
    intake: Any = None
    _maintenance: Any = None

    def __post_init__(self) -> None:
        from .queue.groupcommit import GroupCommit

        self.intake = GroupCommit(self.queue.enqueue)

    def start(self) -> None:
        self.dispatcher.start()
        for poller in self.pollers.values():
            poller.start()
        if self.settings.queue.retention_days:
            self._maintenance = _Every(MAINTENANCE_INTERVAL_S, self.maintain, "maintenance").start()
        log.info("workers started", extra={"workers": self.settings.workers.count,
                                           "targets": sorted(self.connectors), "inactive": sorted(self.inactive)})

    def stop(self) -> None:
        """Stop taking work; in-flight work finishes or is released within the deadline."""
        if self._maintenance:
            self._maintenance.stop()
        for poller in self.pollers.values():
            poller.stop()
        self.dispatcher.stop(self.settings.workers.shutdown_deadline_s)
        for connector in self.connectors.values():
            connector.close()
        self.figures.close()
        self.queue.close()
        log.info("workers stopped")

    def workers_alive(self) -> bool:
        return self.dispatcher.alive() and all(p.alive() for p in self.pollers.values())

    def readiness(self) -> dict[str, dict]:
        checks: dict[str, dict] = {"workers": {"ok": self.workers_alive()}}
        try:
            self.queue.ping()
            checks["queue"] = {"ok": True}
        except Exception as exc:  # readiness reports any failure, whatever its type
            checks["queue"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        checks["systems"] = {"ok": True, "active": sorted(self.connectors), "inactive": self.inactive}
        return checks

    def healthy(self) -> bool:
        return all(check["ok"] for check in self.readiness().values())

    def maintain(self) -> dict[str, int]:
        """Delete done entries and connector ledger rows older than ``queue.retention_days``
        (0: keep everything)."""
        if not self.settings.queue.retention_days:
            return {}
        older_than_s = self.settings.queue.retention_days * 86400
        purged = {"queue": self.queue.purge_done(older_than_s)}
        if self.settings.queue_url.startswith("sqlite:"):  # connector ledgers live in the queue's storage
            from .connectors.runtime.ledger import prune

            purged["ledgers"] = prune(self.settings.queue_url, older_than_s)
        log.info("maintenance", extra={"purged": purged, "retention_days": self.settings.queue.retention_days})
        return purged

    def accept(self, entries: list) -> list:
        """Durably store entries (sharing the commit with concurrent callers), then wake the workers."""
        stored = self.intake.submit(entries) if entries else []
        if entries:
            self.dispatcher.wake()
        return stored


MAINTENANCE_INTERVAL_S = 3600.0


class _Every:
    """Runs ``task`` every ``interval_s`` in a daemon thread; a failure is logged, never fatal."""

    def __init__(self, interval_s: float, task, name: str):
        self.interval_s, self.task = interval_s, task
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "_Every":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.task()
            except Exception:  # maintenance must never take the service down
                log.exception("%s failed", self._thread.name)


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

    return load_mappings(Path(settings.mappings_dir))


def secrets_needed(mapping) -> list[str]:
    names = list(mapping.connection.auth.secrets.values())
    webhooks = getattr(mapping, "webhooks", None)
    if webhooks is not None and webhooks.secret:
        names.append(webhooks.secret)
    pull = getattr(mapping, "pull", None)
    if pull is not None and pull.token_secret:
        names.append(pull.token_secret)
    return names


def split_active(settings: Settings, mappings):
    """(mapping set of the systems whose secrets are all set, {inactive system: why})."""
    from .mapping.loader import MappingSet

    inactive = {}
    for name, mapping in mappings.systems.items():
        missing = [s for s in secrets_needed(mapping) if s not in settings.secrets]
        if missing:
            inactive[name] = "missing secret(s): " + ", ".join(
                f"{s} (set {ENV_PREFIX}SECRETS__{s.upper()} or the credential file {s})" for s in missing)
    active = {n: m for n, m in mappings.systems.items() if n not in inactive}
    subset = MappingSet(systems=active, lookups={n: t for n, t in mappings.lookups.items() if n in active},
                        files={n: f for n, f in mappings.files.items() if n in active})
    return subset, inactive


def check_mappings(settings: Settings) -> list[str]:
    mappings = load_mapping_set(settings)
    _, inactive = split_active(settings, mappings)
    return [f"mapping {name} ({mappings.files.get(name, '')}): {m.connector}, {', '.join(sorted(m.role_names()))}"
            + (f" -- INACTIVE: {inactive[name]}" if name in inactive else "")
            for name, m in sorted(mappings.systems.items())]


def build_runtime(settings: Settings) -> Runtime:
    from .connectors import registry
    from .dispatch.dispatcher import Dispatcher
    from .sync.availability import AvailabilityCache, AvailabilityPush, SorReader
    from .sync.figures import FigureStore
    from .sync.router import Router, prepare

    mappings, inactive = split_active(settings, load_mapping_set(settings))
    for name, why in inactive.items():
        log.warning("system %s is inactive: %s", name, why, extra={"system": name})
    connectors = {name: registry.build(m, settings, mappings.lookups) for name, m in mappings.systems.items()}
    queue = _open_queue(settings)
    cache, figures = AvailabilityCache(), FigureStore(Path(settings.data_dir) / "figures.sqlite3")
    reader = SorReader(mappings, connectors, cache, queue)
    dispatcher = Dispatcher.from_settings(queue, connectors, settings, mappings,
                                          prepare=lambda event: prepare(mappings, event),
                                          pusher=AvailabilityPush(mappings, reader, figures),
                                          before_ack=lambda target, entries: _invalidate(cache, entries),
                                          on_final=lambda *args: _report(runtime, *args))
    router = Router(mappings)
    runtime = Runtime(settings, queue, mappings, connectors, dispatcher, router, cache, reader, figures,
                      inactive=inactive)
    runtime.pollers = _pollers(runtime)
    return runtime


def _report(runtime: "Runtime", target: str, entry, state, error) -> None:
    """Per-target results go back to the outbox the entry came from (Odoo shows them)."""
    poller = runtime.pollers.get((entry.payload or {}).get("system"))
    if poller is not None:
        poller.report(target, entry, state, error)


def _invalidate(cache, entries) -> None:
    """A change applied to the SoR makes its cached availability stale (see AvailabilityCache)."""
    for entry in entries:
        if entry.kind in ("decrement", "increment", "count"):
            cache.invalidate(entry.item, entry.location)


def _pollers(runtime: Runtime) -> dict:
    """One outbox poller per system of record whose connector reads an outbox (Odoo), and one inbox
    poller per channel whose webhooks carry ids only (BigCommerce)."""
    from .connectors.base import Capability
    from .sync.inbox import InboxPoller
    from .sync.outbox import OutboxPoller

    pollers: dict = {name: OutboxPoller(name, connector, runtime.router, runtime.queue, runtime.cache,
                                        runtime.settings.workers.outbox_poll_s, on_enqueued=runtime.dispatcher.wake)
                     for name, connector in runtime.connectors.items() if Capability.OUTBOX in connector.capabilities}
    pollers.update({name: InboxPoller(connector, runtime.router, runtime.accept, runtime.settings.workers.outbox_poll_s)
                    for name, connector in runtime.connectors.items() if Capability.INBOX in connector.capabilities})
    return pollers


def run_workers(settings: Settings) -> int:
    """``erp-bridge worker``: the dispatcher and outbox pollers without HTTP, until SIGTERM/SIGINT."""
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

