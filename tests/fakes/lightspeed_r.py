"""A fake Lightspeed Retail (R-Series) API V3: a real HTTP server on 127.0.0.1 (tests/fakes/http_server).

Behaves as documented (../shared/specs/lightspeed/NOTES-r-series-and-x-series.md,
lightspeed-rate-limits.yml, vendor-apis.md §9; R-Series has no machine-readable contract):
- OAuth: ``POST /auth/oauth/token`` with grant_type=refresh_token answers an access token with
  ``expires_in`` and a NEW refresh token; the one used is revoked (``invalid_grant`` if reused).
  An expired or unknown access token is a 401.
- a leaky bucket per account: each request adds its cost (GET 1, PUT/POST/DELETE 10) and the
  bucket drains ``drip`` per second; a request that would overflow is a 429 with ``Retry-After``
  and counted in ``overflows``. Every answer carries ``X-LS-API-Bucket-Level: used/size``,
  ``X-LS-API-Drip-Rate`` and ``X-LS-API-Request-Cost``.
- ``GET Sale.json`` takes ``completed``, ``timeStamp=>,<ISO time>``, ``sort=timeStamp``,
  ``load_relations=["SaleLines"]`` and ``limit`` (1..100); pages are linked by the ``next`` URL in
  ``@attributes`` (an ``after`` cursor); a single record is a bare object, numbers are strings.
- ``GET Item/{id}.json?load_relations=["ItemShops"]`` and ``PUT Item/{id}.json`` with
  ``ItemShops.ItemShop[{itemShopID, qoh}]``: qoh an integer, itemShopID one of the item's, shop 0
  (the all-shops summary) read-only; anything else is a 400 in Lightspeed's envelope, recorded in
  ``violations``.
- scripted faults (5xx, hangs, lost answers) from the shared server base.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fakes.http_server import Answer, Served

ACCOUNT = "254127"
CLIENT_ID, CLIENT_SECRET, FIRST_REFRESH = "ls-client-4d1e", "ls-secret-9a7b2c", "ls-refresh-0001"
COSTS = {"GET": 1.0}
WRITE_COST = 10.0
DOCUMENTED_PARAMS = {"completed", "timeStamp", "sort", "load_relations", "limit", "after"}


def ls_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


class Bucket:
    def __init__(self, size: float, drip: float):
        self.size, self.drip, self.level, self.at = size, drip, 0.0, time.monotonic()
        self.overflows = 0
        self.peak = 0.0

    def take(self, cost: float) -> float | None:
        """None when the request fits (and is counted); else the seconds to wait."""
        now = time.monotonic()
        self.level, self.at = max(0.0, self.level - self.drip * (now - self.at)), now
        if self.level + cost > self.size:
            self.overflows += 1
            return (self.level + cost - self.size) / self.drip
        self.level += cost
        self.peak = max(self.peak, self.level)
        return None

    def headers(self, cost: float) -> dict[str, str]:
        return {"X-LS-API-Bucket-Level": f"{self.level:g}/{self.size:g}", "X-LS-API-Drip-Rate": f"{self.drip:g}",
                "X-LS-API-Request-Cost": f"{cost:g}"}


class LightspeedApp:
    def __init__(self, bucket_size: float = 60, drip: float = 1.0, token_lifetime_s: float = 3600):
        self.bucket = Bucket(bucket_size, drip)
        self.token_lifetime_s = token_lifetime_s
        self.refresh_tokens = {FIRST_REFRESH}
        self.revoked: set[str] = set()
        self.tokens: dict[str, float] = {}  # access token -> expiry (monotonic)
        self.sales: list[dict[str, Any]] = []
        self.items: dict[str, dict[str, Any]] = {}  # itemID -> {"itemShops": {shopID: {...}}}
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []  # method, path, query, json body
        self.token_requests = 0
        self.violations: list[str] = []
        self._ids = itertools.count(100)
        self.lock = threading.RLock()
        self.origin = ""

    # -- scenario helpers ------------------------------------------------------------------------

    def stock(self, item_id: str, shop_id: str, qoh: int) -> str:
        """The item's ItemShop at ``shop_id`` with ``qoh``; returns its itemShopID."""
        with self.lock:
            shops = self.items.setdefault(item_id, {"0": {"itemShopID": str(next(self._ids)), "shopID": "0",
                                                          "qoh": "0", "itemID": item_id}})
            shop = shops.setdefault(shop_id, {"itemShopID": str(next(self._ids)), "shopID": shop_id, "itemID": item_id})
            shop["qoh"] = str(qoh)
            shops["0"]["qoh"] = str(sum(int(s["qoh"]) for k, s in shops.items() if k != "0"))
            return shop["itemShopID"]

    def qoh(self, item_id: str, shop_id: str) -> int:
        return int(self.items[item_id][shop_id]["qoh"])

    def sell(self, lines: list[tuple[str, int]], shop_id: str = "1", completed: bool = True,
             voided: bool = False) -> dict[str, Any]:
        """A sale at the till: (itemID, unitQuantity) per line; negative = an item taken back."""
        with self.lock:
            now = ls_time(datetime.now(UTC))
            sale_id = str(next(self._ids))
            sale_lines = [{"saleLineID": str(next(self._ids)), "itemID": item, "unitQuantity": str(q),
                           "shopID": shop_id, "timeStamp": now} for item, q in lines]
            sale = {"saleID": sale_id, "timeStamp": now, "completed": str(completed).lower(),
                    "voided": str(voided).lower(), "shopID": shop_id, "completeTime": now if completed else "",
                    "SaleLines": {"SaleLine": sale_lines[0] if len(sale_lines) == 1 else sale_lines}}
            self.sales.append(sale)
            return sale

    def touch(self, sale: dict[str, Any], **changes: Any) -> None:
        """The sale is saved again (completed, voided...): its timeStamp moves."""
        with self.lock:
            sale.update({k: str(v).lower() if isinstance(v, bool) else v for k, v in changes.items()})
            sale["timeStamp"] = ls_time(datetime.now(UTC))

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    # -- the API ---------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        if parts.path == "/auth/oauth/token":
            return self._token(body)
        with self.lock:
            self.requests.append((method, parts.path, query, _json(body)))
            cost = COSTS.get(method, WRITE_COST)
            if not self._authorised(headers):
                return _error(401, "Unauthorized", "Invalid access token.", self.bucket.headers(cost))
            wait = self.bucket.take(cost)
            if wait is not None:
                return _error(429, "Too Many Requests", "Rate limit exceeded: the bucket is full.",
                              {**self.bucket.headers(cost), "Retry-After": str(max(1, int(wait + 0.999)))})
            status, payload = self._route(method, parts.path, query, body)
            return status, {"Content-Type": "application/json", **self.bucket.headers(cost)}, json.dumps(payload).encode()

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
        base = f"/API/V3/Account/{ACCOUNT}"
        if path == f"{base}/Sale.json" and method == "GET":
            return self._sales(query)
        if path.startswith(f"{base}/Item/") and path.endswith(".json"):
            item_id = path[len(f"{base}/Item/"):-len(".json")]
            return self._get_item(item_id, query) if method == "GET" else self._put_item(item_id, _json(body))
        return 404, _envelope(404, "Not Found", f"no route {method} {path}")

    def _sales(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        unknown = set(query) - DOCUMENTED_PARAMS
        problem = self._sale_query_problem(query) or (f"unknown parameters {sorted(unknown)}" if unknown else None)
        if problem:
            self.violations.append(f"GET Sale: {problem}")
            return 400, _envelope(400, "Bad Request", problem)
        since = datetime.fromisoformat(query["timeStamp"][0][2:])
        rows = [s for s in self.sales if datetime.fromisoformat(s["timeStamp"]) > since
                and (query.get("completed", [""])[0] != "true" or s["completed"] == "true")]
        rows.sort(key=lambda s: s["timeStamp"])
        after, limit = int(query.get("after", ["0"])[0]), int(query.get("limit", ["100"])[0])
        page = rows[after:after + limit]
        nxt = ""
        if after + limit < len(rows):
            rest = {k: v[0] for k, v in query.items()}
            nxt = f"{self.origin}/API/V3/Account/{ACCOUNT}/Sale.json?{urlencode({**rest, 'after': after + limit})}"
        listed: Any = page[0] if len(page) == 1 else page
        body: dict[str, Any] = {"@attributes": {"next": nxt, "previous": ""}}
        if page:
            body["Sale"] = listed
        return 200, body

    @staticmethod
    def _sale_query_problem(query: dict[str, list[str]]) -> str | None:
        stamp = query.get("timeStamp", [""])[0]
        if not stamp.startswith(">,"):
            return f"timeStamp must be '>,<ISO 8601 time>', got {stamp!r}"
        try:
            if datetime.fromisoformat(stamp[2:]).tzinfo is None:
                return "timeStamp has no UTC offset"
        except ValueError:
            return f"timeStamp {stamp[2:]!r} is not ISO 8601"
        if query.get("load_relations", [""])[0] != '["SaleLines"]':
            return 'load_relations must be ["SaleLines"] (a JSON array) to read the lines'
        limit = query.get("limit", ["100"])[0]
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            return f"limit must be 1..100, got {limit!r}"
        return None

    def _get_item(self, item_id: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if item_id not in self.items:
            return 404, _envelope(404, "Not Found", f"Item {item_id} not found.")
        item: dict[str, Any] = {"itemID": item_id, "systemSku": f"21000000{item_id}"}
        if query.get("load_relations", [""])[0] == '["ItemShops"]':
            item["ItemShops"] = {"ItemShop": list(self.items[item_id].values())}
        return 200, {"@attributes": {"count": "1"}, "Item": item}

    def _put_item(self, item_id: str, body: Any) -> tuple[int, Any]:
        problem = self._put_problem(item_id, body)
        if problem:
            self.violations.append(f"PUT Item {item_id}: {problem}")
            return 400, _envelope(400, "Bad Request", problem)
        by_id = {s["itemShopID"]: s for s in self.items[item_id].values()}
        for line in _listed(body["ItemShops"]["ItemShop"]):
            by_id[str(line["itemShopID"])]["qoh"] = str(int(line["qoh"]))
        shops = self.items[item_id]
        shops["0"]["qoh"] = str(sum(int(s["qoh"]) for k, s in shops.items() if k != "0"))
        return self._get_item(item_id, {"load_relations": ['["ItemShops"]']})

    def _put_problem(self, item_id: str, body: Any) -> str | None:
        if item_id not in self.items:
            return f"Item {item_id} not found."
        try:
            lines = _listed(body["ItemShops"]["ItemShop"])
        except (KeyError, TypeError):
            return "body must be {ItemShops: {ItemShop: [...]}}"
        by_id = {s["itemShopID"]: s for s in self.items[item_id].values()}
        for line in lines:
            extra = set(line) - {"itemShopID", "qoh"}
            shop = by_id.get(str(line.get("itemShopID")))
            if extra:
                return f"ItemShop fields {sorted(extra)} are not what the bridge may write"
            if shop is None:
                return f"itemShopID {line.get('itemShopID')!r} is not one of item {item_id}'s"
            if shop["shopID"] == "0":
                return "the all-shops ItemShop (shopID 0) is read-only"
            if not isinstance(line.get("qoh"), int) and not str(line.get("qoh")).lstrip("-").isdigit():
                return f"qoh must be an integer, got {line.get('qoh')!r}"
        return None

    def _authorised(self, headers: dict[str, str]) -> bool:
        given = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        expiry = self.tokens.get(given.removeprefix("Bearer "))
        return given.startswith("Bearer ") and expiry is not None and expiry > time.monotonic()

    def _token(self, body: bytes) -> Answer:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        with self.lock:
            self.token_requests += 1
            if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
                return 401, {"Content-Type": "application/json"}, b'{"error": "invalid_client"}'
            given = form.get("refresh_token", "")
            if form.get("grant_type") != "refresh_token" or given not in self.refresh_tokens:
                return 400, {"Content-Type": "application/json"}, json.dumps(
                    {"error": "invalid_grant", "error_description": "The refresh token is invalid."}).encode()
            self.refresh_tokens.discard(given)
            self.revoked.add(given)
            fresh, access = f"ls-refresh-{next(self._ids)}", f"ls-access-{next(self._ids)}"
            self.refresh_tokens.add(fresh)
            self.tokens[access] = time.monotonic() + self.token_lifetime_s
        answer = {"access_token": access, "expires_in": int(self.token_lifetime_s), "token_type": "Bearer",
                  "scope": "employee:inventory employee:register_read", "refresh_token": fresh}
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()


class FakeLightspeedR(Served):
    def __init__(self, **options: Any):
        super().__init__(LightspeedApp(**options))
        self.ls: LightspeedApp = self.app  # type: ignore[assignment]

    def __enter__(self) -> FakeLightspeedR:
        self.up()
        self.ls.origin = self.origin
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()

    @property
    def base_url(self) -> str:
        return f"{self.origin}/API/V3/Account/{ACCOUNT}"

    @property
    def token_url(self) -> str:
        return f"{self.origin}/auth/oauth/token"


def _listed(value: Any) -> list[dict[str, Any]]:
    return [value] if isinstance(value, dict) else list(value)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _envelope(code: int, name: str, message: str) -> dict[str, str]:
    return {"httpCode": str(code), "httpMessage": name, "message": message,
            "errorClass": "Exception" if code >= 500 else "ClientException"}


def _error(code: int, name: str, message: str, headers: dict[str, str]) -> Answer:
    return code, {"Content-Type": "application/json", **headers}, json.dumps(_envelope(code, name, message)).encode()


def example_mapping_set(directory, fake: FakeLightspeedR, timeout_s: float = 2.0, with_odoo: bool = False):
    """mappings/lightspeed_r.yaml (and its item table) with the fake's URLs: the tests run the
    mapping that ships."""
    import re
    import shutil
    from pathlib import Path

    from erp_bridge.mapping.loader import load_mappings
    source = Path(__file__).resolve().parents[2] / "mappings"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "lightspeed_r_items.csv", directory / "lightspeed_r_items.csv")
    text = (source / "lightspeed_r.yaml").read_text(encoding="utf-8")
    text = re.sub(r"base_url: \S+", f"base_url: {fake.base_url}", text)
    text = re.sub(r"token_url: \S+", f"token_url: {fake.token_url}", text)
    text = re.sub(r"timeout_s: \S+", f"timeout_s: {timeout_s}", text)
    (directory / "lightspeed_r.yaml").write_text(text, encoding="utf-8")
    if with_odoo:
        shutil.copy(source / "odoo.yaml", directory / "odoo.yaml")
    return load_mappings(directory)


SECRETS = {"lightspeed_client_id": CLIENT_ID, "lightspeed_client_secret": CLIENT_SECRET,
           "lightspeed_refresh_token": FIRST_REFRESH}


def connector_for(fake: FakeLightspeedR, directory, storage_url: str | None = None, **options: Any):
    """The real connector, built by the registry's factory, talking to ``fake``."""
    from erp_bridge.connectors import registry
    mappings = example_mapping_set(directory, fake, **options)
    storage = storage_url or f"sqlite:///{directory}/queue.sqlite3"
    return registry.build(mappings.systems["lightspeed_r"], SECRETS, mappings.lookups, storage_url=storage)
