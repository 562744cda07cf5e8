"""NetSuite over SuiteTalk SOAP: a mirror (moves -> inventory adjustments) and a system of record
(quantities per item and location from one paged item search; channel sales as adjustments).

Exactly once without a ledger: every event becomes one record upserted by ``externalId`` (the
event key, ids.external_id), so a retry, a lost answer or a restart updates the same record with
the same lines (``replaceAll`` on the sublist is true by default) instead of adding a second one.
Records go out in ``upsertList`` requests of at most UPSERT_LIST_MAX; NetSuite answers one
``writeResponse`` per record, in order, and each becomes the outcome of its event.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from ...domain import Availability, Count, Decrement, Delivered, Increment, Result, StockMove
from ...errors import BridgeError, ConfigError, MappingError, RejectedError, RetryableError
from ...mapping.binder import Binder
from ...mapping.compile import UnmappedError, compiled
from ...mapping.engine import build_requests
from ...mapping.lookups import LookupTable
from ...mapping.schema import SystemMapping
from ..base import Capability
from ..runtime.batch import not_attempted
from ..runtime.sender import Sender
from .ids import external_id
from .passport import TbaPassport
from .soap import CONCURRENCY, Codec, Zeep

#: records per upsertList. Oracle documents list limits per peak/off-peak hours; third-party
#: connectors use 200 for a synchronous upsertList: half of it leaves room for large records.
UPSERT_LIST_MAX = 100
#: item ids per search, and rows per page (NetSuite takes 5..1000; item x location rows)
READ_BATCH = 200
PAGE_SIZE = 1000
MAX_PAGES = 100
RETRY_CODES = CONCURRENCY | {"UNEXPECTED_ERROR", "RCRD_HAS_BEEN_CHANGED"}
CAPABILITIES = {"mirror": {Capability.POST_MOVES},
                "system_of_record": {Capability.READ_AVAILABILITY, Capability.APPLY_STOCK_CHANGES}}
Event = StockMove | Decrement | Increment


def _utcnow() -> datetime:
    return datetime.now(UTC)


class NetSuiteSoapConnector:
    def __init__(self, mapping: SystemMapping, sender: Sender, codec: Codec, passport: TbaPassport,
                 lookups: Mapping[str, LookupTable] | None = None, now: Callable[[], datetime] = _utcnow):
        self.name, self.mapping, self.sender, self.codec = mapping.system, mapping, sender, codec
        self.passport, self._lookups, self._now = passport, lookups, now
        self.url = str(mapping.connection.base_url)
        self.capabilities = frozenset(c for role in mapping.roles for c in CAPABILITIES.get(role, ()))
        self._binder = Binder(mapping, (lookups or {}).get(mapping.system))
        for name in mapping.requests:  # an unknown record type is a start-up error, not a dead letter each
            codec.record_type(record_type(mapping, name))

    # --- writes ----------------------------------------------------------------------------------
    def post_moves(self, moves: Sequence[StockMove]) -> list[Result]:
        return self.upsert(moves)

    def apply_stock_changes(self, changes: Sequence[Decrement | Increment | Count]) -> list[Result]:
        written = iter(self.upsert([c for c in changes if not isinstance(c, Count)]))
        refused = RejectedError(f"{self.name} takes decrements and increments, not absolute counts")
        return [refused if isinstance(c, Count) else next(written) for c in changes]

    def upsert(self, events: Sequence[Event]) -> list[Result]:
        outcomes: dict[str, Result] = {}
        records: dict[str, Zeep] = {}
        for event in events:  # one record per key: a key twice in a batch is one upsert
            key = event.idempotency_key
            if key not in records and key not in outcomes:
                self._record_or_refusal(event, records, outcomes)
        keys = list(records)
        for start in range(0, len(keys), UPSERT_LIST_MAX):
            chunk = keys[start:start + UPSERT_LIST_MAX]
            results, down = self._upsert_list(chunk, [records[k] for k in chunk])
            outcomes.update(zip(chunk, results))
            if down is not None:  # the whole request failed: the rest would fare the same
                outcomes.update({k: not_attempted(down) for k in keys[start + UPSERT_LIST_MAX:]})
                break
        return [outcomes[e.idempotency_key] for e in events]

    def _record_or_refusal(self, event: Event, records: dict[str, Zeep], outcomes: dict[str, Result]) -> None:
        key = event.idempotency_key
        try:
            request = build_requests(event, self.mapping, self._lookups, now=self._now(),
                                     new_id=lambda: str(uuid.uuid4()))[0]
            records[key] = self.codec.record(record_type(self.mapping, request.name), request.body or {},
                                             external_id(key))
        except UnmappedError as exc:
            outcomes[key] = RejectedError(f"cannot map to {self.name}: {exc}")
        except MappingError as exc:
            outcomes[key] = exc
        except (TypeError, ValueError) as exc:  # a body field the record type does not have
            outcomes[key] = MappingError(f"{self.name}: the request body does not fit the record type: {exc}")

    def _upsert_list(self, keys: list[str], records: list[Zeep]) -> tuple[list[Result], RetryableError | None]:
        """One outcome per record, and the error if the request as a whole failed retryably."""
        try:
            answer = self.call("upsertList", {}, record=records)
        except BridgeError as exc:
            return [exc] * len(keys), exc if isinstance(exc, RetryableError) else None
        responses = list(getattr(answer, "writeResponse", None) or [])
        if len(responses) != len(keys):
            error = RetryableError(f"upsertList answered {len(responses)} results for {len(keys)} records")
            return [error] * len(keys), error
        return [self._outcome(key, response) for key, response in zip(keys, responses)], None

    def _outcome(self, key: str, response: Zeep) -> Result:
        status = response.status
        if status is not None and status.isSuccess:
            ref = response.baseRef
            return Delivered(f"upserted {getattr(ref, 'type', None) or 'record'} {getattr(ref, 'internalId', '?')}")
        details = list(getattr(status, "statusDetail", None) or [])
        codes = {str(d.code) for d in details if d.code}
        text = "; ".join(f"{d.code}: {d.message}" for d in details) or "no statusDetail"
        reason = f"{self.name} refused {external_id(key)}: {self.sender.redact(text)}"
        if codes & RETRY_CODES:
            return RetryableError(reason)
        if "INSUFFICIENT_PERMISSION" in codes:
            return ConfigError(f"{reason}: give the token's role that permission")
        return RejectedError(reason)

    # --- reads -----------------------------------------------------------------------------------
    def read_availability(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Availability]:
        """Per (SKU, location): on_hand = locationQuantityOnHand, free = locationQuantityAvailable
        (on hand less committed), from item searches of READ_BATCH items. Unknown keys are absent."""
        wanted: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for sku, location in keys:
            try:
                code, place = self._binder.item_code(sku), self._binder.location_code(location)
            except UnmappedError:
                continue
            if place is not None and self.mapping.internal_location(place) == location:
                wanted.setdefault((code, place), []).append((sku, location))
        codes = sorted({code for code, _ in wanted})
        places = sorted({place for _, place in wanted})
        result: dict[tuple[str, str], Availability] = {}
        for start in range(0, len(codes), READ_BATCH):
            for code, place, on_hand, free in self._search(codes[start:start + READ_BATCH], places):
                for sku, location in wanted.get((code, place), []):
                    factor = compiled(self.mapping).units(sku, None)[0]
                    result[(sku, location)] = Availability(item=sku, location=location, on_hand=on_hand / factor,
                                                           reserved=(on_hand - free) / factor, free=free / factor)
        return result

    def _search(self, codes: list[str], places: list[str]) -> list[tuple[str, str, Decimal, Decimal]]:
        search = self.codec.get_type("ItemSearchAdvanced", "accounting")(
            criteria={"basic": {"internalId": _any_of(codes), "inventoryLocation": _any_of(places)}},
            columns={"basic": {name: [{}] for name in ("internalId", "inventoryLocation", "locationQuantityOnHand",
                                                       "locationQuantityAvailable")}})
        preferences = {"searchPreferences": {"bodyFieldsOnly": True, "returnSearchColumns": True,
                                             "pageSize": PAGE_SIZE}}
        page = self.call("search", preferences, searchRecord=search)
        rows, index = _rows(page), 1
        while index < int(getattr(page, "totalPages", 0) or 0):
            if index >= MAX_PAGES:
                raise ConfigError(f"{self.name}: item search has more than {MAX_PAGES} pages; map fewer locations")
            index += 1
            page = self.call("searchMoreWithId", preferences, searchId=page.searchId, pageIndex=index)
            rows += _rows(page)
        return rows

    # --- one SOAP call ---------------------------------------------------------------------------
    def call(self, operation: str, headers: dict, **body: Zeep) -> Zeep:
        """Send one envelope through the runtime's sender and return the parsed result; raises the
        classified BridgeError (SOAP faults come as HTTP 500, read here, not retried blindly)."""
        envelope = self.codec.envelope(operation, {"tokenPassport": self.passport.header(), **headers}, **body)
        what = f"SOAP {operation}"
        reply = self.sender.call("POST", self.url, what=what, body=envelope.content,
                                 headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": operation},
                                 on_status={**self.sender.on_status, "500": "ignore"})
        if isinstance(reply, BridgeError):
            raise reply
        answer = self.codec.reply(operation, reply.status, reply.content, self.sender.redact, what)
        return _unwrap(answer, self.sender, what)

    def close(self) -> None:
        self.sender.close()


def record_type(mapping: SystemMapping, request_name: str) -> str:
    return mapping.requests[request_name].path.strip("/")


def _any_of(ids: list[str]) -> dict:
    return {"operator": "anyOf", "searchValue": [{"internalId": i} for i in ids]}


def _unwrap(answer: Zeep, sender: Sender, what: str) -> Zeep:
    """The response element's payload (writeResponseList, searchResult); a failed search status
    is classified like a record's statusDetail."""
    if "body" in answer:  # zeep answers {header, body} when the output declares SOAP headers
        answer = answer["body"]
    for name in ("writeResponseList", "searchResult"):
        if hasattr(answer, name) or (isinstance(answer, dict) and name in answer):
            value = answer[name] if isinstance(answer, dict) else getattr(answer, name)
            _check_status(getattr(value, "status", None), sender, what)
            return value
    return answer


