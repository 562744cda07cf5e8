"""A fake Salesforce B2C Commerce: Account Manager, SCAPI orders and Omnichannel Inventory on one
real HTTP server on 127.0.0.1 (tests/fakes/served.py).

Behaves like the documented systems (../shared/specs/sfcc-oci/, vendor-apis.md §9):
- ``POST /dwsso/oauth2/access_token``: client credentials in an HTTP Basic header only (Account
  Manager), ``grant_type=client_credentials``, the scope must name the instance
  (``SALESFORCE_COMMERCE_API:<tenant>``); tokens expire after ``token_lifetime_s`` (or at once
  with ``expire_tokens``); a wrong client is 401 ``invalid_client``;
- every API call needs a live bearer token, else 401 in SCAPI's RFC 7807 problem format;
- ``GET .../orders`` is validated against the orders OAS (openapi-core), answers ``{"data": [...]}``
  filtered by ``siteId`` and ``lastModifiedDateFrom`` (inclusive), sorted, with ``offset``/``limit``;
  each answer is checked against ``OrdersResponse`` too;
- ``POST .../availability-records/actions/batch-update`` is validated against the documented fields
  (tests/fakes/sfcc_spec.py); ``actionRequestId`` is idempotent (a record seen before is not applied
  again); a record at a location OCI does not have is refused in the answer's ``errors`` section
  while the others apply (partial success, as the doc says);
- scripted faults (tests/fakes/served.Fault): any status with headers and body (429 with
  Retry-After, 5xx), a hang past the client's timeout, a lost answer (applied, connection cut).
A violation is answered 400 and recorded in ``violations``, so a test can assert there were none.
"""
from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes import sfcc_spec
from tests.fakes.served import Fault, Served, drop_connection, send_json

CLIENT_ID, CLIENT_SECRET = "a7c1e2f0-5b6d-4e3f-9a8b-0c1d2e3f4a5b", "S3cr3t-Am-Passw0rd!"
TENANT, SITE, LOCATION = "zzxy_prd", "RefArch", "warehouse-east"
ORGANIZATION = f"f_ecom_{TENANT}"
TOKEN_PATH = "/dwsso/oauth2/access_token"
ORDERS_PATH = f"/checkout/orders/v1/organizations/{ORGANIZATION}/orders"
BATCH_PATH = f"/inventory/availability/v1/organizations/{ORGANIZATION}/availability-records/actions/batch-update"
PROBLEM = "https://api.commercecloud.salesforce.com/documentation/error/v1/errors/"


def problem(kind: str, title: str, detail: str) -> dict:
    """SCAPI's error body (RFC 7807, ``ErrorResponse`` in the orders OAS: type, title, detail)."""
    return {"type": PROBLEM + kind, "title": title, "detail": detail}


RATE_LIMITED = Fault(429, {"Retry-After": "1"}, problem("rate-limit-exceeded", "Too Many Requests",
                                                        "The client exceeded the request rate limit."))
