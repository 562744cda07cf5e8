"""Dynamics 365 Supply Chain Management (Finance & Operations OData, ``/data``) as a mirror (the
system of record's moves become inventory movement journals) and a system of record (on-hand per
item and warehouse from ``WarehousesOnHandV2``; channel sales become journals too).

What is F&O's own, and all that is here (docs/connectors/dynamics365.md):
- a journal is a header plus lines, and F&O numbers the header itself: both go in ONE ``$batch``
  changeset (odata_batch.py), the lines addressed to the new header through its Content-ID
  (``$1/InventoryMovementJournalLine``), so a journal is created whole or not at all;
- exactly once without an idempotency key: the runtime's ledger plus the header's ``Description``,
  which carries the document key; a lost answer is settled by ``$filter`` on it;
- the company (``dataAreaId``) is ``connection.database``; every read names it (cross-company);
- the outer ``$batch`` answer is 200 even when the changeset failed: the inner response decides,
  classified by the runtime like any other answer (``writes.on_status``, ``Retry-After``).
Azure AD tokens (msal), 429 + ``Retry-After``, timeouts and redaction are the runtime's.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal

import requests
from requests.structures import CaseInsensitiveDict

from ...domain import Availability, Count, Decrement, Increment, Result, StockMove
from ...errors import BridgeError, ConfigError, RejectedError, RetryableError
from ...mapping.binder import Binder
from ...mapping.compile import compiled
from ...mapping.engine import build_requests
from ...mapping.lookups import LookupTable
from ...mapping.nodes import Node
from ...mapping.schema import SystemMapping
from ...mapping.wire import HttpRequest
from ..base import Capability
from ..runtime.classify import classify_response, vendor_decimal
from ..runtime.context import ConnectorContext
from ..runtime.documents import DocumentTarget, DocumentWriter, entity_of, reference_field
from ..runtime.ledger import Intent, Ledger, document_key
from ..runtime.paginate import NextLink
from ..runtime.sender import Reply, Sender
from . import odata_batch
from .errors import d365_message

#: InventJournalTable.Description (extended data type Description) holds 60 characters
REFERENCE_MAX = 60
ONHAND_ENTITY = "WarehousesOnHandV2"
QUANTITIES = ("OnHandQuantity", "ReservedOnHandQuantity", "AvailableOnHandQuantity", "TotalAvailableQuantity")
ONHAND_SELECT = ",".join(("ItemNumber", "InventorySiteId", "InventoryWarehouseId", *QUANTITIES))
CAPABILITIES = {"mirror": {Capability.POST_MOVES, Capability.AUDIT_DOCUMENTS},
                "system_of_record": {Capability.READ_AVAILABILITY, Capability.APPLY_STOCK_CHANGES,
                                     Capability.AUDIT_DOCUMENTS}}
Totals = dict[tuple[str, str], dict[str, Decimal]]
Lookups = Mapping[str, LookupTable] | None
WriteEvent = StockMove | Decrement | Increment


class FinOpsConnector:
    def __init__(self, mapping: SystemMapping, sender: Sender, ledger: Ledger, lookups: Lookups = None, *,
                 settle_s: float | None = None, clock: Callable[[], float] = time.time):
        self.name, self.mapping, self.sender, self.ledger = mapping.system, mapping, sender, ledger
        self.base_url = str(mapping.connection.base_url)
        self.company = company(mapping)
        self.capabilities = frozenset(c for role in mapping.roles for c in CAPABILITIES.get(role, ()))
        self._binder = Binder(mapping, (lookups or {}).get(mapping.system))
        self._lines = line_keys(mapping)
        settle = settle_s if settle_s is not None else 3 * sender.timeout[1]
        target = DocumentTarget.searched(self._find_all, _journal_number, post=self._post)
        self._documents = DocumentWriter(mapping, lookups, sender, ledger, target, settle_s=settle, clock=clock)
        self.reference_field = self._documents.reference_field

    # --- writes: mirror moves and channel sales, one journal per document -----------------------
    def post_moves(self, moves: Sequence[StockMove]) -> list[Result]:
        return self._documents.write(moves)

    def apply_stock_changes(self, changes: Sequence[Decrement | Increment | Count]) -> list[Result]:
        counts = {id(c) for c in changes if isinstance(c, Count)}
        written = iter(self._documents.write([c for c in changes if id(c) not in counts]))
        refused = RejectedError(f"{self.name} takes decrements and increments (movement journals), not counts")
        return [refused if id(c) in counts else next(written) for c in changes]

    def _post(self, request: HttpRequest, body: dict) -> Reply | BridgeError:
        batch = journal_batch(request, body, self._lines[request.name], self.reference_field)
        entity = entity_of(request.url)
        reply = self.sender.call("POST", f"{self.base_url}/$batch", body=batch.body, what=f"POST $batch {entity}",
                                 headers={"Content-Type": batch.content_type, "Accept": "multipart/mixed"})
        return reply if isinstance(reply, BridgeError) else self._outcome(reply, f"POST $batch {entity}")

    def _outcome(self, reply: Reply, what: str) -> Reply | BridgeError:
        content_type = next((v for k, v in reply.headers.items() if k.lower() == "content-type"), "")
        try:
            inner = odata_batch.parse(content_type, reply.text)
        except ValueError as exc:  # unknown whether it was applied: the intent stays and is searched
            return RetryableError(f"{what}: unreadable answer ({exc})")
        failed = next((r for r in inner if r.status >= 300), None)
        if failed is not None:
            outcome = classify_response(_as_response(failed), what, self.sender.on_status, self.sender.redact,
                                        d365_message)
            if isinstance(outcome, BridgeError):
                return outcome
            return Reply(failed.status, failed.json(), failed.headers, outcome.detail)  # on_status: ignore
        if not inner:
            return RetryableError(f"{what}: the answer holds no response for the changeset")
        return Reply(inner[0].status, inner[0].json(), inner[0].headers)

    # --- settling a lost answer -----------------------------------------------------------------
    def audit_documents(self, since: float, limit: int) -> list[tuple[Intent, list[str]]]:
        return self._documents.audit(since, limit)

    def _find_all(self, intent: Intent) -> list[str]:
        """The JournalNumber of every journal whose reference field carries ``intent``'s key."""
        reference = fit(intent.document_key).replace("'", "''")
        params = {"$filter": f"dataAreaId eq '{self.company}' and {self.reference_field} eq '{reference}'",
                  "$select": f"JournalNumber,{self.reference_field}", "cross-company": "true"}
        reply = self.sender.call("GET", f"{self.base_url}/{intent.kind}", params=params,
                                 what=f"GET {intent.kind} (search)")
        if isinstance(reply, BridgeError):
            raise reply
        return [str(row.get("JournalNumber") or "?") for row in (reply.body or {}).get("value") or []]

    # --- system of record: reads ----------------------------------------------------------------
    def read_availability(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Availability]:
        """Per (SKU, location) from WarehousesOnHandV2, rows of one warehouse summed: on_hand =
        OnHandQuantity, reserved = ReservedOnHandQuantity, free = AvailableOnHandQuantity, forecast
        = TotalAvailableQuantity, in internal units. Unknown items and locations are absent."""
        by_code = self._binder.by_item_code(keys)
        result = {}
        for code, wanted in by_code.items():
            totals = self._on_hand(code)
            for sku, location in wanted:
                figure = self._figure(sku, location, totals)
                if figure is not None:
                    result[(sku, location)] = figure
        return result

    def _on_hand(self, code: str) -> Totals:
        literal = code.replace("'", "''")
        params = {"$filter": f"dataAreaId eq '{self.company}' and ItemNumber eq '{literal}'",
                  "$select": ONHAND_SELECT, "cross-company": "true"}
        totals: Totals = {}
        pages = self.sender.pages("GET", f"{self.base_url}/{ONHAND_ENTITY}", NextLink(base_url=self.base_url),
                                  what=f"GET {ONHAND_ENTITY}", params=params)
        for page in pages:
            for row in (page.body or {}).get("value") or []:
                key = (str(row.get("InventorySiteId") or ""), str(row.get("InventoryWarehouseId") or ""))
                sums = totals.setdefault(key, dict.fromkeys(QUANTITIES, Decimal(0)))
                for name in QUANTITIES:
                    sums[name] += vendor_decimal(row.get(name))
        return totals

    def _figure(self, sku: str, location: str, totals: Totals) -> Availability | None:
        entry = self.mapping.location_entry(location)
        if entry is None or self.mapping.internal_location(entry.code) != location:
            return None  # several internal locations on one warehouse: only the primary carries it
        site = entry.attrs.get("site")
        rows = [sums for (row_site, warehouse), sums in totals.items()
                if warehouse == entry.code and (site is None or row_site == site)]
        if not rows:
            return None
        factor = compiled(self.mapping).units(sku, None)[0]
        on_hand, reserved, free, total = (sum((r[n] for r in rows), Decimal(0)) / factor for n in QUANTITIES)
        return Availability(item=sku, location=location, on_hand=on_hand, reserved=reserved, free=free,
                            forecast=total)

    def close(self) -> None:
        self.sender.close()
        self.ledger.close()


