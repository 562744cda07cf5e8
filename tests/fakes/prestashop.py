"""A PrestaShop webservice double on 127.0.0.1 that behaves like the documented service.

Modelled on the devdocs pages in ../shared/specs/prestashop (read by tests/contract/prestashop_docs.py):
- the webservice key as the HTTP Basic username, empty password ("The username is the authentication
  key you created and there is no password to enter", docs-getting-started.md); anything else is 401
  with a ``WWW-Authenticate`` challenge and an ``<errors>`` body;
- XML in ``<prestashop xmlns:xlink=...>`` envelopes, values as CDATA, ids with ``xlink:href``;
- listings with ``display``, ``filter[field]`` (literal, ``[a|b]``, ``[from,to]`` with the last member
  exclusive, date filters only with ``date=1``), ``sort=[field_ASC]``, ``limit=[offset,]n`` and the
  multishop ``id_shop`` parameter; a parameter, filter or sort the docs do not allow is a 400;
- ``PUT /api/stock_availables/<id>`` replaces the resource: a body missing a required field, with a
  field the resource lacks or a value out of format is refused (400) as PrestaShop refuses it;
- ``configurations`` (``PS_TIMEZONE``), orders written in the shop's own time zone;
- scripted faults (tests/fakes/http_server.Fault): 429/503 with ``Retry-After`` from the host, hangs,
  a PUT applied and its answer lost.
Leads, not confirmed by the pages: the exact error codes and messages of the refusals.
"""
from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import xmltodict

from tests.contract import prestashop_docs as docs

from .http_server import Answer, Fault, Served

XLINK = "http://www.w3.org/1999/xlink"
STOCK_FIELDS = ("id", "id_product", "id_product_attribute", "id_shop", "id_shop_group", "quantity",
                "depends_on_stock", "out_of_stock", "location")
__all__ = ["FakePrestaShop", "Fault"]


def envelope(inner: dict[str, Any]) -> bytes:
    return xmltodict.unparse({"prestashop": {"@xmlns:xlink": XLINK, **inner}}, full_document=True).encode()


def error_body(code: int, message: str) -> bytes:
    return envelope({"errors": {"error": {"code": str(code), "message": message}}})


class FakePrestaShop:
    """``with FakePrestaShop(key) as shop:``; ``shop.url`` is the webservice base (``.../api``)."""

    def __init__(self, key: str = "UCCLLQ9N2ARSHWCXLT74KUKSSK34BFKX", timezone: str = "Europe/Paris"):
        self.key, self.zone = key, ZoneInfo(timezone)
        self.served = Served(self)
        self.stock: dict[int, dict[str, str]] = {}
        self.orders: dict[int, dict[str, str]] = {}
        self.details: dict[int, dict[str, str]] = {}
        self.requests: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.puts = 0
        #: seconds each order_details page takes (a slow shop: a pass lasts long enough to be killed in)
        self.details_delay_s = 0.0

    @property
    def url(self) -> str:
        return f"{self.served.origin}/api"

    def __enter__(self) -> FakePrestaShop:
        self.served.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.served.down()

    # -- the shop, as a test sets it up -------------------------------------------------------------
    def add_stock(self, product: int, attribute: int, quantity: int, shop: int = 1) -> int:
        sid = len(self.stock) + 1
        self.stock[sid] = {"id": str(sid), "id_product": str(product), "id_product_attribute": str(attribute),
                           "id_shop": str(shop), "id_shop_group": "0", "quantity": str(quantity),
                           "depends_on_stock": "0", "out_of_stock": "2", "location": ""}
        return sid

    def quantity(self, product: int, attribute: int = 0, shop: int = 1) -> int:
        row = next(r for r in self.stock.values() if (r["id_product"], r["id_product_attribute"], r["id_shop"])
                   == (str(product), str(attribute), str(shop)))
        return int(row["quantity"])

    def now(self) -> str:
        return datetime.now(UTC).astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")

    def place_order(self, lines: list[tuple[int, int, int]], state: int = 2, shop: int = 1,
                    at: str | None = None) -> int:
        """An order of (product, attribute, quantity) lines; ``at``: its date_upd (shop time)."""
        oid = len(self.orders) + 1
        self.orders[oid] = {"id": str(oid), "current_state": str(state), "date_upd": at or self.now(),
                            "id_shop": str(shop), "reference": f"REF{oid:06d}"}
        for product, attribute, qty in lines:
            did = len(self.details) + 1
            self.details[did] = {"id": str(did), "id_order": str(oid), "product_id": str(product),
                                 "product_attribute_id": str(attribute), "product_quantity": str(qty),
                                 "product_reference": f"P{product}-{attribute}"}
        return oid

    def set_state(self, order: int, state: int, at: str | None = None) -> None:
        self.orders[order].update(current_state=str(state), date_upd=at or self.now())

    # -- the webservice ---------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        self.requests.append({"method": method, "url": path, "headers": headers, "body": body})
        if not self._authorised(headers):
            return 401, {"WWW-Authenticate": 'Basic realm="Welcome to PrestaShop Webservice, please enter the '
                         'authentication key as the login. No password required."',
                         "Content-Type": "text/xml;charset=utf-8"}, error_body(18, "Invalid authentication key")
        route = urlsplit(path).path.removeprefix("/api/").strip("/")
        match = re.fullmatch(r"stock_availables/(\d+)", route)
        if method == "PUT" and match:
            return self._put_stock(int(match.group(1)), body)
        if method == "GET" and route in ("stock_availables", "orders", "order_details", "configurations"):
            return self._list(route, path)
        return 405, {}, error_body(22, f"Method {method} is not valid for {route}")

    def _authorised(self, headers: dict[str, str]) -> bool:
        given = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        expected = "Basic " + base64.b64encode(f"{self.key}:".encode()).decode()
        return given == expected

    def _list(self, plural: str, url: str) -> Answer:
        problems = docs.query_problems(plural, url)
        if problems:
            self.violations += problems
            return 400, {}, error_body(32, "; ".join(problems))
        params = dict(parse_qsl(urlsplit(url).query))
        if plural == "order_details":
            time.sleep(self.details_delay_s)
        rows = self._rows(plural, params)
        rows = [r for r in rows if all(_matches(r.get(m.group(1), ""), v) for k, v in params.items()
                                       if (m := re.fullmatch(r"filter\[(\w+)\]", k)))]
        rows = _sorted(rows, params.get("sort", "[id_ASC]"))
        offset, count = _limit(params.get("limit"))
        rows = rows[offset:offset + count] if count is not None else rows
        singular = plural[:-1] if plural != "stock_availables" else "stock_available"
        wanted = params.get("display", "")
        shown = [r if wanted == "full" else {k: r.get(k, "") for k in wanted[1:-1].split(",")} for r in rows]
        return 200, {"Content-Type": "text/xml;charset=utf-8"}, envelope({plural: {singular: shown} if shown else None})

    def _rows(self, plural: str, params: dict[str, str]) -> list[dict[str, str]]:
        if plural == "configurations":
            return [{"id": "1", "name": "PS_TIMEZONE", "value": self.zone.key}]
        table = {"stock_availables": self.stock, "orders": self.orders, "order_details": self.details}[plural]
        rows = [dict(r) for r in table.values()]
        if plural == "stock_availables" and "id_shop" in params:
            rows = [r for r in rows if r["id_shop"] == params["id_shop"]]
        return rows

    def _put_stock(self, sid: int, body: bytes) -> Answer:
        try:
            values = xmltodict.parse(body)["prestashop"]["stock_available"]
        except Exception:  # anything unreadable is PrestaShop's "bad XML"
            self.violations.append("PUT body is not a <prestashop><stock_available> document")
            return 400, {}, error_body(127, "XML error : String could not be parsed as XML")
        values = {k: (v or "") for k, v in values.items() if not k.startswith("@")}
        problems = docs.body_problems("stock_availables", values)
        if values.get("id") != str(sid):
            problems.append(f"id {values.get('id')!r} is not the id in the URL ({sid})")
        if sid not in self.stock:
            return 404, {}, error_body(87, f"Id {sid} not found for stock_available")
        if problems:
            self.violations += problems
            return 400, {}, error_body(41, "; ".join(problems))
        self.stock[sid] = {k: values.get(k, "") for k in STOCK_FIELDS}
        self.puts += 1
        return 200, {"Content-Type": "text/xml;charset=utf-8"}, envelope({"stock_available": self.stock[sid]})


