"""Wiring: settings -> queue -> mappings -> connectors -> synchronizers -> dispatcher. Built once.

A system whose mapping names a secret that is not configured is *inactive*: it is validated but
gets no connector, no route and no queue entries, and the log and ``config check`` say which
secret to set. That is what lets the example configuration start with no secrets at all.
"""
from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BridgeError, ConfigError, Problem
from .queue.base import SOR_CHANGE_KINDS, Queue, RetryPolicy, State
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
    _scheduled: list = field(default_factory=list)
    #: masks every configured secret value in a text (errors before they are stored or shown)
    redact: Any = None

    def __post_init__(self) -> None:
        from .logs import Redactor
        from .sync.intake import Intake

        # SQLite: a webhook's statements on the event loop, its commit on a thread (sync/intake.py)
        self.intake = Intake(self.queue.enqueue, begin=getattr(self.queue, "begin_enqueue", None))
        if self.redact is None:
            self.redact = Redactor(self.settings.secret_values())

    def start(self) -> None:
        self.dispatcher.start()
        for poller in self.pollers.values():
            poller.start()
        if self.settings.queue.retention_days:
            self._maintenance = _Every(MAINTENANCE_INTERVAL_S, self.maintain, "maintenance").start()
        self._scheduled = [_Every(every, task, name).start() for every, task, name in self._reconcile_schedule()]
        log.info("workers started", extra={"workers": self.settings.workers.count,
                                           "targets": sorted(self.connectors), "inactive": sorted(self.inactive)})

    def stop(self) -> None:
        """Stop taking work; in-flight work finishes or is released within the deadline."""
        if self._maintenance:
            self._maintenance.stop()
        for poller in self.pollers.values():
            poller.stop()
        for task in self._scheduled:
            task.stop()
        self.dispatcher.stop(self.settings.workers.shutdown_deadline_s)
        self.close()
        log.info("workers stopped")

    def close(self) -> None:
        """Release connectors and storage (a runtime built for a command that started nothing)."""
        self.intake.close()  # after the workers: an inbox worker may still be storing
        for connector in self.connectors.values():
            connector.close()
        self.figures.close()
        self.queue.close()

    def _reconcile_schedule(self) -> list:
        from .sync.reconcile import reconcile

        r = self.settings.reconcile
        runs = [(r.every_s, lambda: reconcile(self, fix=r.fix), "reconcile"),
                (r.sample_every_s, lambda: reconcile(self, fix=r.fix, sample=r.sample_size), "reconcile-sample")]
        return [run for run in runs if run[0] > 0]

    def workers_alive(self) -> bool:
        return self.dispatcher.alive() and all(p.alive() for p in self.pollers.values())

    def readiness(self) -> dict[str, dict]:
        """What /readyz shows, unauthenticated: states and counts, never a configuration value
        (no names, paths, URLs or secret names; `config check` and the log have those)."""
        checks: dict[str, dict] = {"workers": {"ok": self.workers_alive()}}
        try:
            self.queue.ping()
            checks["queue"] = {"ok": True}
        except Exception as exc:  # readiness reports any failure, whatever its type
            log.warning("readiness: the queue does not answer: %s", exc)
            checks["queue"] = {"ok": False, "error": f"the queue does not answer ({type(exc).__name__}); see the log"}
        checks["systems"] = {"ok": True, "active": len(self.connectors), "inactive": len(self.inactive)}
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
        from .connectors.runtime.ledger import prune  # connector ledgers live in the queue's storage

        purged["ledgers"] = prune(self.settings.queue_url, older_than_s)
        log.info("maintenance", extra={"purged": purged, "retention_days": self.settings.queue.retention_days})
        return purged

    def accept(self, entries: list) -> list:
        """Durably store entries (sharing the commit with concurrent callers), then wake the workers."""
        stored = self.intake.accept(entries) if entries else []
        if entries:
            self.dispatcher.wake()
        return stored

    async def store(self, entries: list) -> list:
        """``accept`` for the event loop (a webhook): awaits the commit without holding a thread."""
        stored = await self.intake.store(entries) if entries else []
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

    def start(self) -> _Every:
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
    return RetryPolicy(max_attempts=r.max_attempts, base_s=r.base_s, cap_s=r.cap_s, jitter=r.jitter,
                       sale_max_attempts=r.sale_max_attempts)