# --- the journal as one changeset ----------------------------------------------------------------
def journal_batch(request: HttpRequest, body: dict, lines_key: str, reference: str) -> odata_batch.Batch:
    """Header first (Content-ID 1), then each line POSTed to the header's navigation property."""
    header = {k: v for k, v in body.items() if k != lines_key}
    header[reference] = fit(str(header[reference]))
    parts = [odata_batch.Part("POST", request.url, header, "1")]
    parts += [odata_batch.Part("POST", f"$1/{lines_key}", line, str(n)) for n, line in enumerate(body[lines_key], 2)]
    return odata_batch.changeset(parts, seed=header[reference])


def fit(key: str) -> str:
    """The document key as the reference field holds it: longer keys are hashed to 51 characters."""
    if len(key) <= REFERENCE_MAX:
        return key
    return f"bridge-doc:{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def line_keys(mapping: SystemMapping) -> dict[str, str]:
    """Per POST request: the one body key holding ``{lines: ...}``, named after the header's
    navigation property to its lines (``InventoryMovementJournalLine`` in $metadata)."""
    found = {}
    for name, spec in mapping.requests.items():
        keys = [k for k, node in (spec.body or {}).items() if node.kind == "lines"]
        if spec.method != "POST" or len(keys) != 1:
            raise ConfigError(f"{mapping.system}: request {name} must be a POST of a journal header with exactly "
                              "one body key holding its lines ({lines: ...}), named after the header's navigation "
                              "property to its lines (InventoryMovementJournalLine)")
        found[name] = keys[0]
    return found


