"""A WooCommerce REST API v3 double on 127.0.0.1 that behaves like the documented service.

Modelled (woocommerce-rest-api-docs in ../shared/specs/woocommerce, vendor-apis.md §6): HTTP Basic
with the consumer key and secret (401 with WooCommerce's ``{"code", "message", "data": {"status"}}``
envelope); ``POST /products/batch`` and ``POST /products/<id>/variations/batch`` whose bodies are
checked against the documented property tables (tests/contract/woocommerce_docs.py: an undocumented
or read-only field, a wrong type, more than 100 objects are refused as WooCommerce refuses them);
one answer entry per object, ``{"id", "error"}`` for an unknown id (a partial batch failure); and,
on demand, any status with headers (429 + Retry-After from a host's rate limiter, 5xx), a hang,
or a lost answer after the write happened. WooCommerce core has no rate limit of its own.
Leads, not confirmed in the sources: the exact error codes and messages of the refusals.
"""
from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.contract.woocommerce_docs import BATCH_LIMIT, batch_problems

PREFIX = "/wp-json/wc/v3"
PRODUCTS = re.compile(r"^/products/batch$")
VARIATIONS = re.compile(r"^/products/(\d+)/variations/batch$")
LISTING = re.compile(r"^/products(?:/(\d+)/variations)?$")
#: WordPress caps per_page at 100 (rest_invalid_param above it)
PER_PAGE_MAX = 100


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    hang_s: float = 0.0
    #: write for real, then hang: the answer is lost but the stock was set
    applied: bool = False


def error(code: str, message: str, status: int, **data: Any) -> dict:
    return {"code": code, "message": message, "data": {"status": status, **data}}


class FakeWooCommerce:
    """``with FakeWooCommerce(key, secret) as shop:``; ``shop.url`` is the API base URL."""

    def __init__(self, consumer_key: str, consumer_secret: str):
        self._auth = "Basic " + base64.b64encode(f"{consumer_key}:{consumer_secret}".encode()).decode()
        self.products: dict[int, dict[str, Any]] = {}
        self.variations: dict[tuple[int, int], dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.writes: list[tuple[str, int, int]] = []  # (endpoint, id, stock_quantity) applied, in order
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{PREFIX}"

    def add_product(self, product_id: int, sku: str, stock: int | None = None) -> None:
        self.products[product_id] = {"id": product_id, "sku": sku, "manage_stock": stock is not None,
                                     "stock_quantity": stock}

    def add_variation(self, parent: int, variation_id: int, sku: str, stock: int | None = None) -> None:
        self.variations[(parent, variation_id)] = {"id": variation_id, "sku": sku, "manage_stock": stock is not None,
                                                   "stock_quantity": stock}

    def stock(self, code: str) -> int | None:
        parent, _, variation = code.partition(":")
        row = self.variations[(int(parent), int(variation))] if variation else self.products[int(parent)]
        return row["stock_quantity"]

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict, Any, float]:
        """(status, headers, body, seconds to hang before answering)."""
        with self._lock:
            self.requests.append({"method": method, "path": path, "headers": headers, "body": raw})
            fault = self.faults.pop(0) if self.faults else None
        if fault is not None and not fault.applied:
            return fault.status, fault.headers, fault.body, fault.hang_s
        status, body = self._answer(method, path, headers, raw)
        if fault is not None:
            return fault.status, fault.headers, fault.body, fault.hang_s
        return status, {}, body, 0.0

    def _answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        if headers.get("Authorization") != self._auth:
            return 401, error("woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource.", 401)
        route = path.removeprefix(PREFIX).split("?")[0]
        listing = LISTING.match(route)
        if method == "GET" and listing:
            return self._list(int(listing.group(1)) if listing.group(1) else None, path)
        parent = VARIATIONS.match(route)
        if method != "POST" or not (PRODUCTS.match(route) or parent):
            return 404, error("rest_no_route", "No route was found matching the URL and request method.", 404)
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, error("rest_invalid_json", "Invalid JSON body passed.", 400)
        return self._batch(int(parent.group(1)) if parent else None, body)

    def _list(self, parent: int | None, path: str) -> tuple[int, Any]:
        """``GET /products`` or ``/products/<id>/variations`` with the documented ``include`` and
        ``per_page`` (default 10, at most 100); any other parameter is refused here (unused)."""
        query = parse_qs(urlsplit(path).query)
        if set(query) - {"include", "per_page"}:
            return 400, error("rest_invalid_param", f"Invalid parameter(s): {sorted(set(query) - {'include', 'per_page'})}", 400)
        try:
            per_page = int(query.get("per_page", ["10"])[0])
            include = [int(i) for i in query.get("include", [""])[0].split(",") if i]
        except ValueError:
            return 400, error("rest_invalid_param", "Invalid parameter(s): include, per_page", 400)
        if not 1 <= per_page <= PER_PAGE_MAX:
            return 400, error("rest_invalid_param", "Invalid parameter(s): per_page", 400)
        with self._lock:
            rows = [dict(r) for k, r in (self.variations.items() if parent is not None else self.products.items())
                    if (k[1] if parent is not None else k) in include and (parent is None or k[0] == parent)]
        return 200, rows[:per_page]

    def _batch(self, parent: int | None, body: Any) -> tuple[int, Any]:
        updates = body.get("update") if isinstance(body, dict) else None
        if isinstance(updates, list) and len(updates) > BATCH_LIMIT:
            return 413, error("woocommerce_rest_request_entity_too_large",
                              f"Unable to accept more than {BATCH_LIMIT} items for this request.", 413)
        problems = batch_problems("variation" if parent else "product", body)
        if problems:
            return 400, error("rest_invalid_param", "Invalid parameter(s): update", 400, details=problems)
        if parent is not None and parent not in self.products:
            return 404, error("woocommerce_rest_product_invalid_id", "Invalid ID.", 404)
        with self._lock:
            return 200, {"update": [self._update(parent, item) for item in updates or []]}

    def _update(self, parent: int | None, item: dict) -> dict:
        store = self.variations if parent is not None else self.products
        key: Any = (parent, item["id"]) if parent is not None else item["id"]
        row = store.get(key)
        if row is None:
            code = "woocommerce_rest_product_variation_invalid_id" if parent else "woocommerce_rest_product_invalid_id"
            return {"id": item["id"], "error": error(code, "Invalid ID.", 400)}
        row.update({k: v for k, v in item.items() if k in ("manage_stock", "stock_quantity")})
        if not row["manage_stock"]:
            row["stock_quantity"] = None  # WooCommerce keeps no quantity for an unmanaged product
        else:
            endpoint = f"/products/{parent}/variations" if parent is not None else "/products"
            self.writes.append((endpoint, item["id"], row["stock_quantity"]))
        return dict(row)

    def start(self) -> FakeWooCommerce:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeWooCommerce:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(shop: FakeWooCommerce) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, body, hang_s = shop.handle(method, self.path, dict(self.headers), raw)
            if hang_s:
                time.sleep(hang_s)
            payload = b"" if body is None else json.dumps(body).encode()
            try:
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json; charset=UTF-8"}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# --- deliveries as WooCommerce sends them -------------------------------------------------------
def signed_delivery(secret: str, topic: str, order: dict, webhook_id: int = 7) -> tuple[dict, bytes]:
    """Headers and body as WooCommerce's WC_Webhook::deliver sends them (_webhooks.md, vendor-apis §6):
    ``X-WC-Webhook-Signature`` = base64 of the raw HMAC-SHA256 of the exact body."""
    import hashlib
    import hmac
    import secrets
    body = json.dumps(order, separators=(",", ":")).encode()
    sig = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    resource, event = topic.split(".")
    return {"Content-Type": "application/json", "User-Agent": "WooCommerce/8.6.1 Hookshot (WordPress/6.4.3)",
            "X-WC-Webhook-Source": "https://shop.example.com/", "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": resource, "X-WC-Webhook-Event": event, "X-WC-Webhook-Signature": sig,
            "X-WC-Webhook-ID": str(webhook_id), "X-WC-Webhook-Delivery-ID": secrets.token_hex(16)}, body