def _open_queue(settings: Settings) -> Queue:
    from .queue import open_queue

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    return open_queue(settings.queue_url, retry_policy(settings))


@contextmanager
def open_queue_for(settings: Settings, existing: bool = False) -> Iterator[Queue]:
    """``existing``: the queue must be there already (status, dlq): a command pointed at the wrong
    config must say so, not open a new, empty queue in ./var."""
    if existing:
        _must_exist(settings)
    queue = _open_queue(settings)
    try:
        yield queue
    finally:
        queue.close()


def mapping_files(settings: Settings) -> list[Path]:
    """The mapping files of ``mappings_dir``; a missing or empty folder is a configuration error
    that names it (never a silent check of nothing, or of ./mappings)."""
    directory = Path(settings.mappings_dir)
    if not directory.is_dir():
        raise ConfigError(f"mappings_dir {directory.resolve()}: no such directory (set mappings_dir in "
                          f"the config file, or {ENV_PREFIX}MAPPINGS_DIR)")
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ConfigError(f"mappings_dir {directory.resolve()}: holds no mapping files (*.yaml)")
    return files


def _must_exist(settings: Settings) -> None:
    url = settings.queue_url
    path = Path(url.removeprefix("sqlite:///"))
    if url.startswith("sqlite:///") and not path.exists():
        raise ConfigError(f"no queue at {path.resolve()}: is this the service's configuration? Pass "
                          f"--config (or set {ENV_PREFIX}CONFIG); an installed service uses "
                          f"/etc/erp-bridge/config.yaml")


def load_mapping_set(settings: Settings):
    from .mapping.loader import load_mappings

    mapping_files(settings)
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


@dataclass
class Parts:
    """What ``serve`` and ``worker`` run on, and ``config check`` builds to approve a config."""

    all_mappings: Any
    mappings: Any
    inactive: dict
    connectors: dict


def build_parts(settings: Settings) -> Parts:
    """The one build both ``serve`` and ``config check`` go through: mappings, active systems,
    connectors (``registry.build(mapping, settings, lookups)``), the queue URL, and that every
    channel's sales can reach an active system of record. Every problem is reported at once, with
    file, line and key where a file is to blame; connectors built are closed on failure."""
    from .connectors import registry
    from .queue import check_queue_url

    everything = load_mapping_set(settings)
    mappings, inactive = split_active(settings, everything)
    problems: list[Problem] = []
    try:
        check_queue_url(settings.queue_url)
    except ConfigError as exc:
        problems += [Problem(p.file or "settings", p.line, p.column, p.path or "queue.url", p.message)
                     for p in exc.problems]
    connectors = {}
    for name, m in mappings.systems.items():
        try:
            connectors[name] = registry.build(m, settings, mappings.lookups)
        except ConfigError as exc:
            problems += _locate(everything.files.get(name), exc)
    problems += _unroutable(everything, mappings, inactive)
    if problems:
        for connector in connectors.values():
            connector.close()
        raise ConfigError(problems)
    return Parts(everything, mappings, inactive, connectors)


def _locate(file: str | None, exc: ConfigError) -> list[Problem]:
    """A connector's refusal, pointed at the key of the mapping file it names (else ``connector``)."""
    from .yamlpos import load_yaml_file

    if not file:
        return list(exc.problems)
    try:
        doc = load_yaml_file(Path(file), file)
    except ConfigError:
        return list(exc.problems)
    out = []
    for p in exc.problems:
        keys = re.findall(r"\b([a-z_]+(?:\.[a-z_0-9]+)+)\b", p.message)
        path = next((k.split(".") for k in keys if k.split(".")[0] in (doc.data or {})), ["connector"])
        out.append(doc.problem(path, p.message))
    return out


