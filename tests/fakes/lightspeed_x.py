"""A Lightspeed Retail X-Series (Vend) double on 127.0.0.1 that behaves like the documented API.

Modelled (../shared/specs/lightspeed, vendor-apis.md §9): bearer token (401 ``{"error"}``); API 2.0
reads (``GET /api/2.0/registers/{id}``, ``/api/2.0/products/{id}/inventory``) validated with
openapi-core against x-series-api-2.0-openapi.json; API 2.1's ``PUT /api/2.1/products/{id}``, which
has no OpenAPI here, validated against the fields the X-Series Postman collection documents for
"Update a product" (a JSON Schema built from its example body: unknown fields and wrong types are
refused 422, as a strict server would); an unknown product 404, an unknown outlet 422; the rate
limit of 300 x registers + 50 requests per 300 s window with ``X-RateLimit-Limit`` /
``X-RateLimit-Remaining`` on every answer and, once spent, 429 ``{"error": "Too Many Requests"}``
with ``Retry-After`` as an RFC 1123 date (lightspeed-rate-limits.yml); and, through the shared
server's faults, any status, a hang, or a lost answer after the write.
Webhook deliveries are built as X-Series sends them: form-encoded ``payload`` + ``X-Signature``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from decimal import Decimal
from email.utils import formatdate
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from tests.fakes.http_server import Answer, Fault, Served

SPECS = Path("../shared/specs/lightspeed")
OPENAPI = SPECS / "x-series-api-2.0-openapi.json"
POSTMAN = SPECS / "x-series-api-collection.postman_collection.json"
HOST = "https://example.retail.lightspeed.app"
PRODUCT_21 = re.compile(r"^/api/2\.1/products/([^/]+)$")
REGISTER = re.compile(r"^/api/2\.0/registers/([^/]+)$")
INVENTORY = re.compile(r"^/api/2\.0/products/([^/]+)/inventory$")
WINDOW_S = 300.0

__all__ = ["FakeLightspeedX", "Fault"]


@cache
def openapi() -> Any:
    from openapi_core import OpenAPI
    return OpenAPI.from_file_path(str(OPENAPI))


def spec_errors(method: str, path: str, headers: dict[str, str], query: str = "") -> list[str]:
    """Why the 2.0 OpenAPI refuses this read ([] when it accepts it)."""
    from openapi_core.testing import MockRequest
    args = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
    request = MockRequest(HOST, method.lower(), path, headers=headers, args=args)
    return [f"{type(e).__name__}: {str(e)[:200]}" for e in openapi().iter_request_errors(request)]


@cache
def documented_update_schema() -> dict[str, Any]:
    """The JSON Schema of the body "Update a product" documents (PUT /api/2.1/products/:product-id)."""
    collection = json.loads(POSTMAN.read_text(encoding="utf-8"))
    request = next(item["request"] for item in _items(collection["item"]) if item.get("name") == "Update a product")
    schema = _schema_of(json.loads(request["body"]["raw"]))
    schema["properties"]["details"]["properties"]["inventory"]["items"]["required"] = ["outlet_id"]
    return schema


def update_errors(body: bytes) -> list[str]:
    import jsonschema
    try:
        document = json.loads(body)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    validator = jsonschema.Draft202012Validator(documented_update_schema())
    return [f"{'/'.join(map(str, e.path)) or 'body'}: {e.message}" for e in validator.iter_errors(document)]


def _items(items: list[dict]) -> Any:
    for item in items:
        yield from _items(item["item"]) if "item" in item else [item]


def _schema_of(example: Any) -> dict[str, Any]:
    """A strict schema of a documented example: its keys only, each with the example value's type."""
    if isinstance(example, dict):
        return {"type": "object", "additionalProperties": False,
                "properties": {key: _schema_of(value) for key, value in example.items()}}
    if isinstance(example, list):
        return {"type": "array", "items": _schema_of(example[0]) if example else {}}
    kinds = {bool: "boolean", int: "number", float: "number", str: "string"}
    return {"type": kinds.get(type(example), "null")}


def error(name: str, message: str) -> dict[str, str]:
    return {"error": name, "message": message}


