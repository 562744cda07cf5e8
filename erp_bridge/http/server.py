"""Run the HTTP service and the workers in one process, under systemd or not."""
from __future__ import annotations

import gc
import logging
import sys

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
            settle_the_heap()
            notify("READY=1")

    async def shutdown(self, sockets=None) -> None:
        notify("STOPPING=1")
        await super().shutdown(sockets)


def uvicorn_config(settings: Settings, app) -> uvicorn.Config:
    http = settings.http
    return uvicorn.Config(app, host=http.host, port=http.port,
                          log_config=None, access_log=False, lifespan="on",
                          timeout_graceful_shutdown=round(settings.workers.shutdown_deadline_s),
                          # httptools with a deadline and a size bound on each request's headers
                          http=protocol_with(http.header_timeout_s, http.max_header_bytes),
                          limit_concurrency=http.max_connections, timeout_keep_alive=5)


#: how long a thread may hold the GIL while another waits for it (CPython's default: 5 ms)
SWITCH_INTERVAL_S = 0.001


def share_the_gil() -> None:
    """The intake's committer thread releases the GIL in every SQLite call and must take it back
    from the event loop, which under load always wants it: at CPython's 5 ms interval each commit
    waited several intervals (median 6-8 ms for a 1 ms commit; 1.8-1.9 ms at 1 ms, measured with a
    busy loop beside it), so fewer webhooks shared each fsync and each waited longer (issue 15)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def settle_the_heap() -> None:
    """What exists once the service runs (modules, mappings, the app: about 90,000 objects) lives
    as long as the process: take it out of the collector's full passes (``gc.freeze``). Before,
    each full collection walked it all, 17 in 8 s at 2,400 requests/s, up to 100 ms each, which
    stopped every request in flight and was most of the pull's p99 (issue 15)."""
    gc.collect()
    gc.freeze()


def serve(settings: Settings) -> int:
    share_the_gil()
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