def _unroutable(everything, active, inactive: dict) -> list[Problem]:
    """A channel that takes sales (webhooks) needs an active system of record for each of its
    locations; otherwise every sale would fail. Named with what is missing."""
    problems = []
    for name, m in active.systems.items():
        if getattr(m, "webhooks", None) is None or "channel" not in m.roles:
            continue
        for entry in m.locations.map:
            owners = [s for s, sm in everything.systems.items() if sm.role_of(entry.internal) == "system_of_record"]
            if any(s in active.systems for s in owners):
                continue
            why = "; ".join(f"{s} is INACTIVE: {inactive[s]}" for s in owners if s in inactive) or \
                "no mapping file makes it a system of record"
            problems.append(Problem(everything.files.get(name, name), None, None, "webhooks",
                                    f"system {name} takes sales for location '{entry.internal}', but no active "
                                    f"system of record can apply them ({why})"))
    return problems


def check_mappings(settings: Settings) -> list[str]:
    """``config check``: the build ``serve`` does (raises ConfigError as it would), then a summary.
    Files connectors keep (ledgers) go to a scratch folder: a check run as root must not leave
    root-owned files in the service's data_dir."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="erp-bridge-check-") as scratch:
        checked = settings.model_copy(update={"data_dir": Path(scratch)})
        if not settings.queue.url:
            checked = checked.model_copy(update={"queue": settings.queue.model_copy(
                update={"url": settings.queue_url})})
        return _summary(build_parts(checked))


def _summary(parts: Parts) -> list[str]:
    try:
        return [f"mapping {name} ({parts.all_mappings.files.get(name, '')}): {m.connector}, "
                f"{', '.join(sorted(m.role_names()))}"
                + (f" -- INACTIVE: {parts.inactive[name]}" if name in parts.inactive else "")
                for name, m in sorted(parts.all_mappings.systems.items())]
    finally:
        for connector in parts.connectors.values():
            connector.close()


def build_runtime(settings: Settings) -> Runtime:
    from .dispatch.dispatcher import Dispatcher
    from .sync.availability import AvailabilityCache, AvailabilityPush, SorReader
    from .sync.figures import FigureStore
    from .sync.router import Router, prepare

    parts = build_parts(settings)
    mappings, inactive, connectors = parts.mappings, parts.inactive, parts.connectors
    for name, why in inactive.items():
        log.warning("system %s is inactive: %s", name, why, extra={"system": name})
    queue = _open_queue(settings)
    cache, figures = AvailabilityCache(), FigureStore(settings.queue_url)  # the queue's storage
    reader = SorReader(mappings, connectors, cache, queue)
    dispatcher = Dispatcher.from_settings(queue, connectors, settings, mappings,
                                          prepare=lambda event: prepare(mappings, event),
                                          pusher=AvailabilityPush(mappings, reader, figures),
                                          before_ack=lambda target, entries: _invalidate(cache, entries, ACK_HOLD_S),
                                          on_final=lambda target, finals: _final(runtime, cache, target, finals))
    queue.subscribe(dispatcher.wake)  # PostgreSQL: work queued by any process wakes idle workers
    if any("pull_client" in m.role_names() for m in parts.all_mappings.systems.values()):
        # pull answers come from a cache per process: every process's acks tell all of them
        queue.announce_applied()
        queue.subscribe_applied(cache.forget)
    router = Router(mappings)
    runtime = Runtime(settings, queue, mappings, connectors, dispatcher, router, cache, reader, figures,
                      inactive=inactive)
    runtime.pollers = _pollers(runtime)
    return runtime


def _report(runtime: Runtime, target: str, entry, state, error) -> None:
    """Per-target results go back to the outbox the entry came from (Odoo shows them)."""
    poller = runtime.pollers.get((entry.payload or {}).get("system"))
    if poller is not None:
        poller.report(target, entry, state, error)


#: before an ack, the availability cache holds the keys (caches nothing for them) until the ack's
#: own invalidation, or this long if that never comes (the ack failed: the lease was lost)
ACK_HOLD_S = 30.0


def _final(runtime: Runtime, cache, target: str, finals: list) -> None:
    """After a call's ack: invalidate again and end the hold (a read that started between the
    first invalidation and the ack shows the change and counts it a second time), refresh the
    channels of what the system of record applied, then report each result."""
    done = [f.entry for f in finals if f.state is State.DONE]
    if done:
        _invalidate(cache, done)
        try:
            _refresh_after_applied(runtime, target, done)
        except Exception:  # the figures stay as they are (low at worst); the reports still go back
            log.exception("refreshing the channels after %d entries applied to %s failed", len(done), target)
    for final in finals:
        try:
            _report(runtime, target, final.entry, final.state, final.error)
        except Exception:  # one outbox's report must not keep the others from theirs
            log.exception("reporting the result of %s failed", final.entry.idempotency_key)


def _refresh_after_applied(runtime: Runtime, target: str, entries: list) -> None:
    """Channel sales and returns the system of record just applied: the channels' figures are
    read again. A push that read the SoR between the apply and the ack counted a sale twice
    (safe, but low); a SoR with an outbox (Odoo) says so itself, the others (SAP, NetSuite, D365,
    Zoho) need this. Coalesced per key, an unchanged figure is not pushed, and a call's refreshes
    are stored in one commit (one per entry made a worker wait for a commit per sale)."""
    from .connectors.base import Capability

    connector = runtime.connectors.get(target)
    if connector is None or Capability.OUTBOX in connector.capabilities:
        return
    refresh = []
    for entry in entries:
        if entry.kind not in ("decrement", "increment"):
            continue
        try:
            refresh += runtime.router.availability(target, entry.item, entry.location, cause=f"applied:{entry.id}")
        except BridgeError:
            continue  # a location without channels, or not this SoR's: nothing to refresh
    runtime.accept(refresh)


def _invalidate(cache, entries, hold_s: float = 0.0) -> None:
    """A change applied to the SoR makes its cached availability stale (see AvailabilityCache)."""
    for entry in entries:
        if entry.kind in SOR_CHANGE_KINDS:
            cache.invalidate(entry.item, entry.location, hold_s)


def _pollers(runtime: Runtime) -> dict:
    """One outbox poller per system of record whose connector reads an outbox (Odoo), one history
    poller per channel whose connector polls its changes (Square), one inbox poller per channel
    whose webhooks are resolved after they are stored (BigCommerce, WooCommerce)."""
    from .connectors.base import Capability
    from .sync.channel_poll import ChannelPoller
    from .sync.inbox import InboxPoller
    from .sync.outbox import OutboxPoller

    pollers: dict = {name: OutboxPoller(name, connector, runtime.router, runtime.queue, runtime.cache,
                                        runtime.settings.workers.outbox_poll_s, on_enqueued=runtime.dispatcher.wake)
                     for name, connector in runtime.connectors.items() if Capability.OUTBOX in connector.capabilities}
    # channels whose webhooks only nudge: their sales are read from the channel's history
    history_s = runtime.settings.workers.channel_poll_s  # a notification (Square's) wakes it sooner
    pollers.update({name: ChannelPoller(name, connector, runtime.router, runtime.queue,
                                        history_s, on_enqueued=runtime.dispatcher.wake)
                    for name, connector in runtime.connectors.items()
                    if Capability.POLL_CHANGES in connector.capabilities})
    pollers.update({name: InboxPoller(connector, runtime.router, runtime.accept, runtime.settings.workers.outbox_poll_s)
                    for name, connector in runtime.connectors.items() if Capability.INBOX in connector.capabilities})
    return pollers


def run_workers(settings: Settings) -> int:
    """``erp-bridge worker``: the dispatcher and outbox pollers without the HTTP service, until
    SIGTERM/SIGINT; with ``workers.metrics_port``, Prometheus ``/metrics`` on that port."""
    exporter = metrics_exporter(settings.http.host, settings.workers.metrics_port)
    try:
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
    finally:
        if exporter:
            exporter.shutdown()
            exporter.server_close()
    return 0


def metrics_exporter(host: str, port: int | None) -> Any:
    """prometheus_client's exposition server (a thread) for the process's registry on ``host:port``
    (every path answers the metrics), or None without a port. A port another process holds is a
    configuration error, reported before anything starts."""
    if port is None:
        return None
    from prometheus_client import REGISTRY, start_http_server

    try:
        server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        raise ConfigError(f"workers.metrics_port {port} at http.host {host}: {exc.strerror or exc}; pick a "
                          "free port for this worker's /metrics, or leave workers.metrics_port unset "
                          "(no listener)") from None
    log.info("metrics at http://%s:%d/metrics", host, port)
    return server
