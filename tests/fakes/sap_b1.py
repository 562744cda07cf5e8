"""A SAP Business One Service Layer double on 127.0.0.1 that behaves like the documented service
(vendor-apis.md §1): ``POST /b1s/v1/Login`` checks CompanyDB/UserName/Password (failure body
``100000027 Login failed``), answers ``SessionId``/``SessionTimeout`` and sets ``B1SESSION`` and
``ROUTEID``; every other call needs both cookies (a wrong or missing ROUTEID lands on a node that
does not know the session, as behind SL's load balancer) and a session not idle past its timeout,
else 401 with SL's invalid-session error. ``Items('X')`` with ``ItemWarehouseInfoCollection``;
``InventoryGenExits``/``InventoryGenEntries`` validated and stored (DocEntry increments; stock
moves); ``$filter=<UDF> eq '...'`` and ``$select`` on them; ``Logout``.
Faults: any status with headers/body, a hang, a commit-then-drop, a drop before processing, and
``down()``/``up()`` (connection refused, then back on the same port).
Leads, not confirmed in the sources: the invalid-session code 301 and its wording; error codes
-5002 / -10 / -1000 / -2028 and their wording.
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.served import Fault, Served, drop_connection, send_json

ROOT = "/b1s/v1"
DOCUMENTS = ("InventoryGenExits", "InventoryGenEntries")
DOCUMENT_KEYS = {"DocDate", "Comments", "DocumentLines", "Reference2", "JournalMemo"}
LINE_KEYS = {"ItemCode", "Quantity", "WarehouseCode", "UnitPrice", "AccountCode", "BatchNumbers",
             "SerialNumbers", "DocumentLinesBinAllocations"}
INVALID_SESSION = {"error": {"code": 301, "message": {"lang": "en-us", "value": "Invalid session or session already timeout."}}}
LOGIN_FAILED = {"error": {"code": 100000027, "message": {"lang": "en-us", "value": "Login failed"}}}
_FILTER = re.compile(r"^(\w+) eq '((?:[^']|'')*)'$")


def sap_error(code: int, value: str) -> dict:
    return {"error": {"code": code, "message": {"lang": "en-us", "value": value}}}


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    cookies: dict[str, str]
    body: Any
    status: int | None = None


class FakeServiceLayer(Served):
    def __init__(self, company: str = "SBODEMOUS", username: str = "manager", password: str = "secret",
                 session_timeout_min: int = 30, udfs: tuple[str, ...] = ("U_BridgeKey",),
                 clock: Callable[[], float] = time.monotonic):
        self.credentials = (company, username, password)
        self.session_timeout_min, self.udfs, self.clock = session_timeout_min, set(udfs), clock
        self.items: dict[str, dict[str, dict[str, Decimal]]] = {}
        self.documents: dict[str, list[dict]] = {name: [] for name in DOCUMENTS}
        self.sessions: dict[str, dict] = {}
        self.received: list[Received] = []
        self.faults: list[Fault] = []
        self.logins = self.logouts = 0
        self.cond = threading.Condition(threading.RLock())

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}{ROOT}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    # --- test controls --------------------------------------------------------------------------
    def stock(self, item: str, warehouse: str, in_stock: Any, committed: Any = 0, ordered: Any = 0) -> None:
        with self.cond:
            self.items.setdefault(item, {})[warehouse] = {
                "InStock": Decimal(str(in_stock)), "Committed": Decimal(str(committed)), "Ordered": Decimal(str(ordered))}

    def fail_next(self, *faults: Fault) -> None:
        with self.cond:
            self.faults.extend(faults)

    def expire_sessions(self) -> None:
        with self.cond:
            self.sessions.clear()

    def wait_for(self, predicate: Callable[[FakeServiceLayer], bool], timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout)

    def posted(self, entity: str | None = None) -> list[Received]:
        with self.cond:
            return [r for r in self.received if r.method == "POST" and r.path in ((entity,) if entity else DOCUMENTS)]

    def lines(self, entity: str | None = None) -> list[dict]:
        """Every stored document line, in the order SL created them."""
        with self.cond:
            docs = [d for name in ([entity] if entity else DOCUMENTS) for d in self.documents[name]]
            return [line for d in sorted(docs, key=lambda d: d["DocEntry"]) for line in d["DocumentLines"]]

    # --- the service ----------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, cookies: dict[str, str], body: Any) -> tuple[int, dict, Any, str | None]:
        """(status, headers, payload, drop) for one request."""
        parts = urlsplit(raw_path)
        path = unquote(parts.path)[len(ROOT) + 1:] if parts.path.startswith(ROOT + "/") else parts.path
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.cond:
            record = Received(method, path, query, cookies, body)
            self.received.append(record)
            fault = self._fault(path)
            if fault and fault.drop != "after_commit":
                result = (fault.status, fault.headers, fault.body, fault.drop)
            else:
                status, headers, payload = self._serve(method, path, query, cookies, body)
                result = (status, headers, payload, fault.drop if fault else None)
            record.status = None if result[3] else result[0]
            self.cond.notify_all()
        if fault and fault.hang_s:
            time.sleep(fault.hang_s)
        return result

    def _fault(self, path: str) -> Fault | None:
        for i, fault in enumerate(self.faults):
            if fault.path is None or fault.path in path:
                return self.faults.pop(i)
        return None

    def _serve(self, method: str, path: str, query: dict, cookies: dict, body: Any) -> tuple[int, dict, Any]:
        if (method, path) == ("POST", "Login"):
            return self._login(body)
        if not self._session_ok(cookies):
            return 401, {}, INVALID_SESSION
        if (method, path) == ("POST", "Logout"):
            self.sessions.pop(cookies["B1SESSION"], None)
            self.logouts += 1
            return 204, {}, None
        match = re.fullmatch(r"Items\('((?:[^']|'')*)'\)", path)
        if method == "GET" and match:
            return self._item(match.group(1).replace("''", "'"), query)
        if path in DOCUMENTS and method == "GET":
            return self._search(path, query)
        if path in DOCUMENTS and method == "POST":
            return self._create(path, body)
        return 404, {}, sap_error(-1, f"Resource not found for the segment '{path}'")

    def _login(self, body: Any) -> tuple[int, dict, Any]:
        given = tuple((body or {}).get(k) for k in ("CompanyDB", "UserName", "Password"))
        if given != self.credentials:
            return 401, {}, LOGIN_FAILED
        session_id, route = str(uuid.uuid4()), f".node{1 + len(self.sessions) % 2}"
        self.sessions[session_id] = {"route": route, "last_used": self.clock()}
        self.logins += 1
        cookies = [f"B1SESSION={session_id}; path={ROOT}; HttpOnly", f"ROUTEID={route}; path=/b1s"]
        return 200, {"Set-Cookie": cookies}, {
            "odata.metadata": f"https://localhost:50000{ROOT}/$metadata#B1Sessions/@Element",
            "SessionId": session_id, "Version": "1000190", "SessionTimeout": self.session_timeout_min}

    def _session_ok(self, cookies: dict) -> bool:
        session = self.sessions.get(cookies.get("B1SESSION", ""))
        if session is None or cookies.get("ROUTEID") != session["route"]:
            return False
        if self.clock() - session["last_used"] > self.session_timeout_min * 60:
            return False
        session["last_used"] = self.clock()
        return True

    def _item(self, code: str, query: dict) -> tuple[int, dict, Any]:
        if code not in self.items:
            return 404, {}, sap_error(-2028, "No matching records found (ODBC -2028)")
        rows = [{"WarehouseCode": wh, **{k: float(v) for k, v in q.items()}, "Locked": "tNO"}
                for wh, q in sorted(self.items[code].items())]
        item = {"ItemCode": code, "ItemName": code.title(), "ItemWarehouseInfoCollection": rows}
        return 200, {}, _select(item, query)

    def _search(self, entity: str, query: dict) -> tuple[int, dict, Any]:
        match = _FILTER.match(query.get("$filter", ""))
        if not match or match.group(1) not in self.udfs:
            return 400, {}, sap_error(-1000, "Invalid $filter for this fake: use <UDF> eq '<value>'")
        value = match.group(2).replace("''", "'")
        found = [d for d in self.documents[entity] if d.get(match.group(1)) == value]
        return 200, {}, {"value": [_select(d, query) for d in found]}

    def _create(self, entity: str, body: Any) -> tuple[int, dict, Any]:
        problem = self._invalid(body)
        if problem:
            return 400, {}, sap_error(*problem)
        sign = -1 if entity == "InventoryGenExits" else 1
        for n, line in enumerate(body["DocumentLines"], 1):
            level = self.items[line["ItemCode"]].setdefault(line["WarehouseCode"], {
                "InStock": Decimal(0), "Committed": Decimal(0), "Ordered": Decimal(0)})
            if level["InStock"] + sign * Decimal(str(line["Quantity"])) < 0:
                return 400, {}, sap_error(-10, f"Quantity falls into negative inventory [DocumentLines.ItemCode][line: {n}]")
        for line in body["DocumentLines"]:
            self.items[line["ItemCode"]][line["WarehouseCode"]]["InStock"] += sign * Decimal(str(line["Quantity"]))
        entry = 1 + sum(len(docs) for docs in self.documents.values())
        document = {"DocEntry": entry, "DocNum": entry, **body}
        self.documents[entity].append(document)
        return 201, {}, document

    def _invalid(self, body: Any) -> tuple[int, str] | None:
        if not isinstance(body, dict):
            return -1000, "Invalid JSON document"
        for key in body:
            if key not in DOCUMENT_KEYS and key not in self.udfs:
                return -1000, f"Property '{key}' of 'Document' is invalid"
        lines = body.get("DocumentLines")
        if not isinstance(lines, list) or not lines:
            return -5002, "Document has no lines [DocumentLines]"
        for n, line in enumerate(lines, 1):
            problem = self._invalid_line(line, n)
            if problem:
                return problem
        return None

    def _invalid_line(self, line: Any, n: int) -> tuple[int, str] | None:
        unknown = [k for k in line if k not in LINE_KEYS]
        if unknown:
            return -1000, f"Property '{unknown[0]}' of 'DocumentLine' is invalid"
        code, qty, wh = line.get("ItemCode"), line.get("Quantity"), line.get("WarehouseCode")
        if not isinstance(code, str) or not isinstance(wh, str) or isinstance(qty, bool) \
                or not isinstance(qty, (int, float, Decimal)) or qty <= 0:
            return -5002, f"ItemCode, Quantity (> 0) and WarehouseCode are required [DocumentLines][line: {n}]"
        if code not in self.items:
            return -5002, f"Item '{code}' not found [DocumentLines.ItemCode][line: {n}]"
        if not any(wh in levels for levels in self.items.values()):
            return -5002, f"Warehouse '{wh}' not found [DocumentLines.WarehouseCode][line: {n}]"
        return None


def _select(entity: dict, query: dict) -> dict:
    fields = [f for f in query.get("$select", "").split(",") if f]
    return {k: v for k, v in entity.items() if k in fields} if fields else entity


def _handler(sl: FakeServiceLayer):
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

        def _serve(self, method: str) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw, parse_float=Decimal) if raw else None
            except ValueError:
                return self._send(400, {}, sap_error(-1000, "Invalid JSON document"))
            cookies = {k: m.value for k, m in SimpleCookie(self.headers.get("Cookie", "")).items()}
            status, headers, payload, drop = sl.handle(method, self.path, cookies, body)
            if drop:
                return drop_connection(self)
            self._send(status, headers, payload)

        def _send(self, status: int, headers: dict, payload: Any) -> None:
            send_json(self, status, headers, payload, "application/json;odata=minimalmetadata;charset=utf-8")

        def log_message(self, *args):
            pass

    return Handler


# --- helpers the SAP B1 tests share -----------------------------------------------------------
MAPPING_FILE = __import__("pathlib").Path(__file__).resolve().parents[2] / "mappings" / "sap_b1.yaml"


def sap_mapping(url: str, *, role: str = "mirror", batch_size: int = 20, timeout_s: float = 2.0,
                location_roles: dict[str, str] | None = None):
    """The example mapping (mappings/sap_b1.yaml) pointed at ``url``: tests run what ships."""
    from erp_bridge.mapping.schema import SystemMapping
    from erp_bridge.yamlpos import load_yaml_file

    data = load_yaml_file(MAPPING_FILE).data
    data["connection"].update(base_url=url, timeout_s=timeout_s)
    data["role"], data["writes"]["batch_size"] = role, batch_size
    for entry in data["locations"]["map"]:
        entry["role"] = (location_roles or {}).get(entry["internal"], entry.get("role"))
        if entry["role"] is None:
            del entry["role"]
    return SystemMapping.model_validate(data)


def connector_for(sl: FakeServiceLayer, data_dir, *, mapping=None, settle_s: float = 0.0,
                  clock: Callable[[], float] = time.time, session_clock: Callable[[], float] = time.monotonic,
                  storage: str | None = None):
    """The connector as the registry builds it (same factory), on the fake, with test clocks;
    its ledger in ``storage`` (default: the SQLite queue file in ``data_dir``)."""
    from erp_bridge.connectors.runtime.context import ConnectorContext
    from erp_bridge.connectors.sap_b1 import from_context

    mapping = mapping or sap_mapping(sl.url)
    _, username, password = sl.credentials
    secrets = {mapping.connection.auth.secrets["username"]: username,
               mapping.connection.auth.secrets["password"]: password}
    storage = storage or f"sqlite:///{data_dir}/queue.sqlite3"
    ctx = ConnectorContext(mapping, secrets.__getitem__, {}, storage)
    return from_context(ctx, settle_s=settle_s, clock=clock, session_clock=session_clock)


def move(move_id: str, item: str = "chair-blue", quantity: Any = 1, direction: str = "out",
         location: str = "WH/Stock", uom: str | None = None):
    from erp_bridge.domain import StockMove

    other = "Partners/Customers" if direction == "out" else "Vendors"
    return StockMove(system="odoo", move_id=move_id, item=item, quantity=Decimal(str(quantity)), uom=uom,
                     from_location=location if direction == "out" else other,
                     to_location=other if direction == "out" else location, location=location,
                     direction=direction)
