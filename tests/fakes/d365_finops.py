"""A Dynamics 365 Finance & Operations OData double (``/data``) on 127.0.0.1, behaving as documented
(../shared/specs/dynamics365/odata.md, service-protection-*.md, the CDM entity definitions):

- every call needs a bearer token the Azure AD double issued for ``<origin>/.default`` and that has
  not expired, else 401 with ``WWW-Authenticate: Bearer error="invalid_token"``;
- ``POST /data/$batch`` (multipart/mixed, parsed with the standard library's MIME parser): each
  changeset is ONE transaction; a later request may address an entity created earlier through its
  Content-ID (``$1/InventoryMovementJournalLine``); the first failing request rolls the whole
  changeset back and is its only response (the outer answer stays 200);
- entities: ``InventoryMovementJournalHeaders`` (JournalNumber from a number sequence; Description at
  most 60 characters) and their lines; every property checked against the CDM attributes of
  ``InventInventoryMovementJournalHeaderEntity`` / ``...EntryV3Entity`` (plus ``dataAreaId``), items,
  journal names, sites and warehouses checked as F&O would; ``WarehousesOnHandV2`` reads with
  ``$filter`` (``eq`` joined by ``and``), ``$select`` (checked against the CDM), paging by
  ``@odata.nextLink``;
- journals are created unposted: on-hand changes when ``post_journals()`` runs (as F&O's posting
  would); an issue line of a header with ``ReservationMode: Automatic`` reserves on-hand at once;
- faults from ``Served.fail_next`` (429 + Retry-After, 5xx, hang, commit-then-drop).
Errors use F&O's envelope ``{"error": {"code", "message", "innererror": {"message", "type"}}}``.
Leads, not confirmed by the sources here: the wording of F&O's validation messages.
"""
from __future__ import annotations

import copy
import email.parser
import email.policy
import json
import re
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .azure_ad import FakeAzureAd
from .http_server import Answer, Served

SPECS = Path(__file__).resolve().parents[2] / ".." / "shared" / "specs" / "dynamics365"
HEADERS, ONHAND, NAVIGATION = "InventoryMovementJournalHeaders", "WarehousesOnHandV2", "InventoryMovementJournalLine"
READ_ONLY_HEADER = {"JournalNumber", "IsPosted", "PostedDateTime", "PostedUserId"}
_FILTER = re.compile(r"(\w+) eq '((?:[^']|'')*)'")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def cdm_attributes(entity: str) -> set[str]:
    """The attribute names of a CDM entity definition in ../shared/specs/dynamics365."""
    doc = json.loads((SPECS / f"{entity}.cdm.json").read_text())
    attrs = doc["definitions"][0]["hasAttributes"]
    return {a["name"] for a in attrs if isinstance(a, dict) and "name" in a and "_" not in a["name"]}


HEADER_FIELDS = cdm_attributes("InventInventoryMovementJournalHeaderEntity") | {"dataAreaId"}
LINE_FIELDS = cdm_attributes("InventInventoryMovementJournalEntryV3Entity") | {"dataAreaId"}
ONHAND_FIELDS = cdm_attributes("InventWarehouseOnHandV2Entity") | {"dataAreaId"}


class Refused(Exception):
    def __init__(self, status: int, message: str, inner: str | None = None):
        super().__init__(message)
        self.status, self.message, self.inner = status, message, inner


@dataclass
class State:
    #: (item, site, warehouse) -> [on hand, reserved]
    stock: dict[tuple[str, str, str], list[Decimal]] = field(default_factory=dict)
    journals: list[dict] = field(default_factory=list)
    sequence: int = 0


