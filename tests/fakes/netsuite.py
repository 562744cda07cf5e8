"""A NetSuite SuiteTalk SOAP double on 127.0.0.1 that behaves like the documented service
(vendor-apis.md §2a): every envelope's header and body are validated against the 2023_2 XSDs in
../shared/specs with lxml (what the schema refuses, the double refuses with a SOAP fault); the
TokenPassport is checked with an independent HMAC-SHA256 (standard library), a timestamp within
5 minutes and a nonce never seen before, else ``invalidCredentialsFault`` INVALID_LOGIN_ATTEMPT;
``upsertList`` upserts InventoryAdjustments by externalId (``replaceAll`` default true replaces the
lines, false appends them), answers one ``writeResponse`` per record with ``statusDetail``
INVALID_KEY_OR_REF for an unknown item or location, refuses more than ``max_records`` with
``exceededRecordCountFault``; ``search`` (ItemSearchAdvanced) and ``searchMoreWithId`` page
item x location rows; requests beyond ``concurrency`` in flight get
``exceededConcurrentRequestLimitFault`` WS_REQUEST_BLOCKED (TBA). Faults are HTTP 500.
Leads, not confirmed: the wording of messages and the 5-minute timestamp window.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from lxml import etree

SPECS = Path("../shared/specs/netsuite-wsdl-2023_2")
PATH = "/services/NetSuitePort_2023_2"
V = "2023_2"
NS = {"soap": "http://schemas.xmlsoap.org/soap/envelope/",
      "msgs": f"urn:messages_{V}.platform.webservices.netsuite.com",
      "core": f"urn:core_{V}.platform.webservices.netsuite.com",
      "common": f"urn:common_{V}.platform.webservices.netsuite.com",
      "acct": f"urn:accounting_{V}.lists.webservices.netsuite.com",
      "inv": f"urn:inventory_{V}.transactions.webservices.netsuite.com",
      "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
_SCHEMA: etree.XMLSchema | None = None
_SCHEMA_LOCK = threading.Lock()


def schema() -> etree.XMLSchema:
    """The messages, inventory transactions and item search XSDs as one lxml schema (built once)."""
    global _SCHEMA
    with _SCHEMA_LOCK:
        if _SCHEMA is None:
            xsd = SPECS.resolve() / "xsd"
            imports = "".join(f'<xsd:import namespace="{ns}" schemaLocation="{(xsd / f).as_uri()}"/>' for ns, f in (
                (NS["msgs"], "platform.messages.xsd"), (NS["inv"], "transactions.inventory.xsd"),
                (NS["acct"], "lists.accounting.xsd")))
            wrapper = (f'<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:bridge-test">'
                       f"{imports}</xsd:schema>")
            _SCHEMA = etree.XMLSchema(etree.fromstring(wrapper.encode(), base_url=(xsd / "x.xsd").as_uri()))
        return _SCHEMA


def validate_envelope(content: bytes) -> list[str]:
    """Schema errors of an envelope's header entries and body element (empty: valid)."""
    doc = etree.fromstring(content)
    if doc.tag != f"{{{NS['soap']}}}Envelope":
        return [f"not a SOAP 1.1 envelope: {doc.tag}"]
    body = doc.find("soap:Body", NS)
    header = doc.find("soap:Header", NS)
    parts = list(header if header is not None else []) + list(body if body is not None else [])
    errors = []
    for part in parts:
        checker = schema()
        if not checker.validate(etree.ElementTree(part)):
            errors += [f"{etree.QName(part).localname}: line {e.line}: {e.message}" for e in checker.error_log]
    return errors if body is not None and len(body) == 1 else errors + ["the Body must hold exactly one element"]


@dataclass
class Fault:
    """What the next request (of ``operation``, or any) gets instead of normal service."""

    status: int = 500
    body: str | None = None  # raw answer; None with fault_name: a SOAP fault
    fault_name: str | None = None
    code: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    operation: str | None = None
    #: "after_commit": process, then close the connection without answering
    drop: str | None = None


