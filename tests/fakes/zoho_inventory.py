"""A Zoho Inventory double on 127.0.0.1 that behaves like the documented API (vendor-apis.md §4,
../shared/specs/zoho-inventory/): the accounts server's ``POST /oauth/v2/token`` (refresh_token
grant; client id/secret and refresh token checked; errors answered as ``{"error": "invalid_code"}``;
``expires_in`` 3600; at most 10 access tokens per refresh token per 10 minutes), access tokens that
expire (401 with Zoho's ``code``/``message`` envelope), ``organization_id`` required on every API
call, ``POST /inventoryadjustments`` validated against Zoho's OpenAPI document (openapi-core) and
then against the organisation's items and locations, ``GET /inventoryadjustments`` paged with
``page_context.has_more_page`` (newest date first), ``GET /itemdetails?item_ids=`` with
``locations[].location_stock_on_hand`` / ``location_actual_available_stock`` (strings, as the spec
types them), a per-minute request limit per organisation and a daily quota (429).
Faults as in ``tests/fakes/sap_b1.py``: any status/headers/body, a hang, commit-then-drop (a lost
answer), a drop before processing, ``down()``/``up()``.
Leads, not confirmed in ../shared/specs (the codes and wording of the error envelopes; the
rate-limit headers: none are documented, the double sends ``Retry-After`` only when told to):
401 code 57 (no token) / 14 (invalid or expired token); organization_id code 2 (missing) / 6041
(not yours); validation code 4; unknown item 2006 / location 9205; 429 code 44 / daily 45.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.served import Fault, Served, drop_connection, send_json

if TYPE_CHECKING:
    from erp_bridge.connectors.zoho_inventory import ZohoInventoryConnector
    from erp_bridge.mapping.schema import SystemMapping

API_ROOT, TOKEN_PATH = "/inventory/v1", "/oauth/v2/token"
SPECS = Path("../shared/specs/zoho-inventory")
TOKENS_PER_10_MIN = 10


def zoho_error(code: int, message: str) -> dict:
    return {"code": code, "message": message}


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes = b""
    status: int | None = None


@dataclass
class Location:
    on_hand: Decimal = Decimal(0)
    committed: Decimal = Decimal(0)  # by confirmed sales orders: on hand but not available


@dataclass
class Answer:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


class FakeZoho(Served):
    def __init__(self, *, client_id: str = "1000.CLIENTID", client_secret: str = "client-secret-value",
                 refresh_token: str = "1000.refresh-token-value", organization_id: str = "20071234567",
                 token_lifetime_s: int = 3600, per_minute: int = 100, daily: int = 10_000,
                 retry_after: bool = True, clock: Callable[[], float] = time.monotonic):
        self.client = (client_id, client_secret, refresh_token)
        self.organization_id, self.token_lifetime_s, self.clock = organization_id, token_lifetime_s, clock
        self.per_minute, self.daily, self.retry_after = per_minute, daily, retry_after
        self.items: dict[str, dict[str, Location]] = {}
        self.locations: set[str] = set()
        self.adjustments: list[dict] = []
        self.tokens: dict[str, float] = {}  # access token -> expiry (fake clock)
        self.issued: list[float] = []
        self.calls: list[float] = []  # API calls counted against the limits
        self.received: list[Received] = []
        self.faults: list[Fault] = []
        self.cond = threading.Condition(threading.RLock())
        self._ids = itertools.count(4815000000050001)

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}{API_ROOT}"

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self._port}{TOKEN_PATH}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    # --- test controls --------------------------------------------------------------------------
    def stock(self, item_id: str, location_id: str, on_hand: Any, committed: Any = 0) -> None:
        with self.cond:
            self.locations.add(location_id)
            self.items.setdefault(item_id, {})[location_id] = Location(Decimal(str(on_hand)), Decimal(str(committed)))

    def fail_next(self, *faults: Fault) -> None:
        with self.cond:
            self.faults.extend(faults)

    def expire_tokens(self) -> None:
        """Every access token issued so far is past its hour."""
        with self.cond:
            self.tokens = dict.fromkeys(self.tokens, float("-inf"))

    def api_calls(self, method: str | None = None, path: str | None = None) -> list[Received]:
        with self.cond:
            return [r for r in self.received if r.path != TOKEN_PATH and (method is None or r.method == method)
                    and (path is None or r.path == path)]

    def token_requests(self) -> list[Received]:
        with self.cond:
            return [r for r in self.received if r.path == TOKEN_PATH]

    def on_hand(self, item_id: str, location_id: str) -> Decimal:
        with self.cond:
            return self.items[item_id][location_id].on_hand

    def references(self) -> list[str]:
        with self.cond:
            return [a.get("reference_number", "") for a in self.adjustments]

    # --- the service ----------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str],
               raw: bytes) -> tuple[Answer, str | None, float]:
        """(answer, drop, hang seconds) for one request."""
        parts = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.cond:
            record = Received(method, parts.path, query, headers, _json(raw, headers), raw)
            self.received.append(record)
            fault = self._fault(parts.path)
            if fault and fault.drop != "after_commit":
                answer, drop = Answer(fault.status, fault.body, fault.headers), fault.drop
            else:
                answer, drop = self._serve(record), (fault.drop if fault else None)
            record.status = None if drop else answer.status
            self.cond.notify_all()
        return answer, drop, fault.hang_s if fault else 0.0

    def _fault(self, path: str) -> Fault | None:
        for i, fault in enumerate(self.faults):
            if fault.path is None or fault.path in path:
                return self.faults.pop(i)
        return None

    def _serve(self, r: Received) -> Answer:
        if r.path == TOKEN_PATH and r.method == "POST":
            return self._token(r)
        if not r.path.startswith(API_ROOT + "/"):
            return Answer(404, zoho_error(5, "Invalid URL Passed"))
        denied = self._authorize(r.headers.get("Authorization", "")) or self._organization(r.query)
        if denied is None:
            denied = self._limited()
        if denied is not None:
            return denied
        route = (r.method, r.path[len(API_ROOT):])
        if route == ("POST", "/inventoryadjustments"):
            return self._create(r)
        if route == ("GET", "/inventoryadjustments"):
            return self._list(r.query)
        if route == ("GET", "/itemdetails"):
            return self._item_details(r.query)
        return Answer(404, zoho_error(5, "Invalid URL Passed"))

    # --- accounts server ------------------------------------------------------------------------
    def _token(self, r: Received) -> Answer:
        form = {**r.query, **{k: v[0] for k, v in parse_qs(r.raw.decode()).items()}}
        client_id, secret, refresh = self.client
        if form.get("grant_type") != "refresh_token":
            return Answer(200, {"error": "unsupported_grant_type"})
        if form.get("client_id") != client_id:
            return Answer(200, {"error": "invalid_client"})
        if form.get("client_secret") != secret:
            return Answer(200, {"error": "invalid_client_secret"})
        if form.get("refresh_token") != refresh:
            return Answer(200, {"error": "invalid_code"})
        now = self.clock()
        if sum(1 for t in self.issued if now - t < 600) >= TOKENS_PER_10_MIN:
            return Answer(400, {"error": "Access Denied", "status": "failure", "error_description":
                                "You have made too many requests continuously. Please try again after some time."})
        self.issued.append(now)
        token = f"1000.{uuid.uuid4().hex}.{uuid.uuid4().hex}"
        self.tokens[token] = now + self.token_lifetime_s
        return Answer(200, {"access_token": token, "api_domain": "https://www.zohoapis.com",
                            "token_type": "Bearer", "expires_in": self.token_lifetime_s})

    # --- checks every API call passes -----------------------------------------------------------
    def _authorize(self, header: str) -> Answer | None:
        if not header.startswith("Zoho-oauthtoken "):
            return Answer(401, zoho_error(57, "You are not authorized to perform this operation"))
        expiry = self.tokens.get(header.removeprefix("Zoho-oauthtoken "))
        if expiry is None or self.clock() >= expiry:
            return Answer(401, zoho_error(14, "Invalid OAuth token."))
        return None

    def _organization(self, query: dict[str, str]) -> Answer | None:
        given = query.get("organization_id")
        if not given:
            return Answer(400, zoho_error(2, "Invalid value passed for organization_id"))
        if given != self.organization_id:
            return Answer(400, zoho_error(6041, f"This user is not associated with the organization {given}"))
        return None

    def _limited(self) -> Answer | None:
        now = self.clock()
        if sum(1 for t in self.calls if now - t < 86_400) >= self.daily:
            return Answer(429, zoho_error(45, "You have reached the maximum number of API calls for the day"))
        recent = [t for t in self.calls if now - t < 60]
        if len(recent) >= self.per_minute:
            wait = max(1, int(60 - (now - recent[0]) + 0.999))
            headers = {"Retry-After": str(wait)} if self.retry_after else {}
            return Answer(429, zoho_error(44, "You have made too many requests per minute"), headers)
        self.calls.append(now)
        return None

    # --- inventory adjustments ------------------------------------------------------------------
    def _create(self, r: Received) -> Answer:
        problem = spec_problem(r) or self._unknown(r.body)
        if problem is not None:
            return Answer(400, problem)
        body = r.body
        for line in body["line_items"]:
            where = self.items[line["item_id"]].setdefault(line.get("location_id") or body["location_id"], Location())
            where.on_hand += Decimal(str(line["quantity_adjusted"]))
        adjustment = {"inventory_adjustment_id": str(next(self._ids)), **body,
                      "line_items": [{"line_item_id": str(next(self._ids)), **line} for line in body["line_items"]]}
        self.adjustments.append(adjustment)
        return Answer(201, {"code": 0, "message": "Inventory Adjustment has been added",
                            "inventory_adjustment": adjustment})

    def _unknown(self, body: dict) -> dict | None:
        try:
            date.fromisoformat(body["date"])
        except ValueError:
            return zoho_error(4, "Invalid value passed for date")
        for line in body["line_items"]:
            location = line.get("location_id") or body.get("location_id")
            if line["item_id"] not in self.items:
                return zoho_error(2006, f"Item with ID {line['item_id']} does not exist")
            if location is None:
                return zoho_error(4, "Please select a location for the line item")
            if location not in self.locations:
                return zoho_error(9205, f"Location with ID {location} does not exist")
        return None

    def _list(self, query: dict[str, str]) -> Answer:
        page, per_page = int(query.get("page", 1)), min(int(query.get("per_page", 200)), 200)
        newest = sorted(enumerate(self.adjustments), key=lambda pair: (pair[1]["date"], pair[0]), reverse=True)
        rows = [_summary(a) for _, a in newest]
        chunk = rows[(page - 1) * per_page: page * per_page]
        return Answer(200, {"code": 0, "message": "success", "inventory_adjustments": chunk, "page_context": {
            "page": page, "per_page": per_page, "has_more_page": page * per_page < len(rows),
            "sort_column": "date", "sort_order": "D"}})

    # --- items ----------------------------------------------------------------------------------
    def _item_details(self, query: dict[str, str]) -> Answer:
        ids = [i for i in query.get("item_ids", "").split(",") if i]
        if not ids:
            return Answer(400, zoho_error(4, "Invalid value passed for item_ids"))
        items = [_item(i, self.items[i]) for i in ids if i in self.items]
        return Answer(200, {"code": 0, "message": "success", "items": items})


def _summary(adjustment: dict) -> dict:
    keys = ("inventory_adjustment_id", "date", "reason", "description", "reference_number", "adjustment_type")
    return {k: adjustment[k] for k in keys if k in adjustment}


def _item(item_id: str, levels: dict[str, Location]) -> dict:
    rows = [{"location_id": loc, "location_name": f"Location {loc}", "status": "active", "is_primary": n == 0,
             "location_stock_on_hand": f"{level.on_hand:.2f}",
             "location_available_stock": f"{level.on_hand:.2f}",
             "location_actual_available_stock": f"{level.on_hand - level.committed:.2f}"}
            for n, (loc, level) in enumerate(sorted(levels.items()))]
    return {"item_id": item_id, "name": f"Item {item_id}", "product_type": "goods", "locations": rows}


def _json(raw: bytes, headers: dict[str, str]) -> Any:
    if not raw or "json" not in headers.get("Content-Type", ""):
        return None
    try:
        return json.loads(raw, parse_float=Decimal)
    except ValueError:
        return None


@cache
def openapi(name: str) -> Any:
    """Zoho's OpenAPI document ``name`` (e.g. inventoryadjustments.yml), read once."""
    from openapi_core import OpenAPI

    return OpenAPI.from_file_path(str(SPECS / name))


