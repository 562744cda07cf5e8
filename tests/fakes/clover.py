"""A Clover REST API double on 127.0.0.1 that behaves like the documented service.

Modelled (../shared/specs/clover, vendor-apis.md §9): bearer token (401 ``{"message"}``); the merchant
id in every path (another merchant's path is 401, as a token of one merchant gets); ``GET
/v3/merchants/{mId}/orders/{orderId}`` validated with openapi-core against the third-party
clover-platform-rest-api-openapi.yml, answering the order with ``lineItems`` expanded as Clover
expands collections (``{"elements": [...]}``) only when asked; ``POST
/v3/merchants/{mId}/item_stocks/{itemId}``, which that spec lacks, checked against the documented
body (NOTES-item-stocks-webhooks-ratelimits.md, vendor-apis.md: ``{"quantity": <number>}``,
decimals and negatives allowed; anything else is refused 400); an unknown item 404; the per-token
limits of clover-rate-limits.yml: 16 requests per second (429 naming ``X-RateLimit-tokenLimit``)
and 5 in flight (429 with ``retry-after`` and ``X-RateLimit-tokenConcurrentLimit``); and, through
the shared server's faults, any status, a hang, or a lost answer after the write.
Notifications are built as Clover sends them: ``X-Clover-Auth`` + ids only.
"""
from __future__ import annotations

import json
import re
import threading
import time
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http_server import Answer, Fault, Served

SPEC = Path("../shared/specs/clover/clover-platform-rest-api-openapi.yml")
HOST = "https://api.clover.com"
MERCHANT = "ABCDEF1234567"
ITEM_STOCK = re.compile(r"^/v3/merchants/([^/]+)/item_stocks/([^/]+)$")
ORDER = re.compile(r"^/v3/merchants/([^/]+)/orders/([^/]+)$")
ITEM = re.compile(r"^/v3/merchants/([^/]+)/items/([^/]+)$")
#: the documented body of "Update item stock" (NOTES, vendor-apis.md §9): quantity, a number
ITEM_STOCK_BODY = {"type": "object", "required": ["quantity"], "additionalProperties": False,
                   "properties": {"quantity": {"type": "number"}}}
TOKEN_RATE, TOKEN_CONCURRENCY = 16, 5

__all__ = ["FakeClover", "Fault"]


@cache
def openapi() -> Any:
    from openapi_core import OpenAPI
    return OpenAPI.from_file_path(str(SPEC))


def spec_errors(method: str, path: str, headers: dict[str, str], query: str = "") -> list[str]:
    """Why the Clover OpenAPI refuses this request ([] when it accepts it)."""
    from openapi_core.testing import MockRequest
    args = {k: v[0] for k, v in parse_qs(query).items()}
    request = MockRequest(HOST, method.lower(), path, headers=headers, args=args)
    return [f"{type(e).__name__}: {str(e)[:200]}" for e in openapi().iter_request_errors(request)]


def item_stock_errors(body: bytes) -> list[str]:
    import jsonschema
    try:
        document = json.loads(body)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    validator = jsonschema.Draft202012Validator(ITEM_STOCK_BODY)
    return [f"{'/'.join(map(str, e.path)) or 'body'}: {e.message}" for e in validator.iter_errors(document)]