def ping(webhook_id: int = 7) -> tuple[dict, bytes]:
    """What WooCommerce posts when a webhook is saved: form-encoded, unsigned."""
    return {"Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "WooCommerce/8.6.1 Hookshot (WordPress/6.4.3)"}, f"webhook_id={webhook_id}".encode()


def order(order_id: int, status: str, *lines: tuple[int, str, int], variation: int = 0) -> dict:
    """An order as GET /orders/<id> returns it (the fields the bridge reads, and a few it does not)."""
    return {"id": order_id, "status": status, "currency": "EUR", "date_modified_gmt": "2026-11-30T06:00:00",
            "line_items": [{"id": line_id, "name": sku, "product_id": 101, "variation_id": variation,
                            "quantity": qty, "sku": sku, "total": "10.00", "meta_data": []}
                           for line_id, sku, qty in lines], "refunds": []}


# --- the example mapping, pointed at a fake shop ---------------------------------------------------
KEY, SECRET = "ck_fake_0123456789abcdef0123456789abcdef", "cs_fake_fedcba9876543210fedcba9876543210"
WEBHOOK_SECRET = "woo-webhook-secret-31415926"
SECRETS = {"woocommerce_consumer_key": KEY, "woocommerce_consumer_secret": SECRET,
           "woocommerce_webhook_secret": WEBHOOK_SECRET}


def stocked_shop() -> FakeWooCommerce:
    """The example table's items: two simple products, one variable product with two variations."""
    shop = FakeWooCommerce(KEY, SECRET)
    shop.add_product(101, "chair-blue", 3)
    shop.add_product(102, "chair-red", 7)
    shop.add_product(230, "mug", None)
    shop.add_variation(230, 231, "mug-s", 4)
    shop.add_variation(230, 232, "mug-l", 1)
    return shop


def write_mapping(directory, url: str, timeout_s: float = 5.0, batch_size: int | None = None,
                  extra_items: dict[str, str] | None = None):
    """mappings/woocommerce.yaml and its table, copied to ``directory`` with the fake's URL."""
    import shutil
    from pathlib import Path
    source = Path(__file__).resolve().parents[2] / "mappings"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "woocommerce_items.csv", directory / "woocommerce_items.csv")
    with (directory / "woocommerce_items.csv").open("a", encoding="utf-8") as table:
        table.writelines(f"{sku},{code}\n" for sku, code in (extra_items or {}).items())
    text = (source / "woocommerce.yaml").read_text(encoding="utf-8")
    text = re.sub(r"base_url: \S+", f"base_url: {url}", text)
    text = re.sub(r"timeout_s: \S+", f"timeout_s: {timeout_s}", text)
    if batch_size is not None:
        text = re.sub(r"batch_size: \d+", f"batch_size: {batch_size}", text)
    (directory / "woocommerce.yaml").write_text(text, encoding="utf-8")
    return directory


def connector_for(url: str, directory, **options):
    """The real WooCommerceConnector, built by the registry's factory, talking to ``url`` (its
    inbox in a queue file beside the mappings)."""
    from erp_bridge.connectors import registry
    from erp_bridge.mapping.loader import load_mappings
    mappings = load_mappings(write_mapping(directory, url, **options))
    return registry.build(mappings.systems["woocommerce"], SECRETS, mappings.lookups,
                          storage_url=f"sqlite:///{directory}/queue.sqlite3")
