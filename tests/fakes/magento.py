"""A fake Magento 2 admin REST API: a real HTTP server on 127.0.0.1 (tests/fakes/http_server.Served).

Behaves like the documented API (../shared/specs/magento2/):
- ``Authorization: Bearer <integration access token>``; anything else is 401 with Magento's
  ``The consumer isn't authorized to access %resources.`` envelope;
- every request is validated against the admin schema (tests/fakes/magento_spec.py); a violation
  is answered 400 and recorded in ``violations`` so a test can assert there were none;
- ``POST /V1/inventory/source-items`` saves all or nothing: an empty field or an unknown status is
  400 ``Validation Failed`` with ``errors[{message, parameters}]`` (Magento's ValidationTest), an
  unknown source is 400 ``Could not save Source Item``, an unknown SKU is 404 ``Following products
  with requested skus were not found: %1`` (modelled on GetProductIdsBySkus; not checked against a
  live store); more than ``input_limit`` items (web API input limits on: 20) is 400;
- ``GET /V1/orders`` / ``/V1/creditmemos`` with searchCriteria: one filter (eq, gteq), sort orders,
  ``pageSize`` (over 300 is 400 with input limits on), ``currentPage``; ``total_count``; a page past
  the end answers the LAST page again, as Magento's collections do;
- the legacy ``GET /V1/stockItems/{sku}`` and ``PUT /V1/products/{sku}/stockItems/{itemId}``;
- scripted faults (any status, headers and body; a hang; a lost answer) from http_server.Fault;
  ``TOO_MANY`` is the documented 429 body, ``MAINTENANCE`` Magento's 503.
Orders are made with ``order(...)``, ``cancel(...)`` and ``refund(...)``; times are UTC without a zone.
"""
from __future__ import annotations

import itertools
import json
import math
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes import magento_spec
from tests.fakes.http_server import Fault, Served

TOKEN = "mag-int-token-3kf9q2z7x"
SOURCES = ("default", "east_warehouse")
TOO_MANY = Fault(429, {"Content-Type": "application/json"}, b'{"message":"Too Many Requests","trace":null}')
MAINTENANCE = Fault(503, {"Content-Type": "text/html", "Retry-After": "1"}, b"<h1>Service Temporarily Unavailable</h1>")

#: what GET /V1/stockItems/{sku} answers besides qty for a product on the store's defaults
STOCK_ITEM_DEFAULTS = {
    "is_qty_decimal": False, "show_default_notification_message": False, "use_config_min_qty": True, "min_qty": 0,
    "use_config_min_sale_qty": 1, "min_sale_qty": 1, "use_config_max_sale_qty": True, "max_sale_qty": 10000,
    "use_config_backorders": True, "backorders": 0, "use_config_notify_stock_qty": True, "notify_stock_qty": 1,
    "use_config_qty_increments": True, "qty_increments": 0, "use_config_enable_qty_inc": True,
    "enable_qty_increments": False, "use_config_manage_stock": True, "manage_stock": True, "low_stock_date": None,
    "is_decimal_divided": False, "stock_status_changed_auto": 0}


def magento_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