def spec_problem(r: Received) -> dict | None:
    """Zoho's answer to a body its OpenAPI document rejects (its code 4), or None."""
    import requests
    from openapi_core.contrib.requests import RequestsOpenAPIRequest
    from openapi_core.exceptions import OpenAPIError

    request = requests.Request(r.method, f"https://www.zohoapis.com/inventory/v1{r.path[len(API_ROOT):]}",
                               params=r.query, data=r.raw, headers={"Content-Type": "application/json"})
    try:
        with warnings.catch_warnings():  # "Unsupported scheme type": Zoho_Auth is an implicit flow
            warnings.simplefilter("ignore", UserWarning)
            openapi("inventoryadjustments.yml").validate_request(RequestsOpenAPIRequest(request))
    except OpenAPIError as exc:
        return zoho_error(4, f"Invalid value passed: {_cause(exc)}")
    return None


def _cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    details = getattr(exc, "schema_errors", None)
    return "; ".join(e.message for e in details) if details else str(exc)


def _handler(zoho: FakeZoho) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer, drop, hang_s = zoho.handle(method, self.path, dict(self.headers), raw)
            if hang_s:
                time.sleep(hang_s)
            if drop:
                return drop_connection(self)  # Zoho or the network died mid-answer
            send_json(self, answer.status, answer.headers, answer.payload, "application/json;charset=UTF-8")

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