#: SCAPI's load shedding ("Load Shedding and Rate Limiting"): 503 with the capacity headers (OCI only rate-limits)
LOAD_SHED = Fault(503, {"sfdc_load": "96", "sfdc_load_status": "THROTTLE"},
                  problem("service-unavailable", "Service Unavailable", "The service is overloaded."), path=ORDERS_PATH)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class FakeSfcc(Served):
    def __init__(self, token_lifetime_s: float = 1799.0):
        self.token_lifetime_s = token_lifetime_s
        self.tokens: dict[str, float] = {}  # live token -> expiry (time.time)
        self.token_requests: list[dict[str, Any]] = []
        self.on_hand: dict[tuple[str, str], Decimal] = {}
        self.locations = {LOCATION, "store-7"}
        self.orders: list[dict[str, Any]] = []
        self.received: list[tuple[str, str, Any]] = []  # (method, path, body or query)
        self.violations: list[str] = []
        self.applied_requests: set[str] = set()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        sfcc_spec.orders_request_violations(ORDERS_PATH, {"siteId": SITE}, {})  # load the OAS before timing starts

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scenario helpers ------------------------------------------------------------------------

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens = {t: 0.0 for t in self.tokens}

    def place(self, number: str, lines: dict[str, Any], status: str = "new", site: str = SITE,
              at: datetime | None = None) -> dict[str, Any]:
        """An order placed on ``site``: ``lines`` maps product id -> quantity (line ids a<n>)."""
        moment = at or datetime.now(UTC)
        items = [{"itemId": f"{number}-{n}", "productId": product, "quantity": quantity, "shipmentId": "me",
                  "taxRate": 0.2, "inventoryId": "inventory_m"} for n, (product, quantity) in enumerate(lines.items())]
        order = {"orderNo": number, "status": status, "siteId": site, "creationDate": stamp(moment),
                 "lastModified": stamp(moment), "currency": "USD", "exportStatus": "not_exported",
                 "productItems": items, "c_channel": "storefront"}
        with self._lock:
            self.orders.append(order)
        return order

    def set_status(self, number: str, status: str, at: datetime | None = None) -> None:
        with self._lock:
            order = next(o for o in self.orders if o["orderNo"] == number)
            order["status"], order["lastModified"] = status, stamp(at or datetime.now(UTC) + timedelta(milliseconds=1))

    # -- the API ---------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict, Any, bool]:
        path, query = urlsplit(target).path, dict(parse_qsl(urlsplit(target).query))
        if path == TOKEN_PATH:
            return (*self._token(headers, raw), False)
        with self._lock:
            self.received.append((method, path, query if method == "GET" else _json(raw)))
            if self.tokens.get(headers.get("authorization", "").removeprefix("Bearer "), 0.0) <= time.time():
                return 401, {}, problem("unauthorized", "Unauthorized",
                                        "The request is unauthorized, the access token is invalid or expired."), False
            fault = next((self._faults.pop(n) for n, f in enumerate(self._faults) if not f.path or f.path in path),
                         None)
        if fault is not None and fault.hang_s:
            time.sleep(fault.hang_s)
        if fault is not None and fault.drop is None:
            return fault.status, fault.headers, fault.body, False
        status, out = self._serve(method, path, query, headers, raw)
        return status, {}, out, fault is not None and fault.drop == "after_commit"

    def _token(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict, Any]:
        form = dict(parse_qsl(raw.decode()))
        with self._lock:
            self.token_requests.append({"form": form, "authorization": headers.get("authorization", "")})
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if headers.get("authorization") != f"Basic {basic}" or "client_secret" in form:
            return 401, {}, {"error": "invalid_client", "error_description": "Client authentication failed"}
        if form.get("grant_type") != "client_credentials":
            return 400, {}, {"error": "unsupported_grant_type", "error_description": "grant_type"}
        if f"SALESFORCE_COMMERCE_API:{TENANT}" not in form.get("scope", "").split():
            return 400, {}, {"error": "invalid_scope", "error_description": "The tenant scope is missing"}
        token = f"eyJ.sfcc-{next(self._ids)}-{time.time_ns()}"
        with self._lock:
            self.tokens[token] = time.time() + self.token_lifetime_s
        return 200, {}, {"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_lifetime_s),
                         "scope": form["scope"]}

    def _serve(self, method: str, path: str, query: dict, headers: dict, raw: bytes) -> tuple[int, Any]:
        if method == "GET" and path == ORDERS_PATH:
            return self._orders(path, query, headers)
        if method == "POST" and path == BATCH_PATH:
            return self._batch_update(_json(raw))
        return 404, problem("resource-not-found", "Resource Not Found", f"{method} {path} is not an endpoint")

    def _orders(self, path: str, query: dict, headers: dict) -> tuple[int, Any]:
        broken = sfcc_spec.orders_request_violations(path, query, headers)
        if broken:
            self.violations += [f"GET {path}: {v}" for v in broken]
            return 400, problem("bad-request", "Bad Request", "; ".join(broken))
        since = query.get("lastModifiedDateFrom", "")
        with self._lock:
            found = [o for o in self.orders if o["siteId"] == query["siteId"] and o["lastModified"] >= since]
        key = "lastModified" if query.get("sortBy") == "last_modified_date" else "creationDate"
        found.sort(key=lambda o: o[key], reverse=query.get("sortOrder", "desc") == "desc")
        offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
        answer = {"data": json.loads(json.dumps(found[offset:offset + limit]))}
        self.violations += sfcc_spec.orders_response_violations(path, query, json.dumps(answer).encode())
        return 200, answer

    def _batch_update(self, body: Any) -> tuple[int, Any]:
        broken = sfcc_spec.batch_update_violations(body)
        if broken:
            self.violations += [f"POST batch-update: {v}" for v in broken]
            return 400, problem("bad-request", "Bad Request", "; ".join(broken))
        done, errors = [], []
        with self._lock:
            for record in body["records"]:
                if record["locationIdentifier"] not in self.locations:
                    errors.append({"actionRequestId": record["actionRequestId"], "errorCode": "LocationDoesNotExist",
                                   "message": f"Location {record['locationIdentifier']} does not exist"})
                    continue
                if record["actionRequestId"] not in self.applied_requests:
                    self.applied_requests.add(record["actionRequestId"])
                    key = (record["stockKeepingUnit"], record["locationIdentifier"])
                    self.on_hand[key] = Decimal(str(record.get("onHand", 0)))
                done.append({k: record[k] for k in ("actionRequestId", "stockKeepingUnit", "locationIdentifier")})
        return 200, {"records": done, "errors": errors}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra, payload, lost = fake.handle(self.command, self.path, headers, raw)
                if lost:
                    drop_connection(self)
                    return
                send_json(self, status, extra, payload,
                          "application/problem+json" if status >= 400 and "type" in (payload or {}) else
                          "application/json")

            do_GET = do_POST = _answer

        return Handler


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None