def _check_status(status: Zeep, sender: Sender, what: str) -> None:
    if status is None or status.isSuccess in (True, None):
        return
    details = list(getattr(status, "statusDetail", None) or [])
    codes = {str(d.code) for d in details}
    text = sender.redact("; ".join(f"{d.code}: {d.message}" for d in details) or "failed")
    if codes & RETRY_CODES:
        raise RetryableError(f"{what}: {text}")
    if "INSUFFICIENT_PERMISSION" in codes:
        raise ConfigError(f"{what}: {text}: give the token's role that permission")
    raise RejectedError(f"{what}: {text}")


def _rows(page: Zeep) -> list[tuple[str, str, Decimal, Decimal]]:
    rows = []
    for row in getattr(getattr(page, "searchRowList", None), "searchRow", None) or []:
        basic = row.basic
        code, place = _select(basic.internalId), _select(basic.inventoryLocation)
        if code and place:
            rows.append((code, place, _number(basic.locationQuantityOnHand), _number(basic.locationQuantityAvailable)))
    return rows


def _select(column: Zeep) -> str | None:
    value = column[0].searchValue if column else None
    return str(value.internalId) if value is not None and value.internalId is not None else None


def _number(column: Zeep) -> Decimal:
    value = column[0].searchValue if column else None
    return Decimal(str(value)) if value is not None else Decimal(0)