def _matches(value: str, wanted: str) -> bool:
    inner = wanted.strip("[]")
    if wanted.startswith("[") and "," in inner and "|" not in inner:
        low, high = inner.split(",", 1)
        return low <= value < high if not value.isdigit() else int(low) <= int(value) < int(high)
    return value in inner.split("|")


def _sorted(rows: list[dict[str, str]], sort: str) -> list[dict[str, str]]:
    for part in reversed(sort.strip("[]").split(",")):
        name, _, way = part.rpartition("_")
        rows = sorted(rows, key=lambda r, n=name: (len(r.get(n, "")), r.get(n, "")) if n == "id" else r.get(n, ""),
                      reverse=way == "DESC")
    return rows


def _limit(value: str | None) -> tuple[int, int | None]:
    if not value:
        return 0, None
    offset, _, count = value.rpartition(",")
    return int(offset or 0), int(count)


def wait_a_second() -> None:
    """Shop dates have whole seconds: let the clock move on before the next write."""
    time.sleep(1.05)


def example_mapping_set(directory, url: str, timeout_s: float = 5.0, with_odoo: bool = False,
                        extra_items: dict[str, str] | None = None):
    """mappings/prestashop.yaml and its table, copied to ``directory`` with the double's URL: the
    tests run the mapping that ships (``with_odoo``: plus the Odoo mapping, the system of record)."""
    import shutil
    from pathlib import Path

    from erp_bridge.mapping.loader import load_mappings
    source = Path(__file__).resolve().parents[2] / "mappings"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "prestashop_items.csv", directory / "prestashop_items.csv")
    with (directory / "prestashop_items.csv").open("a", encoding="utf-8") as table:
        table.writelines(f"{sku},{code},extra\n" for sku, code in (extra_items or {}).items())
    text = (source / "prestashop.yaml").read_text(encoding="utf-8")
    text = re.sub(r"base_url: \S+", f"base_url: {url}", text)
    text = re.sub(r"timeout_s: \S+", f"timeout_s: {timeout_s}", text)
    (directory / "prestashop.yaml").write_text(text, encoding="utf-8")
    if with_odoo:
        shutil.copy(source / "odoo.yaml", directory / "odoo.yaml")
    return load_mappings(directory)


def connector_for(shop: FakePrestaShop, directory, storage_url: str | None = None, key: str | None = None,
                  **options: Any):
    """The real PrestaShopConnector, built by the registry's factory, talking to ``shop``."""
    from erp_bridge.connectors import registry
    mappings = example_mapping_set(directory, shop.url, **options)
    storage = storage_url or f"sqlite:///{directory}/queue.sqlite3"
    secrets = {"prestashop_webservice_key": key or shop.key}
    return registry.build(mappings.systems["prestashop"], secrets, mappings.lookups, storage_url=storage)