def example_mapping_set(directory, url: str, timeout_s: float = 5.0, batch_size: int | None = None,
                        with_odoo: bool = False):
    """mappings/sfcc.yaml, copied to ``directory`` with the fake's URL for every host it names
    (``with_odoo``: plus the Odoo mapping, the system of record)."""
    import re
    import shutil
    from pathlib import Path

    from erp_bridge.mapping.loader import load_mappings
    source = Path(__file__).resolve().parents[2] / "mappings"
    directory.mkdir(parents=True, exist_ok=True)
    text = (source / "sfcc.yaml").read_text(encoding="utf-8")
    text = re.sub(r"base_url: \S+", f"base_url: {url}", text)
    text = re.sub(r"token_url: \S+", f"token_url: {url}{TOKEN_PATH}", text)
    text = re.sub(r"timeout_s: \S+", f"timeout_s: {timeout_s}", text)
    if batch_size is not None:
        text = re.sub(r"batch_size: \d+", f"batch_size: {batch_size}", text)
    (directory / "sfcc.yaml").write_text(text, encoding="utf-8")
    if with_odoo:
        shutil.copy(source / "odoo.yaml", directory / "odoo.yaml")
    return load_mappings(directory)


def connector_for(fake: FakeSfcc, directory, storage_url: str | None = None, **options: Any):
    """The real SfccConnector, built by the registry's factory, talking to ``fake``."""
    from erp_bridge.connectors import registry
    mappings = example_mapping_set(directory, fake.url, **options)
    secrets = {"sfcc_client_id": CLIENT_ID, "sfcc_client_secret": CLIENT_SECRET}
    storage = storage_url or f"sqlite:///{directory}/queue.sqlite3"
    return registry.build(mappings.systems["sfcc"], secrets, mappings.lookups, storage_url=storage)
