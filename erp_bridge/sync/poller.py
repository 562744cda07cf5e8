"""The one loop every poller runs in (the outbox, a channel's history, a webhook inbox).

A subclass names itself and implements ``run_once() -> int`` (how much it handled). The loop runs
it in a daemon thread, at once when nudged (Odoo's post-commit nudge, a verified notification, a
stored delivery) and every ``interval_s`` otherwise; a pass that handled a full page (``page``)
runs again at once. A failing pass is logged, never fatal: a BridgeError (the system is down or
refused) as a warning, anything else with its traceback.
"""
from __future__ import annotations

import logging
import threading

from ..errors import BridgeError

log = logging.getLogger(__name__)


class PollLoop:
    #: thread name and log prefix, e.g. "outbox-odoo"
    name: str = "poller"
    interval_s: float = 2.0
    #: a pass that handled at least this many is followed by another at once (0: never)
    page: int = 0

    def __init__(self) -> None:
        self._nudged = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        raise NotImplementedError

    def report(self, target: str, entry: object, state: str, error: str | None) -> None:
        """An entry this poller queued ended done or dead at ``target``; only an outbox, whose
        system shows per-target results, does anything with it."""

    def nudge(self) -> None:
        self._nudged.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._nudged.set()
        if self._thread:
            self._thread.join(timeout_s)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._nudged.clear()
            try:
                busy = self.run_once()
            except BridgeError as exc:  # down or refused: what it had stays, try again later
                log.warning("%s: %s", self.name, exc, extra={"poller": self.name, "error": str(exc)})
                busy = 0
            except Exception:  # the poller must outlive any one bad pass
                log.exception("%s: pass failed", self.name)
                busy = 0
            if not self.page or busy < self.page:
                self._nudged.wait(self.interval_s)