@dataclass
class Adjustment:
    internal_id: str
    external_id: str
    lines: list[tuple[str, str, Decimal]]


class FakeNetSuite:
    def __init__(self, account: str = "1234567_SB1", consumer_key: str = "ck" * 32, consumer_secret: str = "cs" * 32,
                 token_id: str = "ti" * 32, token_secret: str = "ts" * 32, *, concurrency: int = 5,
                 max_records: int = 100, clock: Callable[[], float] = time.time):
        self.creds = (account, consumer_key, consumer_secret, token_id, token_secret)
        self.concurrency, self.max_records, self.clock = concurrency, max_records, clock
        self.items: set[str] = set()
        self.locations: set[str] = set()
        self.stock: dict[tuple[str, str], list[Decimal]] = {}  # (item, location) -> [on hand, committed]
        self.adjustments: dict[str, Adjustment] = {}
        self.envelopes: list[bytes] = []
        self.operations: list[str] = []
        self.invalid: list[list[str]] = []
        self.faults: list[Fault] = []
        self.nonces: set[str] = set()
        self.searches: dict[str, list[tuple[str, str]]] = {}
        self.in_flight = self.peak = self.throttled = 0
        self.latency_s = 0.0  # how long a request holds its concurrency seat
        self.page_size = 1000
        self.cond = threading.Condition(threading.RLock())
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{PATH}"

    def __enter__(self) -> FakeNetSuite:
        schema()  # compiled once per process (seconds): not inside a client's timeout
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- test controls ---------------------------------------------------------------------------
    def put_stock(self, item: str, location: str, on_hand: Any, committed: Any = 0) -> None:
        with self.cond:
            self.items.add(item)
            self.locations.add(location)
            self.stock[(item, location)] = [Decimal(str(on_hand)), Decimal(str(committed))]

    def fail_next(self, *faults: Fault) -> None:
        with self.cond:
            self.faults.extend(faults)

    def on_hand(self, item: str, location: str) -> Decimal:
        with self.cond:
            return self.stock.get((item, location), [Decimal(0)])[0]

    # --- the service -----------------------------------------------------------------------------
    def handle(self, path: str, content: bytes) -> tuple[int, dict[str, str], str, str | None]:
        with self.cond:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            busy = self.in_flight > self.concurrency
            self.throttled += busy
        try:
            time.sleep(self.latency_s)
            if busy:
                return 500, {}, fault("exceededConcurrentRequestLimitFault", "WS_REQUEST_BLOCKED",
                                      "The request could not be processed: concurrent request limit exceeded."), None
            return self._handle(path, content)
        finally:
            with self.cond:
                self.in_flight -= 1
                self.cond.notify_all()

    def _handle(self, path: str, content: bytes) -> tuple[int, dict[str, str], str, str | None]:
        if path != PATH:
            return 404, {}, "<html>Not Found</html>", None
        try:
            doc = etree.fromstring(content)
        except etree.XMLSyntaxError as exc:
            return 500, {}, fault("", "", f"Invalid XML: {exc}", server=True), None
        op = etree.QName(doc.find("soap:Body", NS)[0]).localname if doc.find("soap:Body", NS) is not None else "?"
        with self.cond:
            errors = validate_envelope(content)  # one lxml schema object: not shared between threads at once
            self.envelopes.append(content)
            self.operations.append(op)
            if errors:
                self.invalid.append(errors)
                return 500, {}, fault("", "", "org.xml.sax.SAXException: " + errors[0], server=True), None
            scripted = next((f for f in self.faults if f.operation in (None, op)), None)
            if scripted is not None:
                self.faults.remove(scripted)
                if scripted.drop is None:
                    body = scripted.body
                    if body is None:
                        body = fault(scripted.fault_name or "", scripted.code, scripted.message)
                    return scripted.status, scripted.headers, body, None
            refused = self._passport(doc.find("soap:Header/msgs:tokenPassport", NS))
            if refused:
                return 500, {}, refused, None
            status, answer = 200, self._operation(op, doc)
            return status, {}, answer, scripted.drop if scripted else None

    def _passport(self, passport: etree._Element | None) -> str | None:
        invalid = fault("invalidCredentialsFault", "INVALID_LOGIN_ATTEMPT", "Invalid login attempt.")
        if passport is None:
            return fault("invalidSessionFault", "SESSION_TIMED_OUT", "A session has timed out. Please log in again.")
        get = {etree.QName(e).localname: (e.text or "") for e in passport}
        account, consumer_key, consumer_secret, token_id, token_secret = self.creds
        if (get["account"], get["consumerKey"], get["token"]) != (account, consumer_key, token_id):
            return invalid
        base = "&".join((get["account"], get["consumerKey"], get["token"], get["nonce"], get["timestamp"]))
        digest = hmac.new(f"{consumer_secret}&{token_secret}".encode(), base.encode(), hashlib.sha256).digest()
        algorithm = passport.find("core:signature", NS).get("algorithm")
        if algorithm != "HMAC-SHA256" or not hmac.compare_digest(base64.b64encode(digest).decode(), get["signature"]):
            return invalid
        if abs(self.clock() - int(get["timestamp"])) > 300 or get["nonce"] in self.nonces or len(get["nonce"]) < 6:
            return invalid
        self.nonces.add(get["nonce"])
        return None

    def _operation(self, op: str, doc: etree._Element) -> str:
        request = doc.find("soap:Body", NS)[0]
        if op == "upsertList":
            records = request.findall("msgs:record", NS)
            if len(records) > self.max_records:
                return fault("exceededRecordCountFault", "EXCEEDED_MAX_RECORDS",
                             f"The request exceeded the max. allowed records: {self.max_records}.")
            return envelope("upsertListResponse", "<writeResponseList>" + "".join(map(self._upsert, records))
                            + "</writeResponseList>")
        if op == "search":
            return self._search(request, doc)
        if op == "searchMoreWithId":
            search_id, index = (request.findtext(f"msgs:{n}", namespaces=NS) for n in ("searchId", "pageIndex"))
            return self._page(search_id, int(index), "searchMoreWithIdResponse")
        return fault("", "", f"operation {op} is not served by this double", server=True)

    def _upsert(self, record: etree._Element) -> str:
        external = record.get("externalId")
        kind = etree.QName(record.get(f"{{{NS['xsi']}}}type").split(":")[-1]).localname
        if kind != "InventoryAdjustment" or not external:
            return write_response(False, "", external or "", "INVALID_RCRD_TYPE" if external else "USER_ERROR",
                                  "Upsert needs an InventoryAdjustment with an externalId.")
        listing = record.find("inv:inventoryList", NS)
        lines = [(line.find("inv:item", NS).get("internalId"), line.find("inv:location", NS).get("internalId"),
                  Decimal(line.findtext("inv:adjustQtyBy", "0", NS))) for line in listing.findall("inv:inventory", NS)]
        for item, location, _ in lines:
            if item not in self.items or location not in self.locations:
                bad = ("item", item) if item not in self.items else ("location", location)
                return write_response(False, "", external, "INVALID_KEY_OR_REF",
                                      f"Invalid {bad[0]} reference key {bad[1]}.")
        existing = self.adjustments.get(external)
        if existing is not None:
            self._apply(existing.lines, -1)
            if listing.get("replaceAll", "true") == "false":
                lines = existing.lines + lines
        internal_id = existing.internal_id if existing else str(1000 + len(self.adjustments))
        adjustment = Adjustment(internal_id, external, lines)
        self.adjustments[external] = adjustment
        self._apply(lines, 1)
        return write_response(True, adjustment.internal_id, external)

    def _apply(self, lines: list[tuple[str, str, Decimal]], sign: int) -> None:
        for item, location, quantity in lines:
            self.stock.setdefault((item, location), [Decimal(0), Decimal(0)])[0] += sign * quantity

    def _search(self, request: etree._Element, doc: etree._Element) -> str:
        basic = request.find("msgs:searchRecord/acct:criteria/acct:basic", NS)
        wanted = {name: {ref.get("internalId") for ref in basic.findall(f"common:{name}/core:searchValue", NS)}
                  for name in ("internalId", "inventoryLocation")}
        rows = sorted(k for k in self.stock if k[0] in wanted["internalId"] and k[1] in wanted["inventoryLocation"])
        search_id = f"WEBSERVICES_{uuid.uuid4().hex[:12]}"
        size = int(doc.findtext("soap:Header/msgs:searchPreferences/msgs:pageSize", "1000", NS))
        self.searches[search_id] = rows
        self.page_size = max(5, min(size, 1000))
        return self._page(search_id, 1, "searchResponse")

    def _page(self, search_id: str, index: int, response: str) -> str:
        rows = self.searches.get(search_id, [])
        size = self.page_size
        pages = max(1, -(-len(rows) // size))
        chunk = rows[(index - 1) * size:index * size]
        body = "".join(search_row(item, loc, *self.stock[(item, loc)]) for item, loc in chunk)
        fields = "".join(f"<platformCore:{k}>{v}</platformCore:{k}>" for k, v in (
            ("totalRecords", len(rows)), ("pageSize", size), ("totalPages", pages), ("pageIndex", index),
            ("searchId", search_id), ("searchRowList", body)))
        return envelope(response, f'<platformCore:searchResult xmlns:platformCore="{NS["core"]}">'
                        f'<platformCore:status isSuccess="true"/>{fields}</platformCore:searchResult>')


def envelope(response: str, inner: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{NS["soap"]}" '
            f'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="{NS["xsi"]}"><soapenv:Header>'
            f'<platformMsgs:documentInfo xmlns:platformMsgs="{NS["msgs"]}"><platformMsgs:nsId>WEBSERVICES_TEST'
            f'</platformMsgs:nsId></platformMsgs:documentInfo></soapenv:Header><soapenv:Body>'
            f'<{response} xmlns="{NS["msgs"]}">{inner}</{response}></soapenv:Body></soapenv:Envelope>')


def write_response(ok: bool, internal_id: str, external: str, code: str = "", message: str = "") -> str:
    core = f'xmlns:platformCore="{NS["core"]}"'
    if ok:
        return (f'<writeResponse><platformCore:status isSuccess="true" {core}/><baseRef internalId="{internal_id}" '
                f'externalId="{external}" type="inventoryAdjustment" xsi:type="platformCore:RecordRef" {core}/>'
                "</writeResponse>")
    return (f'<writeResponse><platformCore:status isSuccess="false" {core}><platformCore:statusDetail type="ERROR">'
            f"<platformCore:code>{code}</platformCore:code>"
            f"<platformCore:message>{xml_escape(message)}</platformCore:message>"
            f"</platformCore:statusDetail></platformCore:status></writeResponse>")


def search_row(item: str, location: str, on_hand: Decimal, committed: Decimal) -> str:
    def column(name: str, value: str) -> str:
        return f"<platformCommon:{name}><platformCore:searchValue{value}</platformCommon:{name}>"
    return (f'<platformCore:searchRow xsi:type="listAcct:ItemSearchRow" xmlns:listAcct="{NS["acct"]}">'
            f'<listAcct:basic xmlns:platformCommon="{NS["common"]}">'
            + column("internalId", f' internalId="{item}"/>')
            + column("inventoryLocation", f' internalId="{location}"/>')
            + column("locationQuantityAvailable", f">{on_hand - committed}</platformCore:searchValue>")
            + column("locationQuantityOnHand", f">{on_hand}</platformCore:searchValue>")
            + "</listAcct:basic></platformCore:searchRow>")


def fault(name: str, code: str, message: str, server: bool = False) -> str:
    detail = ""
    if name:
        namespace = f"urn:faults_{V}.platform.webservices.netsuite.com"
        detail = (f'<detail><platformFaults:{name} xmlns:platformFaults="{namespace}">'
                  f"<platformFaults:code>{code}</platformFaults:code><platformFaults:message>{xml_escape(message)}"
                  f"</platformFaults:message></platformFaults:{name}>"
                  '<ns1:hostname xmlns:ns1="http://xml.apache.org/axis/">'
                  "partners-java001</ns1:hostname></detail>")
    kind = "soapenv:Server" if server else "soapenv:Server.userException"
    return (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{NS["soap"]}"><soapenv:Body>'
            f"<soapenv:Fault><faultcode>{kind}</faultcode><faultstring>{xml_escape(message)}</faultstring>{detail}"
            "</soapenv:Fault></soapenv:Body></soapenv:Envelope>")


def _handler(service: FakeNetSuite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            content = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, body, drop = service.handle(self.path, content)
            if drop:
                self.close_connection = True
                self.connection.close()
                return
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml; charset=utf-8" if body.startswith("<?xml") else "text/html")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass
    return Handler


MAPPING_FILE = Path(__file__).resolve().parents[2] / "mappings" / "netsuite.yaml"


def netsuite_mapping(url: str, *, role: str = "mirror", timeout_s: float = 2.0, extra_body: dict | None = None,
                     **changes: Any):
    """The example mapping (mappings/netsuite.yaml) pointed at ``url`` and the WSDL in ../shared/specs."""
    from erp_bridge.mapping.schema import SystemMapping
    from erp_bridge.yamlpos import load_yaml_file

    data = load_yaml_file(MAPPING_FILE).data
    data["connection"].update(base_url=url, timeout_s=timeout_s, wsdl=str(SPECS / "netsuite.wsdl"))
    data["role"] = role
    data["requests"]["adjustment"]["body"].update(extra_body or {})
    data.update(changes)
    return SystemMapping.model_validate(data)


def connector_for(fake: FakeNetSuite, data_dir: Path, *, mapping: Any = None):
    """The connector as the registry builds it (same factory), on the fake."""
    from erp_bridge.connectors.netsuite import from_context
    from erp_bridge.connectors.runtime.context import ConnectorContext

    mapping = mapping or netsuite_mapping(fake.url)
    names = mapping.connection.auth.secrets
    values = dict(zip(("account", "consumer_key", "consumer_secret", "token_id", "token_secret"), fake.creds))
    secrets = {names[role]: value for role, value in values.items()}
    return from_context(ConnectorContext(mapping, secrets.__getitem__, {}, f"sqlite:///{data_dir}/queue.sqlite3"))


def move(move_id: str, item: str = "chair-blue", quantity: Any = 1, direction: str = "out", location: str = "WH/Stock"):
    from erp_bridge.domain import StockMove

    other = "Partners/Customers" if direction == "out" else "Vendors"
    return StockMove(system="odoo", move_id=move_id, item=item, quantity=Decimal(str(quantity)),
                     from_location=location if direction == "out" else other,
                     to_location=other if direction == "out" else location, location=location, direction=direction)


def seed_wsdl_cache(cache_dir: Path, wsdl_url: str) -> None:
    """Put the 2023_2 WSDL and XSDs of ../shared/specs into the connector's disk cache under the
    account's URLs, as a first start would have fetched them (a cassette of the download)."""
    from zeep.cache import SqliteCache

    cache_dir.mkdir(parents=True, exist_ok=True)
    cache = SqliteCache(path=str(cache_dir / "netsuite-wsdl.sqlite3"), timeout=None)
    base = wsdl_url.rsplit("/", 1)[0]
    cache.add(wsdl_url, (SPECS / "netsuite.wsdl").read_bytes())
    for xsd in sorted((SPECS / "xsd").glob("*.xsd")):
        cache.add(f"{base}/xsd/{xsd.name}", xsd.read_bytes())