class FakeFinOps:
    def __init__(self, aad: FakeAzureAd, company: str = "usmf", journal_names: tuple[str, ...] = ("IMov",),
                 warehouses: dict[str, str] | None = None, page_size: int = 10000):
        self.aad, self.company, self.journal_names = aad, company, set(journal_names)
        self.warehouses = warehouses or {"11": "1", "21": "2"}  # warehouse -> its site
        self.page_size = page_size
        self.items: set[str] = set()
        self.state = State()
        self.received: list[tuple[str, str, Any]] = []  # (method, path with query, parsed body)
        self.batches: list[tuple[str, bytes]] = []  # (Content-Type, raw body) of every $batch
        self.lock = threading.RLock()
        self.served = Served(self)

    # --- lifecycle and test controls ------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.served.origin}/data"

    @property
    def scope(self) -> str:
        return f"{self.served.origin}/.default"

    def __enter__(self) -> FakeFinOps:
        self.served.up()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.served.down()

    def stock(self, item: str, warehouse: str, on_hand: Any) -> None:
        with self.lock:
            self.items.add(item)
            self.state.stock[(item, self.warehouses[warehouse], warehouse)] = [Decimal(str(on_hand)), Decimal(0)]

    def journals(self) -> list[dict]:
        with self.lock:
            return copy.deepcopy(self.state.journals)

    def lines(self) -> list[dict]:
        return [line for journal in self.journals() for line in journal["lines"]]

    def post_journals(self) -> None:
        """F&O posting: on-hand moves by each line; the reservations of the journal are released."""
        with self.lock:
            for journal in (j for j in self.state.journals if j["header"]["IsPosted"] == "No"):
                for line in journal["lines"]:
                    level = self._level(line)
                    level[0] += Decimal(str(line["InventoryQuantity"]))
                    level[1] -= line.pop("_reserved", Decimal(0))
                journal["header"]["IsPosted"] = "Yes"

    # --- the service ------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        if not self.aad.valid(token, self.scope):
            return 401, {"WWW-Authenticate": 'Bearer error="invalid_token", error_description="The access token '
                                              'is missing or expired"'}, b""
        parts = urlsplit(path)
        route, query = unquote(parts.path), {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            if method == "POST" and route == "/data/$batch":
                self.batches.append((headers.get("Content-Type", ""), body))
                return self._batch(headers.get("Content-Type", ""), body)
            self.received.append((method, path, None))
            try:
                return _json(200, self._get(route, query)) if method == "GET" else _error(Refused(405, "not allowed"))
            except Refused as exc:
                return _error(exc)

    def _get(self, route: str, query: dict) -> dict:
        select = [f for f in query.get("$select", "").split(",") if f]
        filters = {k: v.replace("''", "'") for k, v in _FILTER.findall(query.get("$filter", ""))}
        if route == f"/data/{HEADERS}":
            rows = [{k: v for k, v in j["header"].items()} for j in self.state.journals]
            return _listing(_where(rows, filters, HEADER_FIELDS, select), query, self.url, HEADERS, self.page_size)
        if route == f"/data/{ONHAND}":
            return _listing(_where(self._onhand_rows(), filters, ONHAND_FIELDS, select), query, self.url, ONHAND,
                            self.page_size)
        raise Refused(404, f"Resource not found for the segment '{route.rsplit('/', 1)[-1]}'.")

    def _onhand_rows(self) -> list[dict]:
        rows = []
        for (item, site, warehouse), (on_hand, reserved) in sorted(self.state.stock.items()):
            rows.append({"dataAreaId": self.company, "ItemNumber": item, "InventorySiteId": site,
                         "InventoryWarehouseId": warehouse, "OnHandQuantity": on_hand,
                         "ReservedOnHandQuantity": reserved, "AvailableOnHandQuantity": on_hand - reserved,
                         "OrderedQuantity": Decimal(0), "TotalAvailableQuantity": on_hand - reserved})
        return rows

    # --- $batch ---------------------------------------------------------------------------------
    def _batch(self, content_type: str, body: bytes) -> Answer:
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        if not message.is_multipart():
            return _error(Refused(400, "The batch request must have a \"Content-Type\" header of multipart/mixed."))
        responses = []
        for part in message.get_payload():
            if part.get_content_type() != "multipart/mixed":
                return _error(Refused(400, "only changesets are supported by this double"))
            responses.append(self._changeset(list(part.get_payload())))
        return _batch_response(responses)

    def _changeset(self, parts: list) -> list[tuple[str, int, Any]]:
        saved = copy.deepcopy(self.state)
        created: dict[str, dict] = {}
        answers = []
        for part in parts:
            content_id = part.get("Content-ID", "")
            try:
                method, url, payload = _request(part.get_payload(decode=True) or b"")
                self.received.append((method, url, payload))
                answers.append((content_id, 201, self._create(url, payload, created, content_id)))
            except Refused as exc:
                self.state = saved  # atomic: nothing of the changeset stays
                return [(content_id, exc.status, _envelope(exc))]
        return answers

    def _create(self, url: str, payload: Any, created: dict[str, dict], content_id: str) -> dict:
        if not isinstance(payload, dict):
            raise Refused(400, "The request body is not a JSON object.")
        target = urlsplit(url).path
        if target == f"/data/{HEADERS}":
            created[content_id] = self._header(payload)
            return created[content_id]["header"]
        match = re.fullmatch(r"\$(\w+)/(\w+)", url)
        if match and match.group(1) in created and match.group(2) == NAVIGATION:
            return self._line(created[match.group(1)], payload)
        raise Refused(404, f"Resource not found for the segment '{url}'.")

    def _header(self, payload: dict) -> dict:
        _known(payload, HEADER_FIELDS - READ_ONLY_HEADER, "InventoryMovementJournalHeader")
        self._company(payload)
        if payload.get("JournalNameId") not in self.journal_names:
            raise Refused(400, "An error has occurred.", f"Write failed for table row of type 'InventJournalTable'. "
                          f"Infolog: Error: Journal name {payload.get('JournalNameId')} does not exist.")
        if len(str(payload.get("Description") or "")) > 60:
            raise Refused(400, "An error has occurred.", "Write failed for table row of type 'InventJournalTable'. "
                          "Infolog: Error: The value of field Description is longer than 60 characters.")
        self.state.sequence += 1
        header = {**payload, "JournalNumber": f"IMV-{self.state.sequence:06d}", "IsPosted": "No"}
        journal = {"header": header, "lines": []}
        self.state.journals.append(journal)
        return journal

    def _line(self, journal: dict, payload: dict) -> dict:
        _known(payload, LINE_FIELDS, "InventoryMovementJournalEntryV2")
        self._company(payload)
        problem = self._invalid_line(payload)
        if problem:
            raise Refused(400, "An error has occurred.",
                          f"Write failed for table row of type 'InventJournalTrans'. Infolog: Error: {problem}")
        line = {**payload, "JournalNumber": journal["header"]["JournalNumber"],
                "LineNumber": len(journal["lines"]) + 1}
        quantity = Decimal(str(payload["InventoryQuantity"]))
        if quantity < 0 and journal["header"].get("ReservationMode") == "Automatic":
            level = self._level(line)
            line["_reserved"] = min(-quantity, max(level[0] - level[1], Decimal(0)))
            level[1] += line["_reserved"]
        journal["lines"].append(line)
        return {k: v for k, v in line.items() if not k.startswith("_")}

    def _invalid_line(self, line: dict) -> str | None:
        item, warehouse, site = line.get("ItemNumber"), line.get("InventoryWarehouseId"), line.get("InventorySiteId")
        quantity = line.get("InventoryQuantity")
        if item not in self.items:
            return f"Item number {item} does not exist."
        if warehouse not in self.warehouses or self.warehouses[warehouse] != site:
            return f"Warehouse {warehouse} is not a warehouse of site {site}."
        if isinstance(quantity, bool) or not isinstance(quantity, (int, Decimal)) or quantity == 0:
            return "Quantity must be a number other than 0."
        if not _DATETIME.match(str(line.get("TransactionDate", ""))):
            return (f"Cannot convert the literal '{line.get('TransactionDate')}' to the expected type "
                    "'Edm.DateTimeOffset'.")
        return None

    def _company(self, payload: dict) -> None:
        if str(payload.get("dataAreaId", self.company)).lower() != self.company:
            raise Refused(400, "An error has occurred.", f"Company {payload.get('dataAreaId')} does not exist.")

    def _level(self, line: dict) -> list[Decimal]:
        key = (line["ItemNumber"], line["InventorySiteId"], line["InventoryWarehouseId"])
        return self.state.stock.setdefault(key, [Decimal(0), Decimal(0)])


# --- wire helpers ----------------------------------------------------------------------------------
def _request(payload: bytes) -> tuple[str, str, Any]:
    head, _, rest = payload.partition(b"\n")
    method, url, _version = head.decode().split()
    inner = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(rest)
    text = inner.get_payload(decode=True) or b""
    try:
        return method, url, json.loads(text, parse_float=Decimal) if text.strip() else None
    except ValueError:
        raise Refused(400, "The request body is not valid JSON.") from None


def _known(payload: dict, allowed: set[str], type_name: str) -> None:
    for key in payload:
        if key not in allowed:
            raise Refused(400, f"The property '{key}' does not exist on type 'Microsoft.Dynamics.DataEntities."
                               f"{type_name}'. Make sure to only use property names that are defined by the type.")


def _where(rows: list[dict], filters: dict, fields: set[str], select: list[str]) -> list[dict]:
    for name in [*filters, *select]:
        if name not in fields:
            raise Refused(400, f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.DataEntities'.")
    found = [r for r in rows if all(str(r.get(k, "")).lower() == v.lower() if k == "dataAreaId" else
                                    str(r.get(k, "")) == v for k, v in filters.items())]
    return [{k: r[k] for k in select if k in r} if select else r for r in found]


def _listing(rows: list[dict], query: dict, base: str, entity: str, size: int) -> dict:
    skip = int(query.get("$skiptoken", "0") or 0)
    page = {"value": rows[skip:skip + size]}
    if skip + size < len(rows):
        rest = "&".join(f"{k}={v}" for k, v in query.items() if k != "$skiptoken")
        page["@odata.nextLink"] = f"{base}/{entity}?{rest}&$skiptoken={skip + size}"
    return page


def _envelope(exc: Refused) -> dict:
    error: dict[str, Any] = {"code": "", "message": exc.message}
    if exc.inner:
        error["innererror"] = {"message": exc.inner, "type": "Microsoft.Dynamics.Platform.Integration.Services."
                                                             "OData.AxODataWriteException", "stacktrace": "   at ..."}
    return {"error": error}


def _error(exc: Refused) -> Answer:
    return exc.status, {"Content-Type": "application/json; odata.metadata=minimal"}, json.dumps(_envelope(exc)).encode()


def _json(status: int, payload: Any) -> Answer:
    data = json.dumps(payload, default=_number).encode()
    return status, {"Content-Type": "application/json; odata.metadata=minimal"}, data


def _batch_response(changesets: list[list[tuple[str, int, Any]]]) -> Answer:
    outer = "batchresponse_9f3c"
    lines = []
    for n, answers in enumerate(changesets):
        inner = f"changesetresponse_{n}"
        lines += [f"--{outer}", f"Content-Type: multipart/mixed; boundary={inner}", ""]
        for content_id, status, payload in answers:
            reason = {201: "Created", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
            lines += [f"--{inner}", "Content-Type: application/http", "Content-Transfer-Encoding: binary",
                      f"Content-ID: {content_id}", "", f"HTTP/1.1 {status} {reason}",
                      "Content-Type: application/json; odata.metadata=minimal; charset=utf-8", "",
                      json.dumps(payload, default=_number)]
        lines.append(f"--{inner}--")
    lines += [f"--{outer}--", ""]
    return 200, {"Content-Type": f"multipart/mixed; boundary={outer}"}, "\r\n".join(lines).encode()


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(type(value).__name__)


# --- helpers the Dynamics 365 tests share ----------------------------------------------------------
MAPPING_FILE = Path(__file__).resolve().parents[2] / "mappings" / "dynamics365.yaml"
CLIENT = ("bridge-app", "app-secret-123")


def fo_mapping(fo: FakeFinOps, *, role: str = "mirror", batch_size: int = 20, timeout_s: float = 2.0,
               location_roles: dict[str, str] | None = None):
    """The example mapping (mappings/dynamics365.yaml) pointed at the doubles: tests run what ships."""
    from erp_bridge.mapping.schema import SystemMapping
    from erp_bridge.yamlpos import load_yaml_file

    data = load_yaml_file(MAPPING_FILE).data
    data["connection"].update(base_url=fo.url, timeout_s=timeout_s)
    data["connection"]["auth"].update(authority=fo.aad.authority, scope=fo.scope)
    data["role"], data["writes"]["batch_size"] = role, batch_size
    for entry in data["locations"]["map"]:
        if (location_roles or {}).get(entry["internal"]):
            entry["role"] = location_roles[entry["internal"]]
    return SystemMapping.model_validate(data)


def fo_connector(fo: FakeFinOps, data_dir: Path, *, mapping: Any = None, settle_s: float = 0.0, clock: Any = None):
    """The connector as the registry builds it (same factory), on the doubles."""
    import time

    from erp_bridge.connectors.dynamics365.finops import from_context
    from erp_bridge.connectors.runtime.context import ConnectorContext

    mapping = mapping or fo_mapping(fo)
    names = mapping.connection.auth.secrets
    secrets = {names["client_id"]: CLIENT[0], names["client_secret"]: CLIENT[1]}
    ctx = ConnectorContext(mapping, secrets.__getitem__, {}, f"sqlite:///{data_dir}/queue.sqlite3")
    return from_context(ctx, settle_s=settle_s, clock=clock or time.time)
