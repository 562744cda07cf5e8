"""A fake Cin7 Core API v2: a real HTTP server on 127.0.0.1 (tests/fakes/http_server).

Behaves as the blueprint documents (../shared/specs/cin7-core/dearinventory.apib, read through
tests/fakes/cin7_blueprint.py):
- ``api-auth-accountid`` + ``api-auth-applicationkey`` on every request; a wrong pair is 403
  ("Method authentication failed");
- 60 calls per minute per API application (``calls_per_window`` in ``window_s`` here, so a test
  need not wait a minute): beyond it, 503 "You reached 60 calls per minute API limit", no Retry-After;
- ``GET saleList`` with ``Page``/``Limit`` (1..1000) and ``UpdatedSince`` (``yyyy-MM-ddTHH:mm:ss.fff``)
  answers ``{Total, Page, SaleList}``; ``GET sale?ID=`` the sale with ``Order.Lines`` and
  ``CreditNotes``; unknown parameters or a malformed date are a 400 in Cin7's error model;
- ``POST stockadjustment``: the body is checked against the blueprint's field tables; a SKU or
  location the account does not have refuses the whole adjustment (400, naming it); a COMPLETED
  adjustment sets each line's quantity;
- scripted faults (5xx, hangs, lost answers) from the shared server base.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes import cin7_blueprint
from tests.fakes.http_server import Answer, Served

ACCOUNT_ID = "704ef231-cd93-49c9-a201-26b4b5d0d35b"
APPLICATION_KEY = "0342a546-e0c2-0dff-f0be-6a5e17154033"
LOCATION = "Main Warehouse"
PRODUCTS = {"CHR-BLU": "1845a9cd-e523-4a69-993b-d35f5ec31fb8", "CHR-RED": "7a0d6c1e-2f49-4c55-9a1b-0e3f5d2c8b17"}


def cin7_now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class Cin7App:
    def __init__(self, calls_per_window: int = 60, window_s: float = 60.0):
        self.calls_per_window, self.window_s = calls_per_window, window_s
        self.locations = {LOCATION}
        self.stock: dict[tuple[str, str], Decimal] = {}
        self.sales: dict[str, dict[str, Any]] = {}
        self.adjustments: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, list[str]], Any, dict[str, str]]] = []
        self.violations: list[str] = []
        self.rate_limited = 0
        self._window: list[float] = []
        self._ids = itertools.count(1)
        self.lock = threading.RLock()

    # -- scenario helpers ------------------------------------------------------------------------

    def sell(self, lines: list[tuple[str, int]], order_status: str = "AUTHORISED",
             location: str = LOCATION) -> str:
        """A sale in Cin7: (SKU, quantity) per order line; returns its SaleID."""
        with self.lock:
            sale_id = str(uuid.uuid4())
            self.sales[sale_id] = {
                "ID": sale_id, "Customer": "Walk-in", "Location": location, "Status": "ORDERED",
                "LastModifiedOn": cin7_now(), "Type": "Simple Sale", "ServiceOnly": False,
                "Order": {"SaleOrderNumber": f"SO-{next(self._ids):05d}", "Status": order_status, "Lines": [
                    {"ProductID": PRODUCTS.get(sku, str(uuid.uuid5(uuid.NAMESPACE_URL, sku))), "SKU": sku,
                     "Name": sku, "Quantity": quantity, "Price": 10, "Tax": 0, "TaxRule": "Tax Exempt"}
                    for sku, quantity in lines]},
                "CreditNotes": []}
            return sale_id

    def void(self, sale_id: str) -> None:
        with self.lock:
            sale = self.sales[sale_id]
            sale["Status"], sale["Order"]["Status"], sale["LastModifiedOn"] = "VOIDED", "VOIDED", cin7_now()

    def credit(self, sale_id: str, lines: list[tuple[str, int]]) -> str:
        """An authorised credit note restocking ``lines``; returns its TaskID."""
        with self.lock:
            sale, task = self.sales[sale_id], str(uuid.uuid4())
            sale["CreditNotes"].append({"TaskID": task, "Status": "AUTHORISED", "CreditNoteDate": cin7_now(), "Restock": [
                {"ProductID": PRODUCTS.get(sku, sku), "SKU": sku, "Quantity": q, "Location": sale["Location"]}
                for sku, q in lines]})
            sale["Status"], sale["LastModifiedOn"] = "CREDITED", cin7_now()
            return task

    # -- the API ---------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        parts = urlsplit(path)
        query = parse_qs(parts.query, keep_blank_values=True)
        lowered = {k.lower(): v for k, v in headers.items()}
        with self.lock:
            self.requests.append((method, parts.path, query, _json(body), lowered))
            if (lowered.get("api-auth-accountid"), lowered.get("api-auth-applicationkey")) != (ACCOUNT_ID,
                                                                                                APPLICATION_KEY):
                return _error(403, "Method authentication failed")
            if not self._within_limit():
                self.rate_limited += 1
                return _error(503, "You reached 60 calls per minute API limit")
            return self._route(method, parts.path.lower().removeprefix("/externalapi/v2"), query, body)

    def _within_limit(self) -> bool:
        now = time.monotonic()
        self._window = [t for t in self._window if t > now - self.window_s]
        if len(self._window) >= self.calls_per_window:
            return False
        self._window.append(now)
        return True

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Answer:
        if method == "GET" and path == "/salelist":
            return self._sale_list(query)
        if method == "GET" and path == "/sale":
            return self._sale(query)
        if method == "POST" and path == "/stockadjustment":
            return self._adjust(_json(body))
        return _error(404, f"Endpoint {method} {path} does not exist")

    def _bad_query(self, resource: str, query: dict[str, list[str]]) -> str | None:
        unknown = set(query) - cin7_blueprint.query_params(resource)
        if unknown:
            return f"unknown parameters {sorted(unknown)}"
        for name in ("UpdatedSince", "CreatedSince"):
            if name in query and not cin7_blueprint.date_ok(query[name][0]):
                return f"{name} {query[name][0]!r} is not yyyy-MM-ddTHH:mm:ss.fff"
        low, high = cin7_blueprint.page_limit()
        limit = query.get("Limit", ["100"])[0]
        if not limit.isdigit() or not low <= int(limit) <= high:
            return f"Limit must be {low}..{high}, got {limit!r}"
        return None

    def _sale_list(self, query: dict[str, list[str]]) -> Answer:
        problem = self._bad_query("saleList", query)
        if problem:
            self.violations.append(f"GET saleList: {problem}")
            return _error(400, problem)
        since = datetime.fromisoformat(query["UpdatedSince"][0].removesuffix("Z")).replace(tzinfo=UTC) \
            if "UpdatedSince" in query else None
        rows = [_summary(s) for s in self.sales.values()
                if since is None or datetime.fromisoformat(s["LastModifiedOn"].replace("Z", "+00:00")) > since]
        page, limit = int(query.get("Page", ["1"])[0]), int(query.get("Limit", ["100"])[0])
        return _ok({"Total": len(rows), "Page": page, "SaleList": rows[(page - 1) * limit:page * limit]})

    def _sale(self, query: dict[str, list[str]]) -> Answer:
        problem = self._bad_query("sale", query) or (None if query.get("ID") else "ID is required")
        if problem:
            self.violations.append(f"GET sale: {problem}")
            return _error(400, problem)
        sale = self.sales.get(query["ID"][0])
        return _ok(sale) if sale else _error(404, f"Sale {query['ID'][0]} not found")

    def _adjust(self, body: Any) -> Answer:
        problems = cin7_blueprint.adjustment_problems(body)
        if problems:
            self.violations.append(f"POST stockadjustment: {'; '.join(problems)}")
            return _error(400, "; ".join(problems))
        for line in body["Lines"]:
            if line.get("SKU") not in PRODUCTS:
                return _error(400, f"Product with SKU '{line.get('SKU')}' not found")
            if line.get("Location") not in self.locations:
                return _error(400, f"Location '{line.get('Location')}' not found")
        if body["Status"] == "COMPLETED":
            for line in body["Lines"]:
                self.stock[(line["SKU"], line["Location"])] = Decimal(str(line["Quantity"]))
        task = {"TaskID": str(uuid.uuid4()), "StocktakeNumber": f"ST-{next(self._ids):05d}", **body}
        self.adjustments.append(task)
        return _ok({k: v for k, v in task.items() if k != "Lines"})


def _summary(sale: dict[str, Any]) -> dict[str, Any]:
    notes = sale["CreditNotes"]
    return {"SaleID": sale["ID"], "OrderNumber": sale["Order"]["SaleOrderNumber"], "Status": sale["Status"],
            "Updated": sale["LastModifiedOn"], "OrderStatus": sale["Order"]["Status"],
            "CreditNoteStatus": notes[-1]["Status"] if notes else "NOT AVAILABLE", "Type": sale["Type"],
            "OrderLocationID": "cd3ed3bb-673a-4d48-b47b-5f92a973ae8c", "Customer": sale["Customer"]}


def _ok(payload: Any) -> Answer:
    return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def _error(status: int, text: str) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps([{"ErrorCode": status, "Exception": text}]).encode()


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


class FakeCin7(Served):
    def __init__(self, **options: Any):
        super().__init__(Cin7App(**options))
        self.cin7: Cin7App = self.app  # type: ignore[assignment]

    def __enter__(self) -> FakeCin7:
        self.up()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()

    @property
    def base_url(self) -> str:
        return f"{self.origin}/ExternalApi/v2"


SECRETS = {"cin7_account_id": ACCOUNT_ID, "cin7_application_key": APPLICATION_KEY}


def example_mapping_set(directory, fake: FakeCin7, timeout_s: float = 2.0, batch_size: int | None = None,
                        with_odoo: bool = False):
    """mappings/cin7_core.yaml and its item table with the fake's URL: the tests run the shipped mapping."""
    import re
    import shutil
    from pathlib import Path

    from erp_bridge.mapping.loader import load_mappings
    source = Path(__file__).resolve().parents[2] / "mappings"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "cin7_core_items.csv", directory / "cin7_core_items.csv")
    text = (source / "cin7_core.yaml").read_text(encoding="utf-8")
    text = re.sub(r"base_url: \S+", f"base_url: {fake.base_url}", text)
    text = re.sub(r"timeout_s: \S+", f"timeout_s: {timeout_s}", text)
    if batch_size is not None:
        text = re.sub(r"batch_size: \d+", f"batch_size: {batch_size}", text)
    (directory / "cin7_core.yaml").write_text(text, encoding="utf-8")
    if with_odoo:
        shutil.copy(source / "odoo.yaml", directory / "odoo.yaml")
    return load_mappings(directory)


def connector_for(fake: FakeCin7, directory, storage_url: str | None = None, fast: bool = True, **options: Any):
    """The real connector, built by the registry's factory, talking to ``fake``. ``fast``: its pacer
    drains 50 calls a second instead of Cin7's 58 a minute (the fake's window is shortened alike)."""
    from erp_bridge.connectors import registry
    from erp_bridge.connectors.runtime.pacing import LeakyBucket
    mappings = example_mapping_set(directory, fake, **options)
    storage = storage_url or f"sqlite:///{directory}/queue.sqlite3"
    connector = registry.build(mappings.systems["cin7_core"], SECRETS, mappings.lookups, storage_url=storage)
    if fast:
        connector._sender.pacer = LeakyBucket(1.0, 50.0)
    return connector
