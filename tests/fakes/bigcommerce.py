"""A BigCommerce double on 127.0.0.1 that behaves like the documented store API.

Modelled (../shared/specs/bigcommerce, vendor-apis.md §8): ``X-Auth-Token``; ``PUT /v3/inventory/
adjustments/absolute`` validated with openapi-core against inventory.v3.yml (a body or header the
spec does not allow is answered 422 with BigCommerce's problem envelope, as is an unknown SKU or
location: the whole payload is refused and nothing applied); the V2 orders and order products a
webhook points at (V2 has no spec in ../shared/specs: shapes from the V2 reference, a lead); the
rate-limit quota per window with its ``X-Rate-Limit-*`` headers on every answer and a 429 without
``Retry-After`` once spent; and, on demand, any status, a hang, or a lost answer after the write.
Webhook callbacks are signed as BigCommerce signs them (Standard Webhooks).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

SPEC = Path("../shared/specs/bigcommerce/inventory.v3.yml")
STORE = "abc123"
ABSOLUTE = f"/stores/{STORE}/v3/inventory/adjustments/absolute"
ITEMS = f"/stores/{STORE}/v3/inventory/items"
ORDER = re.compile(rf"^/stores/{STORE}/v2/orders/(\d+)$")
PRODUCTS = re.compile(rf"^/stores/{STORE}/v2/orders/(\d+)/products$")
_API = None


def openapi():
    """The Inventory API document, loaded once (openapi-core)."""
    global _API
    if _API is None:
        from openapi_core import OpenAPI
        _API = OpenAPI.from_file_path(str(SPEC))
    return _API


def spec_errors(method: str, path: str, headers: dict[str, str], body: bytes,
                query: dict[str, str] | None = None) -> list[str]:
    """Why the Inventory API's OpenAPI refuses this request ([] when it accepts it)."""
    from openapi_core.testing import MockRequest
    request = MockRequest("https://api.bigcommerce.com", method.lower(), path, headers=headers, data=body,
                          args=query or {},
                          content_type=headers.get("Content-Type", "application/json").split(";")[0])
    found = []
    for error in openapi().iter_request_errors(request):
        cause = error.__cause__
        details = [str(e).splitlines()[0] for e in getattr(cause, "schema_errors", None) or []]
        found.append(f"{type(error).__name__}: {'; '.join(details) or str(error)[:200]}")
    return found


def problem(status: int, title: str, **errors: Any) -> dict:
    return {"status": status, "title": title,
            "type": "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes", "errors": errors}


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    hang_s: float = 0.0
    applied: bool = False  # do the work, then answer with the fault (a lost answer)
    path: str = ""  # only for requests whose path contains this