class FakeLightspeedX:
    """``with FakeLightspeedX(token) as store:``; ``store.url`` is the mapping's base URL (…/api)."""

    def __init__(self, token: str, registers: int = 1):
        self.token, self.limit = token, 300 * registers + 50
        openapi(), documented_update_schema()  # load the contracts before a client's timeout starts
        self.inventory: dict[tuple[str, str], Decimal] = {}
        self.outlets: set[str] = set()
        self.registers: dict[str, str] = {}  # register id -> outlet id
        self.requests: list[dict[str, Any]] = []
        self._window, self._used = time.monotonic(), 0
        self._lock = threading.Lock()
        self.served = Served(self)

    @property
    def url(self) -> str:
        return f"{self.served.origin}/api"

    @property
    def faults(self) -> list[Fault]:
        return self.served.faults

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        with self._lock:
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
            limited, limits = self._limits()
        if limited:
            return _json(429, error("Too Many Requests", "Rate limiting enforced"),
                         {**limits, "Retry-After": formatdate(time.time() + 2, usegmt=True)})
        if headers.get("Authorization") != f"Bearer {self.token}":
            return _json(401, error("Unauthorized", "Invalid or expired token"), limits)
        status, payload = self._route(method, path, headers, body)
        return _json(status, payload, limits)

    def _limits(self) -> tuple[bool, dict[str, str]]:
        if time.monotonic() - self._window >= WINDOW_S:
            self._window, self._used = time.monotonic(), 0
        self._used += 1
        return self._used > self.limit, {"X-RateLimit-Limit": str(self.limit),
                                         "X-RateLimit-Remaining": str(max(0, self.limit - self._used))}

    def _route(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        if method == "PUT" and (match := PRODUCT_21.match(parts.path)):
            return self._update(match.group(1), body)
        if method == "GET" and (REGISTER.match(parts.path) or INVENTORY.match(parts.path)):
            errors = spec_errors(method, parts.path, headers, parts.query)
            if errors:
                return 400, {"error": "Bad Request", "details": errors}
            return self._read(parts.path)
        return 404, error("Not Found", f"no route {method} {parts.path}")

    def _update(self, product: str, body: bytes) -> tuple[int, Any]:
        problems = update_errors(body)
        if problems:
            return 422, {"error": "Unprocessable Entity", "details": problems}
        if not any(p == product for p, _ in self.inventory):
            return 404, error("Not Found", f"product {product} not found")
        rows = json.loads(body, parse_float=Decimal).get("details", {}).get("inventory", [])
        unknown = [r["outlet_id"] for r in rows if r["outlet_id"] not in self.outlets]
        if unknown:
            return 422, error("Unprocessable Entity", f"outlet {unknown[0]} does not exist")
        with self._lock:
            for row in rows:
                if "current_amount" in row:
                    self.inventory[(product, row["outlet_id"])] = Decimal(str(row["current_amount"]))
        return 200, {"data": {"id": product}}

    def _read(self, path: str) -> tuple[int, Any]:
        if match := REGISTER.match(path):
            outlet = self.registers.get(match.group(1))
            if outlet is None:
                return 404, error("Not Found", f"register {match.group(1)} not found")
            return 200, {"data": {"id": match.group(1), "name": "Main Register", "outlet_id": outlet, "version": 1}}
        product = INVENTORY.match(path).group(1)  # type: ignore[union-attr]
        return 200, {"data": [{"id": f"{product}-{o}", "product_id": product, "outlet_id": o,
                               "inventory_level": float(q), "current_amount": float(q), "version": 1}
                              for (p, o), q in self.inventory.items() if p == product]}

    def __enter__(self) -> FakeLightspeedX:
        self.served.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.served.down()


def _json(status: int, payload: Any, headers: dict[str, str]) -> Answer:
    return status, {**headers, "Content-Type": "application/json"}, json.dumps(payload).encode()


# --- sale.update deliveries as X-Series sends them ----------------------------------------------------
def sale(sale_id: str, status: str, *lines: tuple[str, str, float], register: str = "reg-1",
         outlet: str | None = None, **extra: Any) -> dict[str, Any]:
    """An API 1.0 register sale: ``lines`` are (line id, product id, quantity)."""
    body: dict[str, Any] = {"id": sale_id, "status": status, "register_id": register,
                            "register_sale_products": [{"id": line, "product_id": product, "quantity": qty,
                                                        "status": "CONFIRMED", "price": 10.0}
                                                       for line, product, qty in lines], **extra}
    if outlet is not None:
        body["outlet_id"] = outlet
    return body


def signed_delivery(secret: str, payload: dict[str, Any], topic: str = "sale.update") -> tuple[dict[str, str], bytes]:
    body = urlencode({"type": topic, "domain_prefix": "example", "payload": json.dumps(payload)}).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/x-www-form-urlencoded",
            "X-Signature": f"signature={digest}, algorithm=HMAC-SHA256"}, body


# --- the example mapping, pointed at a fake store --------------------------------------------------
TOKEN = "lsx_personal_token_fake_0123456789"
CLIENT_SECRET = "lsx_client_secret_fake_abcdef987654"
SECRETS = {"lightspeed_x_token": TOKEN, "lightspeed_x_client_secret": CLIENT_SECRET}
OUTLET = "b8ca3a65-0183-11e4-fbb5-2816d2677218"
BLUE, RED = "0adfd74a-153e-11e9-fa42-67b5781ba1fb", "0adfd74a-153e-11e9-fa42-67b57820a5b2"


def stocked_store(**options: Any) -> FakeLightspeedX:
    store = FakeLightspeedX(TOKEN, **options)
    store.outlets.add(OUTLET)
    store.registers["reg-1"] = OUTLET
    for product in (BLUE, RED):
        store.inventory[(product, OUTLET)] = Decimal(5)
    return store


def write_mapping(directory: Path, url: str, timeout_s: float = 5.0) -> Path:
    source = Path(__file__).resolve().parents[2] / "mappings" / "lightspeed_x.yaml"
    directory.mkdir(parents=True, exist_ok=True)
    text = re.sub(r"base_url: \S+", f"base_url: {url}", source.read_text(encoding="utf-8"))
    (directory / "lightspeed_x.yaml").write_text(re.sub(r"timeout_s: \S+", f"timeout_s: {timeout_s}", text))
    return directory


def connector_for(url: str, directory: Path, storage: Path, **options: Any) -> Any:
    """The real LightspeedXConnector, built by the registry's factory, talking to ``url``."""
    from erp_bridge.connectors import registry
    from erp_bridge.mapping.loader import load_mappings
    mappings = load_mappings(write_mapping(directory, url, **options))
    return registry.build(mappings.systems["lightspeed_x"], SECRETS, mappings.lookups,
                          storage_url=f"sqlite:///{storage}")
