"""An Ordergroove double on 127.0.0.1 that behaves like the documented Bulk Update
(../shared/specs/ordergroove, read by tests/contract/ordergroove_docs.py):

- ``PATCH /products-batch/update/`` only; the ``authorization`` header is checked exactly (its own
  HMAC implementation): a forged signature, an unknown public id or a ``ts`` outside the last two
  hours is answered 401 ``{"detail": ...}`` and nothing is applied;
- the body must be a JSON array of documented product fields, at most 100 products (400 otherwise);
- one result per product in ``{"results": [...]}``: 200 (applied), 404 (unknown product) or 400
  (a product Ordergroove refuses, e.g. ``live`` not a boolean, or one marked with ``refuse``);
- the Bulk Update throttle (600 requests/min): 429 with ``Retry-After`` once the window is spent;
- faults from tests/fakes/served.py: any status with headers and body, a hang, a lost answer.

Leads, not confirmed in ../shared/specs: the status and body of a refused signature (401 with a
Django REST Framework style ``detail``), the 207 status of a mixed answer (vendor-apis.md), and the
per-product ``message`` of a 400.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.contract.ordergroove_docs import auth_problems, item_problems, request_problems
from tests.fakes.served import Fault, Served, drop_connection, send_json

if TYPE_CHECKING:
    from erp_bridge.connectors.ordergroove import OrdergrooveConnector
    from erp_bridge.mapping.schema import SystemMapping

PUBLIC_ID = "og-merchant-4f2a"
SIG_FIELD = "merchant-level-77"
HASH_KEY = "Mt!ZQ45q&GHsgiRD8{NB-_h87#rjvbn0"  # the HMAC guide's example key
SECRETS = {"ordergroove_public_id": PUBLIC_ID, "ordergroove_sig_field": SIG_FIELD, "ordergroove_hash_key": HASH_KEY}
PRODUCTS = {"chair-blue": "166603786142092350", "chair-red": "166603786142092351"}


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None


@dataclass
class FakeOrdergroove(Served):
    """``with FakeOrdergroove() as og:``; ``og.url`` is the REST API origin."""

    quota: int = 600
    window_s: float = 60.0
    live: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(PRODUCTS.values(), True))
    #: products Ordergroove refuses to update (per-product 400)
    refuse: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    #: (product id, live) applied, in order
    applied: list[tuple[str, bool]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cond = threading.Condition()
        self._window_start, self._used = time.monotonic(), 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    def fail_next(self, *faults: Fault) -> None:
        with self.cond:
            self.faults.extend(faults)

    def flags_sent(self, product_id: str | None = None) -> list[tuple[str, bool]]:
        with self.cond:
            return [a for a in self.applied if product_id is None or a[0] == product_id]

    def handle(self, method: str, path: str, headers: dict[str, str],
               body: bytes) -> tuple[int, dict[str, str], Any, str | None, float]:
        """(status, headers, payload, drop, hang seconds) for one request."""
        with self.cond:
            record = Received(method, path, headers, body)
            self.received.append(record)
            fault = next((f for f in self.faults if f.path is None or f.path in path), None)
            if fault is not None:
                self.faults.remove(fault)
            if fault is not None and fault.drop != "after_commit":
                status, answer, head = fault.status, fault.body, fault.headers
            else:
                status, answer, head = self._serve(method, path, headers, body)
            record.status = status
            self.cond.notify_all()
        return status, head, answer, fault.drop if fault else None, fault.hang_s if fault else 0.0

    def _serve(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict]:
        if self._throttled():
            return 429, {"detail": "Request was throttled. Expected available in 1 second."}, {"Retry-After": "1"}
        refused = auth_problems(headers, PUBLIC_ID, SIG_FIELD, HASH_KEY)
        if refused:
            return 401, {"detail": f"Authentication failed: {refused[0]}."}, {}
        problems = [p for p in request_problems(method, path, headers, body) if not p.startswith("[")]
        if problems:
            return (404 if "is not PATCH" in problems[0] else 400), {"detail": problems[0]}, {}
        results = [self._update(item) for item in json.loads(body)]
        return (200 if all(r["status"] == 200 for r in results) else 207), {"results": results}, {}

    def _update(self, item: Any) -> dict[str, Any]:
        pid = item.get("product_id") if isinstance(item, dict) else None
        if isinstance(pid, str) and pid not in self.live:
            return {"product_id": pid, "status": 404}
        problems = item_problems(item)
        if problems or pid in self.refuse:
            return {"product_id": str(pid), "status": 400, "message": problems[0] if problems else
                    "product is discontinued and cannot be updated"}
        if "live" in item:
            self.live[pid] = item["live"]
            self.applied.append((pid, item["live"]))
        return {"product_id": pid, "status": 200}

    def _throttled(self) -> bool:
        if time.monotonic() - self._window_start >= self.window_s:
            self._window_start, self._used = time.monotonic(), 0
        self._used += 1
        return self._used > self.quota


def _handler(og: FakeOrdergroove) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_GET(self) -> None:
            self._serve("GET")

        def _serve(self, method: str) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, payload, drop, hang_s = og.handle(method, self.path, dict(self.headers), raw)
            if hang_s:
                time.sleep(hang_s)
            if drop:
                return drop_connection(self)  # Ordergroove or the network died mid-answer
            send_json(self, status, headers, payload)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


# --- helpers the Ordergroove tests share ------------------------------------------------------
MAPPING_FILE = Path(__file__).resolve().parents[2] / "mappings" / "ordergroove.yaml"


def og_mapping(og: FakeOrdergroove, *, timeout_s: float = 2.0, batch_size: int | None = None,
               policy: dict[str, Any] | None = None) -> SystemMapping:
    """The shipped mapping (mappings/ordergroove.yaml) pointed at the double: tests run what ships."""
    from erp_bridge.mapping.schema import SystemMapping
    from erp_bridge.yamlpos import load_yaml_file

    data = load_yaml_file(MAPPING_FILE).data
    data["connection"].update(base_url=og.url, timeout_s=timeout_s)
    if batch_size is not None:
        data["writes"]["batch_size"] = batch_size
    data["quantity_policy"].update(policy or {})
    return SystemMapping.model_validate(data)


def connector_for(og: FakeOrdergroove, data_dir: Path | str, *, mapping: SystemMapping | None = None,
                  clock: Callable[[], float] = time.time, storage: str | None = None) -> OrdergrooveConnector:
    """The connector as the registry builds it (same factory), on the double; its flags in
    ``storage`` (default: the SQLite queue file in ``data_dir``)."""
    from erp_bridge.connectors.ordergroove import from_context
    from erp_bridge.connectors.runtime.context import ConnectorContext

    mapping = mapping or og_mapping(og)
    ctx = ConnectorContext(mapping, SECRETS.__getitem__, {}, storage or f"sqlite:///{data_dir}/queue.sqlite3")
    return from_context(ctx, clock=clock)