class FakeBigCommerce:
    """``with FakeBigCommerce(token) as store:``; ``store.url`` is the V3 base URL."""

    def __init__(self, token: str, quota: int = 150, window_ms: int = 30000):
        self.token, self.quota, self.window_ms = token, quota, window_ms
        openapi()  # load the spec before the first request, not inside a client's timeout
        self.stock: dict[tuple[str, int], int] = {}
        self.locations: set[int] = {1, 2}
        self.orders: dict[int, dict[str, Any]] = {}
        self.products: dict[int, list[dict[str, Any]]] = {}
        self.requests: list[dict[str, Any]] = []
        self.adjustments: list[dict[str, Any]] = []  # bodies applied, in order
        self.faults: list[Fault] = []
        self._window_start, self._used = time.monotonic(), 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/stores/{STORE}/v3"

    def add_order(self, order_id: int, status_id: int, *lines: tuple[int, str, int]) -> None:
        self.orders[order_id] = {"id": order_id, "status_id": status_id, "status": f"status {status_id}"}
        self.products[order_id] = [{"id": line_id, "order_id": order_id, "product_id": 77, "variant_id": 0,
                                    "sku": sku, "quantity": qty, "name": sku} for line_id, sku, qty in lines]

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, Any, float]:
        with self._lock:
            self.requests.append({"method": method, "path": raw_path, "headers": headers, "body": body})
            fault = next((f for f in self.faults if f.path in raw_path), None)
            if fault is not None:
                self.faults.remove(fault)
            limited, limits = self._limits()
        if fault is not None and not fault.applied:
            return fault.status, {**limits, **fault.headers}, fault.body, fault.hang_s
        if limited:
            return 429, limits, problem(429, "Too many requests"), 0.0
        status, answer = self._answer(method, raw_path, headers, body)
        if fault is not None:
            return fault.status, {**limits, **fault.headers}, fault.body, fault.hang_s
        return status, limits, answer, 0.0

    def _limits(self) -> tuple[bool, dict[str, str]]:
        elapsed_ms = (time.monotonic() - self._window_start) * 1000
        if elapsed_ms >= self.window_ms:
            self._window_start, self._used, elapsed_ms = time.monotonic(), 0, 0
        self._used += 1
        left = max(0, self.quota - self._used)
        return self._used > self.quota, {
            "X-Rate-Limit-Time-Window-Ms": str(self.window_ms), "X-Rate-Limit-Requests-Quota": str(self.quota),
            "X-Rate-Limit-Requests-Left": str(left),
            "X-Rate-Limit-Time-Reset-Ms": str(int(self.window_ms - elapsed_ms))}

    def _answer(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if headers.get("X-Auth-Token") != self.token:
            return 401, problem(401, "You have not been authorized to access this resource")
        parts = urlsplit(raw_path)
        if method == "PUT" and parts.path == ABSOLUTE:
            return self._absolute(method, parts.path, headers, body)
        if method == "GET" and parts.path == ITEMS:
            return self._items(parts.path, headers, {k: v[0] for k, v in parse_qs(parts.query).items()})
        for pattern, reader in ((ORDER, self._order), (PRODUCTS, self._products)):
            match = pattern.match(parts.path)
            if method == "GET" and match:
                return reader(int(match.group(1)), parse_qs(parts.query))
        return 404, [{"status": 404, "message": "The requested resource was not found."}]

    def _absolute(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        errors = spec_errors(method, path, headers, body)
        if errors:
            return 422, problem(422, "JSON data is missing or invalid", spec=errors)
        items = json.loads(body)["items"]
        unknown = [i for i in items if i["location_id"] not in self.locations or (i["sku"], 1) not in self.stock]
        if unknown:
            names = ", ".join(f"sku {i['sku']}" for i in unknown)
            return 422, problem(422, f"Items with identity: [{names}] not found")
        with self._lock:
            for item in items:
                self.stock[(item["sku"], item["location_id"])] = item["quantity"]
            self.adjustments.append(json.loads(body))
        return 200, {"transaction_id": str(uuid.uuid4())}

    def _items(self, path: str, headers: dict[str, str], query: dict[str, str]) -> tuple[int, Any]:
        """Get Inventory at Locations, filtered by ``sku:in`` and ``location_id:in``, paged."""
        unknown = set(query) - {"sku:in", "location_id:in", "variant_id:in", "product_id:in", "location_code:in",
                                "page", "limit"}
        errors = spec_errors("GET", path, headers, b"", query) + [f"unknown parameter {u}" for u in sorted(unknown)]
        if errors:
            return 422, problem(422, "The request is invalid", spec=errors)
        skus = set(query["sku:in"].split(",")) if "sku:in" in query else None
        where = {int(query["location_id:in"])} if "location_id:in" in query else self.locations
        with self._lock:
            rows = sorted({sku for sku, _ in self.stock if skus is None or sku in skus})
            data = [{"identity": {"sku": sku, "variant_id": 1, "product_id": 77},
                     "locations": [{"location_id": loc, "total_inventory_onhand": self.stock[(sku, loc)],
                                    "available_to_sell": self.stock[(sku, loc)]}
                                   for loc in sorted(where) if (sku, loc) in self.stock]} for sku in rows]
        page, limit = int(query.get("page", 1)), int(query.get("limit", 50))
        pages = max(1, -(-len(data) // limit))
        return 200, {"data": data[(page - 1) * limit: page * limit], "meta": {"pagination": {
            "total": len(data), "count": len(data[(page - 1) * limit: page * limit]), "per_page": limit,
            "current_page": page, "total_pages": pages}}}

    def _order(self, order_id: int, query: dict) -> tuple[int, Any]:
        order = self.orders.get(order_id)
        if order is None:
            return 404, [{"status": 404, "message": "The requested resource was not found."}]
        return 200, order

    def _products(self, order_id: int, query: dict) -> tuple[int, Any]:
        if order_id not in self.orders:
            return 404, [{"status": 404, "message": "The requested resource was not found."}]
        page, limit = int(query.get("page", ["1"])[0]), int(query.get("limit", ["50"])[0])
        if limit > 250:
            return 400, [{"status": 400, "message": "The field 'limit' is invalid."}]
        lines = self.products[order_id]
        return 200, lines[(page - 1) * limit: page * limit]

    def start(self) -> FakeBigCommerce:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeBigCommerce:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(store: FakeBigCommerce) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve("GET")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def _serve(self, method: str) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, body, hang_s = store.handle(method, self.path, dict(self.headers), raw)
            if hang_s:
                time.sleep(hang_s)
            payload = b"" if body is None else json.dumps(body).encode()
            kind = "application/problem+json" if status >= 400 and isinstance(body, dict) else "application/json"
            try:
                self.send_response(status)
                for name, value in {**headers, "Content-Type": kind}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# --- callbacks as BigCommerce delivers them ------------------------------------------------------
def signed_callback(secret: str, scope: str, order_id: int, msg_id: str | None = None,
                    timestamp: int | None = None, extra: dict | None = None) -> tuple[dict, bytes]:
    """Headers and body of an order callback (callbacks/*.json), signed Standard Webhooks style."""
    callback = {"scope": scope, "store_id": "1025646", "data": {"type": "order", "id": order_id, **(extra or {})},
                "hash": hashlib.sha1(f"{scope}{order_id}".encode()).hexdigest(), "created_at": int(time.time()),
                "producer": f"stores/{STORE}"}
    body = json.dumps(callback).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    sig = base64.b64encode(hmac.new(secret.encode(), f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
    return {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": stamp,
            "webhook-signature": f"v1,{sig.decode()}"}, body


# --- the example mapping, pointed at a fake store ---------------------------------------------------
TOKEN = "bc_token_fake_0123456789abcdef"
CLIENT_SECRET = "bc_client_secret_fake_fedcba9876543210"
SECRETS = {"bigcommerce_access_token": TOKEN, "bigcommerce_client_secret": CLIENT_SECRET}


def stocked_store(**options: Any) -> FakeBigCommerce:
    store = FakeBigCommerce(TOKEN, **options)
    for sku in ("chair-blue", "chair-red", "BOND-007"):
        store.stock[(sku, 1)] = 5
        store.stock[(sku, 2)] = 5
    return store


def write_mapping(directory: Path, url: str, timeout_s: float = 5.0, batch_size: int | None = None) -> Path:
    source = Path(__file__).resolve().parents[2] / "mappings" / "bigcommerce.yaml"
    directory.mkdir(parents=True, exist_ok=True)
    text = re.sub(r"base_url: \S+", f"base_url: {url}", source.read_text(encoding="utf-8"))
    text = re.sub(r"timeout_s: \S+", f"timeout_s: {timeout_s}", text)
    if batch_size is not None:
        text = re.sub(r"batch_size: \d+", f"batch_size: {batch_size}", text)
    (directory / "bigcommerce.yaml").write_text(text, encoding="utf-8")
    return directory


def connector_for(url: str, directory: Path, storage: Path, **options: Any):
    """The real BigCommerceConnector, built by the registry's factory, talking to ``url``."""
    from erp_bridge.connectors import registry
    from erp_bridge.mapping.loader import load_mappings
    mappings = load_mappings(write_mapping(directory, url, **options))
    return registry.build(mappings.systems["bigcommerce"], SECRETS, mappings.lookups,
                          storage_url=f"sqlite:///{storage}")