# --- helpers the Zoho tests share -------------------------------------------------------------
MAPPING_FILE = Path(__file__).resolve().parents[2] / "mappings" / "zoho_inventory.yaml"
ITEMS = {"chair-blue": "4815000000044208", "chair-red": "4815000000044216", "007": "4815000000044224"}
WH, WH2 = "4815000000034001", "4815000000034009"


def zoho_mapping(zoho: FakeZoho, *, role: str = "mirror", timeout_s: float = 2.0, batch_size: int = 1,
                 location_roles: dict[str, str] | None = None,
                 on_status: dict[str, str] | None = None) -> SystemMapping:
    """The shipped mapping (mappings/zoho_inventory.yaml) pointed at the double: tests run what ships."""
    from erp_bridge.mapping.schema import SystemMapping
    from erp_bridge.yamlpos import load_yaml_file

    data = load_yaml_file(MAPPING_FILE).data
    data["connection"].update(base_url=zoho.url, timeout_s=timeout_s)
    data["connection"]["auth"]["token_url"] = zoho.token_url
    data["role"], data["writes"]["batch_size"] = role, batch_size
    if on_status is not None:
        data["writes"]["on_status"] = on_status
    for entry in data["locations"]["map"]:
        if entry["internal"] in (location_roles or {}):
            entry["role"] = (location_roles or {})[entry["internal"]]
    return SystemMapping.model_validate(data)


def secrets_for(zoho: FakeZoho, mapping: SystemMapping) -> dict[str, str]:
    names = mapping.connection.auth.secrets
    client_id, client_secret, refresh_token = zoho.client
    return {names["client_id"]: client_id, names["client_secret"]: client_secret,
            names["refresh_token"]: refresh_token}


def connector_for(zoho: FakeZoho, data_dir: Path | str, *, mapping: SystemMapping | None = None,
                  settle_s: float = 0.0, clock: Callable[[], float] = time.time) -> ZohoInventoryConnector:
    """The connector as the registry builds it (same factory), on the double."""
    from erp_bridge.connectors.runtime.context import ConnectorContext
    from erp_bridge.connectors.zoho_inventory import from_context

    mapping = mapping or zoho_mapping(zoho)
    ctx = ConnectorContext(mapping, secrets_for(zoho, mapping).__getitem__, {}, f"sqlite:///{data_dir}/queue.sqlite3")
    return from_context(ctx, settle_s=settle_s, clock=clock)


def stocked(zoho: FakeZoho, quantity: Any = 100) -> FakeZoho:
    for item_id in ITEMS.values():
        zoho.stock(item_id, WH, quantity)
        zoho.stock(item_id, WH2, quantity)
    return zoho