class FakeMagento:
    def __init__(self, token: str = TOKEN, input_limit: int = 20, max_page_size: int = 300):
        self.token, self.input_limit, self.max_page_size = token, input_limit, max_page_size
        self.products: dict[str, dict[str, Any]] = {}
        self.source_items: dict[tuple[str, str], dict[str, Any]] = {}
        self.orders: list[dict[str, Any]] = []
        self.memos: list[dict[str, Any]] = []
        self.received: list[tuple[str, str, Any]] = []  # (method, path with query, body)
        self.authorizations: list[str | None] = []  # the Authorization header of each request
        self.violations: list[str] = []
        self.clock = lambda: datetime.now(UTC)
        #: report a larger total_count than there is (a row deleted mid-walk): pages past the end get asked
        self.total_count_lies = False
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self.served = Served(self)
        magento_spec.spec()  # parsed once (1.5 s), before a client's timeout can run out on it

    @property
    def url(self) -> str:
        return f"{self.served.origin}/rest/default"

    def __enter__(self) -> FakeMagento:
        self.served.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.served.down()

    def fail_next(self, *faults: Fault) -> None:
        self.served.fail_next(*faults)

    # -- scenario helpers ------------------------------------------------------------------------

    def product(self, sku: str, qty: Any = 0) -> None:
        with self._lock:
            self.products[sku] = {"item_id": next(self._ids), "product_id": next(self._ids), "stock_id": 1,
                                  "qty": float(qty), "is_in_stock": Decimal(str(qty)) > 0, **STOCK_ITEM_DEFAULTS}

    def order(self, *lines: tuple[str, Any], state: str = "new", configurable: bool = False,
              at: datetime | None = None) -> dict[str, Any]:
        """A placed order; ``configurable``: each line is a configurable parent plus its simple child."""
        now = magento_time(at or self.clock())
        entity_id = next(self._ids)
        items = []
        for sku, qty in lines:
            item = {"item_id": next(self._ids), "sku": sku, "qty_ordered": float(qty), "qty_canceled": 0,
                    "qty_refunded": 0, "product_type": "configurable" if configurable else "simple",
                    "order_id": entity_id}
            items.append(item)
            if configurable:
                items.append({**item, "item_id": next(self._ids), "product_type": "simple",
                              "parent_item_id": item["item_id"]})
        order = {"entity_id": entity_id, "increment_id": f"{100000000 + entity_id}", "state": state,
                 "status": "pending" if state == "new" else state, "created_at": now, "updated_at": now,
                 "base_grand_total": 10.0, "grand_total": 10.0, "customer_email": "ann@example.com", "items": items}
        with self._lock:
            self.orders.append(order)
        return order

    def cancel(self, order: dict[str, Any]) -> None:
        with self._lock:
            for item in order["items"]:
                item["qty_canceled"] = item["qty_ordered"]
            order.update(state="canceled", status="canceled", updated_at=magento_time(self._later(order)))

    def refund(self, order: dict[str, Any], sku: str, qty: Any) -> dict[str, Any]:
        """A credit memo for ``qty`` of ``sku`` (on the parent line of a configurable, as Magento does)."""
        with self._lock:
            item = next(i for i in order["items"] if i["sku"] == sku and not i.get("parent_item_id"))
            item["qty_refunded"] += float(qty)
            memo = {"entity_id": next(self._ids), "order_id": order["entity_id"],
                    "items": [{"entity_id": next(self._ids), "order_item_id": item["item_id"], "qty": float(qty),
                               "sku": sku, "base_cost": 0, "base_price": 10}]}
            self.memos.append(memo)
            order.update(state="closed", status="closed", updated_at=magento_time(self._later(order)))
            return memo

    def touch(self, order: dict[str, Any], state: str) -> None:
        with self._lock:
            order.update(state=state, status=state, updated_at=magento_time(self._later(order)))

    def _later(self, order: dict[str, Any]) -> datetime:
        last = datetime.strptime(order["updated_at"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        return max(self.clock(), last + timedelta(seconds=1))

    # -- the API (http_server.App) -----------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict, bytes]:
        status, payload = self._answer(method, path, {k.lower(): v for k, v in headers.items()}, raw)
        return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()

    def _answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return 400, {"message": "Decoding error: \nSyntax error"}
        with self._lock:
            self.received.append((method, path, body))
            self.authorizations.append(headers.get("authorization"))
            if headers.get("authorization") != f"Bearer {self.token}":
                return 401, {"message": "The consumer isn't authorized to access %resources.",
                             "parameters": {"resources": "Magento_InventoryApi::stock_source_item_assign"}}
            url = urlsplit(path)
            query = parse_qs(url.query)
            broken = magento_spec.violations(method, url.path, query, body)
            if broken:
                self.violations += [f"{method} {url.path}: {v}" for v in broken]
                return 400, {"message": "; ".join(broken)}
            status, payload = self._route(method, url.path.removeprefix("/rest/default"), query, body)
            if status == 200:
                self.violations += magento_spec.response_violations(method, url.path, status, payload)
            return status, payload

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if path == "/V1/inventory/source-items":
            return self._save_source_items(body["sourceItems"])
        if path in ("/V1/orders", "/V1/creditmemos"):
            return self._search(self.orders if path == "/V1/orders" else self.memos, query)
        sku = unquote(path.split("/")[3])
        if sku not in self.products:
            return 404, {"message": "The product that was requested doesn't exist. Verify the product and try again."}
        if method == "GET":
            return 200, {k: v for k, v in self.products[sku].items()}
        stock = body["stockItem"]
        self.products[sku].update(qty=float(stock["qty"]), is_in_stock=bool(stock["is_in_stock"]))
        return 200, self.products[sku]["item_id"]

    def _save_source_items(self, items: list[dict[str, Any]]) -> tuple[int, Any]:
        if len(items) > self.input_limit:
            return 400, {"message": 'Maximum items of type "%type" is %max',
                         "parameters": {"type": "\\Magento\\InventoryApi\\Api\\Data\\SourceItemInterface[]",
                                        "max": self.input_limit}}
        if not items:
            return 400, {"message": "Input data is empty"}
        errors = [e for item in items for e in _invalid(item)]
        if errors:
            return 400, {"message": "Validation Failed", "errors": errors}
        if any(i["source_code"] not in SOURCES for i in items):
            return 400, {"message": "Could not save Source Item"}
        unknown = [i["sku"] for i in items if i["sku"] not in self.products]
        if unknown:
            return 404, {"message": "Following products with requested skus were not found: %1",
                         "parameters": [", ".join(unknown)]}
        for item in items:
            self.source_items[(item["sku"], item["source_code"])] = {**item, "quantity": Decimal(str(item["quantity"]))}
        return 200, []

    def _search(self, rows: list[dict[str, Any]], query: dict[str, list[str]]) -> tuple[int, Any]:
        criteria = {_camel(k): v[0] for k, v in query.items()}
        size = int(criteria.get("searchCriteria[pageSize]", 20))
        if size > self.max_page_size:
            return 400, {"message": "Maximum SearchCriteria pageSize is %max", "parameters": {"max": self.max_page_size}}
        found = [r for r in rows if _matches(r, criteria)]
        for n in (1, 0):  # the last sort order first: a stable sort keeps it as the tie-breaker
            field = criteria.get(f"searchCriteria[sortOrders][{n}][field]")
            if field:
                found.sort(key=lambda r, f=field: (str(r.get(f)) if f.endswith("_at") else r.get(f)))
        pages = max(1, math.ceil(len(found) / size))
        page = min(int(criteria.get("searchCriteria[currentPage]", 1)), pages)  # past the end: the last page
        items = json.loads(json.dumps(found[(page - 1) * size:page * size]))
        return 200, {"items": items, "search_criteria": {"filter_groups": [], "page_size": size, "current_page": page},
                     "total_count": len(found) + (100 if self.total_count_lies else 0)}


def _invalid(item: dict[str, Any]) -> list[dict[str, Any]]:
    errors = []
    for name in ("sku", "source_code"):
        if not str(item.get(name) or "").strip():
            errors.append({"message": '"%field" can not be empty.', "parameters": {"field": name}})
    if " " in str(item.get("source_code") or "").strip():
        errors.append({"message": '"%field" can not contain whitespaces.', "parameters": {"field": "source_code"}})
    if item.get("status") not in (0, 1):
        errors.append({"message": '"%field" should a known status.', "parameters": {"field": "status"}})
    return errors


def _camel(name: str) -> str:
    return name.replace("[filter_groups]", "[filterGroups]").replace("[condition_type]", "[conditionType]") \
        .replace("[sort_orders]", "[sortOrders]").replace("[page_size]", "[pageSize]") \
        .replace("[current_page]", "[currentPage]")


def _matches(row: dict[str, Any], criteria: dict[str, str]) -> bool:
    prefix = "searchCriteria[filterGroups][0][filters][0]"
    field = criteria.get(f"{prefix}[field]")
    if not field:
        return True
    value, condition = criteria.get(f"{prefix}[value]", ""), criteria.get(f"{prefix}[conditionType]", "eq")
    held = str(row.get(field))
    if condition == "gteq":
        return held >= value  # Magento's times compare as text in this form
    return held == value


def connector_for(magento: FakeMagento, directory, storage_url: str | None = None, **edits: str):
    """The real MagentoConnector, built by the registry from mappings/magento.yaml aimed at ``magento``."""
    from erp_bridge.connectors import registry
    mappings = example_mapping_set(directory, magento.url, **edits)
    storage = storage_url or f"sqlite:///{directory}/queue.sqlite3"
    return registry.build(mappings.systems["magento"], {"magento_token": magento.token}, mappings.lookups,
                          storage_url=storage)


def example_mapping_set(directory, url: str, with_odoo: bool = False, timeout_s: float = 1.0, **edits: str):
    """mappings/magento.yaml in ``directory`` with the fake's URL (``edits``: text replacements)."""
    import re
    import shutil
    from pathlib import Path

    from erp_bridge.mapping.loader import load_mappings
    source = Path(__file__).resolve().parents[2] / "mappings"
    directory.mkdir(parents=True, exist_ok=True)
    text = (source / "magento.yaml").read_text(encoding="utf-8")
    text = re.sub(r"base_url: \S+", f"base_url: {url}", text)
    text = re.sub(r"timeout_s: \S+", f"timeout_s: {timeout_s}", text)
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    (directory / "magento.yaml").write_text(text, encoding="utf-8")
    if with_odoo:
        shutil.copy(source / "odoo.yaml", directory / "odoo.yaml")
    return load_mappings(directory)