class FakeClover:
    """``with FakeClover(token) as clover:``; ``clover.url`` is the mapping's base URL (…/v3/merchants/<mId>)."""

    def __init__(self, token: str, merchant: str = MERCHANT, rate: int = TOKEN_RATE, slow_s: float = 0.0):
        self.token, self.merchant, self.rate, self.slow_s = token, merchant, rate, slow_s
        self.clock = time.time  # the per-second window's clock (a test may hold it still)
        openapi()  # load the spec before a client's timeout starts
        self.stock: dict[str, Decimal] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self._second, self._used, self._in_flight = int(time.time()), 0, 0
        self._lock = threading.Lock()
        self.served = Served(self)

    @property
    def url(self) -> str:
        return f"{self.served.origin}/v3/merchants/{self.merchant}"

    @property
    def faults(self) -> list[Fault]:
        return self.served.faults

    def add_order(self, order_id: str, payment_state: str | None, *lines: tuple[str, str | None, int | None],
                  **extra: Any) -> None:
        """``lines``: (line item id, item id or None for a custom amount, unitQty or None)."""
        items = [{"id": line, "name": f"line {line}", "price": 1000,
                  **({"item": {"id": item}} if item else {}), **({"unitQty": qty} if qty is not None else {})}
                 for line, item, qty in lines]
        self.orders[order_id] = {"id": order_id, "currency": "USD", "total": 1000 * len(lines), "state": "locked",
                                 **({"paymentState": payment_state} if payment_state else {}), "lineItems": items,
                                 **extra}

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        with self._lock:
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
            throttled = self._throttle()
            if throttled is None:
                self._in_flight += 1
        if throttled is not None:
            return throttled
        try:
            time.sleep(self.slow_s)
            return self._serve(method, path, headers, body)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _throttle(self) -> Answer | None:
        now = int(self.clock())
        if now != self._second:
            self._second, self._used = now, 0
        self._used += 1
        if self._in_flight >= TOKEN_CONCURRENCY:
            return _json(429, {"message": "Too Many Requests"}, {"retry-after": "1",
                                                                 "X-RateLimit-tokenConcurrentLimit": "5"})
        if self._used > self.rate:
            return _json(429, {"message": "Too Many Requests"}, {"X-RateLimit-tokenLimit": str(self.rate)})
        return None

    def _serve(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Answer:
        if headers.get("Authorization") != f"Bearer {self.token}":
            return _json(401, {"message": "401 Unauthorized"})
        parts = urlsplit(raw_path)
        stock, order, item = ITEM_STOCK.match(parts.path), ORDER.match(parts.path), ITEM.match(parts.path)
        match = stock or order or item
        if match is None:
            return _json(404, {"message": "Not Found"})
        if match.group(1) != self.merchant:
            return _json(401, {"message": "401 Unauthorized"})  # the token is this merchant's only
        if method == "POST" and stock:
            return self._set_stock(stock.group(2), body)
        if method == "GET" and (order or item):
            errors = spec_errors(method, parts.path, headers, parts.query)
            if errors:
                return _json(400, {"message": "; ".join(errors)})
            return self._order(order.group(2), parts.query) if order else self._item(match.group(2), parts.query)
        return _json(405, {"message": "Method Not Allowed"})

    def _set_stock(self, item: str, body: bytes) -> Answer:
        problems = item_stock_errors(body)
        if problems:
            return _json(400, {"message": "; ".join(problems)})
        if item not in self.stock:
            return _json(404, {"message": f"Item {item} not found"})
        quantity = json.loads(body, parse_float=Decimal)["quantity"]
        with self._lock:
            self.stock[item] = Decimal(str(quantity))
        return _json(200, {"item": {"id": item}, "quantity": float(quantity), "stockCount": int(quantity)})

    def _item(self, item_id: str, query: str) -> Answer:
        if item_id not in self.stock:
            return _json(404, {"message": "Not Found"})
        shown: dict[str, Any] = {"id": item_id, "name": f"item {item_id}", "price": 1000,
                                 "stockCount": int(self.stock[item_id])}
        if "itemStock" in parse_qs(query).get("expand", [""])[0].split(","):
            shown["itemStock"] = {"item": {"id": item_id}, "quantity": float(self.stock[item_id])}
        return _json(200, shown)

    def _order(self, order_id: str, query: str) -> Answer:
        order = self.orders.get(order_id)
        if order is None:
            return _json(404, {"message": "Not Found"})
        expand = parse_qs(query).get("expand", [""])[0].split(",")
        shown = {k: v for k, v in order.items() if k != "lineItems"}
        if "lineItems" in expand:
            shown["lineItems"] = {"elements": order["lineItems"]}
        return _json(200, shown)

    def __enter__(self) -> FakeClover:
        self.served.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.served.down()


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, {**(headers or {}), "Content-Type": "application/json"}, json.dumps(payload).encode()


# --- notifications as Clover sends them -----------------------------------------------------------
def notification(auth_code: str | None, *events: tuple[str, str, int], merchant: str = MERCHANT,
                 **more: list[tuple[str, str, int]]) -> tuple[dict[str, str], bytes]:
    """Headers and body: ``events`` are (objectId, type, ts) for ``merchant``; ``more`` other merchants'."""
    merchants = {merchant: [{"objectId": o, "type": t, "ts": ts} for o, t, ts in events]}
    merchants.update({m: [{"objectId": o, "type": t, "ts": ts} for o, t, ts in evs] for m, evs in more.items()})
    headers = {"Content-Type": "application/json"}
    if auth_code is not None:
        headers["X-Clover-Auth"] = auth_code
    return headers, json.dumps({"appId": "DRKVJT2ZRRRSC", "merchants": merchants}).encode()


def verification(code: str = "e4b1f7c2-8d0a-4f51-9b38-2c7a6d4e9f10") -> tuple[dict[str, str], bytes]:
    return {"Content-Type": "application/json"}, json.dumps({"verificationCode": code}).encode()


# --- the example mapping, pointed at a fake merchant -----------------------------------------------
TOKEN = "clover_api_token_fake_0123456789"
AUTH_CODE = "clover_auth_code_fake_9f8e7d6c5b4a"
SECRETS = {"clover_api_token": TOKEN, "clover_webhook_auth_code": AUTH_CODE}
BLUE, RED = "9QW1ZJ3K5Y7XA", "9QW1ZJ3K5Y7XB"


def stocked_merchant(**options: Any) -> FakeClover:
    clover = FakeClover(TOKEN, **options)
    clover.stock.update({BLUE: Decimal(5), RED: Decimal(5)})
    return clover


def write_mapping(directory: Path, url: str, timeout_s: float = 5.0) -> Path:
    source = Path(__file__).resolve().parents[2] / "mappings" / "clover.yaml"
    directory.mkdir(parents=True, exist_ok=True)
    text = re.sub(r"base_url: \S+", f"base_url: {url}", source.read_text(encoding="utf-8"))
    (directory / "clover.yaml").write_text(re.sub(r"timeout_s: \S+", f"timeout_s: {timeout_s}", text))
    return directory


def connector_for(url: str, directory: Path, storage: Path, secrets: dict[str, str] | None = None,
                  **options: Any) -> Any:
    """The real CloverConnector, built by the registry's factory, talking to ``url``."""
    from erp_bridge.connectors import registry
    from erp_bridge.mapping.loader import load_mappings
    mappings = load_mappings(write_mapping(directory, url, **options))
    return registry.build(mappings.systems["clover"], SECRETS if secrets is None else secrets, mappings.lookups,
                          storage_url=f"sqlite:///{storage}")