def company(mapping: SystemMapping) -> str:
    """The legal entity (``dataAreaId``): connection.database, and every body that names one agrees."""
    value = mapping.connection.database
    if not value:
        raise ConfigError(f"{mapping.system}: connection.database must name the legal entity (dataAreaId, e.g. usmf)")
    for name, spec in mapping.requests.items():
        for node in _data_area_nodes(spec.body or {}):
            if node.kind != "const" or str(node.const).lower() != value.lower():
                raise ConfigError(f"{mapping.system}: request {name} sends dataAreaId other than "
                                  f"connection.database ({value}); use the same constant")
    return value


def _data_area_nodes(body: Mapping[str, Node]) -> list[Node]:
    found = [body["dataAreaId"]] if "dataAreaId" in body else []
    for node in body.values():
        if node.kind == "lines" and node.lines and "dataAreaId" in node.lines:
            found.append(node.lines["dataAreaId"])
    return found


def describe_batches(mapping: SystemMapping, events: Sequence[WriteEvent], lookups: Lookups, *, now: datetime,
                     new_id: Callable[[], str]) -> str:
    """``mappings preview``: each journal exactly as it goes out, the $batch body included."""
    lines_of, reference = line_keys(mapping), reference_field(mapping)
    out = []
    for request in build_requests(list(events), mapping, lookups, now=now, new_id=new_id):
        body = {**request.body, reference: document_key(request.keys)}
        batch = journal_batch(request, body, lines_of[request.name], reference)
        out.append("\n".join([f"# {mapping.system} {request.name}, key {request.key}",
                              f"POST {mapping.connection.base_url}/$batch", "Authorization: Bearer ***",
                              *(f"{k}: {v}" for k, v in mapping.connection.headers.items()),
                              f"Content-Type: {batch.content_type}", "Accept: multipart/mixed", "",
                              batch.body.replace("\r\n", "\n").rstrip("\n")]))
    return "\n\n".join(out)


def _as_response(inner: odata_batch.InnerResponse) -> requests.Response:
    """An inner response of the batch as the runtime's classification takes it."""
    response = requests.Response()
    response.status_code, response.encoding = inner.status, "utf-8"
    response.headers = CaseInsensitiveDict(inner.headers)
    response._content = inner.text.encode()
    return response


def _journal_number(reply: Reply) -> str | None:
    body = reply.body if isinstance(reply.body, dict) else {}
    return str(body["JournalNumber"]) if body.get("JournalNumber") else None


def from_context(ctx: ConnectorContext, *, settle_s: float | None = None,
                 clock: Callable[[], float] = time.time) -> FinOpsConnector:
    mapping = ctx.mapping
    if mapping.connection.auth.kind != "azure_ad_client_credentials":
        raise ConfigError(f"{mapping.system}: F&O OData takes auth kind azure_ad_client_credentials")
    company(mapping)
    sender = ctx.sender(message=d365_message)
    return FinOpsConnector(mapping, sender, ctx.ledger(clock), ctx.lookups, settle_s=settle_s, clock=clock)
