"""Run the HTTP service and the workers in one process, under systemd or not."""
from __future__ import annotations

import logging

import uvicorn

from ..runtime import build_runtime
from ..settings import Settings
from ..systemd import Watchdog, notify, watchdog_interval_s
from .app import create_app
from .guard import protocol_with

log = logging.getLogger(__name__)


class NotifyingServer(uvicorn.Server):
    """Tells systemd READY=1 once the socket is bound and the workers run, STOPPING=1 on exit."""

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            notify("READY=1")

    async def shutdown(self, sockets=None) -> None:
        notify("STOPPING=1")
        await super().shutdown(sockets)


def uvicorn_config(settings: Settings, app) -> uvicorn.Config:
    http = settings.http
    return uvicorn.Config(app, host=http.host, port=http.port,
                          log_config=None, access_log=False, lifespan="on",
                          timeout_graceful_shutdown=round(settings.workers.shutdown_deadline_s),
                          # h11, not httptools: it bounds the header block, and guard.py adds a
                          # deadline for each request's headers (slowloris)
                          http=protocol_with(http.header_timeout_s),
                          h11_max_incomplete_event_size=http.max_header_bytes,
                          limit_concurrency=http.max_connections, timeout_keep_alive=5)


def serve(settings: Settings) -> int:
    runtime = build_runtime(settings)
    config = uvicorn_config(settings, create_app(runtime))
    server = NotifyingServer(config)
    interval = watchdog_interval_s()
    watchdog = Watchdog(runtime.healthy, interval).start() if interval else None
    log.info("erp-bridge listening", extra={"host": settings.http.host, "port": settings.http.port})
    try:
        server.run()
    finally:
        if watchdog:
            watchdog.stop()
    return 0 if server.started else 1
