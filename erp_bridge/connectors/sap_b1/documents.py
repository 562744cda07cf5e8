"""Exactly-once documents for a target without an idempotency header (SL goods issues/receipts).

Per batch: events the mapping cannot map are rejected alone; events an earlier attempt already
put in a document are settled first (the ledger says so, or SL is searched for the document key
in the reference field); the rest are mapped by the engine into documents of up to
``writes.batch_size`` lines, each claimed in the ledger BEFORE it is posted. The document key
(ledger.document_key: the sorted event keys, hashed) is what goes into the reference field, so a
search finds the document whatever grouping the events come back in.

Hole closed beyond the lead's design: a document whose POST timed out may still be committing in
SL. Searching right away finds nothing, and reposting would double it, so an unresolved intent
younger than ``settle_s`` is retried later instead of reposted. Second: SL refuses a whole document
for one bad line, so a refused multi-line document is posted again line by line; only the bad
event is rejected.
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Sequence
from urllib.parse import quote, urlsplit

import requests

from ...errors import BridgeError, ConfigError, MappingError, RejectedError, RetryableError
from ...mapping.engine import HttpRequest, UnmappedError, build_requests
from ...mapping.wire import PLACEHOLDER, to_json
from ...errors import NotAttempted
from ..base import Delivered, Outcome
from ..ledger import Intent, Ledger, document_key
from .classify import classify, classify_exception, never_sent
from .session import ServiceLayerSession


class DocumentPoster:
    def __init__(self, mapping: Any, lookups: Any, session: ServiceLayerSession, ledger: Ledger, *,
                 settle_s: float, clock: Callable[[], float] = time.time):
        self._mapping, self._lookups, self._session, self._ledger = mapping, lookups, session, ledger
        self._settle_s, self._clock = settle_s, clock
        self.reference_field = _reference_field(mapping)

    def post(self, events: Sequence[Any]) -> list[Outcome]:
        outcomes: dict[str, Outcome] = {}
        by_key = {e.idempotency_key: e for e in events}
        mappable = [e for e in by_key.values() if self._mappable(e, outcomes)]
        todo = self._settle_earlier(mappable, outcomes)
        if todo:
            self._post_all(todo, by_key, outcomes)
        return [outcomes[e.idempotency_key] for e in events]

    # --- before posting ---------------------------------------------------------------------
    def _mappable(self, event: Any, outcomes: dict[str, Outcome]) -> bool:
        try:
            self._build([event])
            return True
        except UnmappedError as exc:
            outcomes[event.idempotency_key] = RejectedError(f"cannot map to {self._mapping.system}: {exc}")
        except MappingError as exc:
            outcomes[event.idempotency_key] = exc
        return False

    def _settle_earlier(self, events: list[Any], outcomes: dict[str, Outcome]) -> list[Any]:
        keys = {e.idempotency_key for e in events}
        for intent in self._ledger.intents_for(sorted(keys)):
            verdict = self._resolve(intent)
            if verdict is not None:
                outcomes.update({k: verdict for k in intent.keys if k in keys})
        return [e for e in events if e.idempotency_key not in outcomes]

    def _resolve(self, intent: Intent) -> Outcome | None:
        """Delivered('duplicate') if SL has it; None (post again) if it certainly has not."""
        if intent.doc_entry is not None:
            return Delivered("duplicate")
        try:
            found = self._search(intent.kind, intent.document_key)
        except BridgeError as exc:
            return exc
        if found is not None:
            self._ledger.done(intent.document_key, found)
            return Delivered("duplicate")
        age = self._clock() - intent.created_at
        if age < self._settle_s:
            return RetryableError(f"document {intent.document_key} may still be committing in SAP; "
                                  "searching again later", after=self._settle_s - age)
        self._ledger.drop(intent.document_key)
        return None

    def _search(self, entity: str, doc_key: str) -> str | None:
        literal = doc_key.replace("'", "''")  # OData string literal
        query = quote(f"{self.reference_field} eq '{literal}'", safe="'")
        url = f"{self._session.base_url}/{entity}?$filter={query}&$select=DocEntry"
        what = f"GET {entity} (search)"
        try:
            response = self._session.request("GET", url)
        except requests.RequestException as exc:
            raise classify_exception(exc, what) from None
        with response:
            outcome = classify(response, what, self._session.redact)
            if isinstance(outcome, BridgeError):
                raise outcome
            found = response.json().get("value") or []
        return str(found[0].get("DocEntry", "?")) if found else None

    # --- posting ----------------------------------------------------------------------------
    def _post_all(self, events: list[Any], by_key: dict[str, Any], outcomes: dict[str, Outcome]) -> None:
        pending = self._build(events)
        while pending:
            request = pending.pop(0)
            result, down = self._post_document(request, by_key)
            outcomes.update(result)
            if down:  # SL down or throttling: the other documents would fare the same
                for left in pending:
                    outcomes.update({k: NotAttempted(down) for k in left.keys})
                return

    def _post_document(self, request: HttpRequest, by_key: dict[str, Any]) -> tuple[dict, RetryableError | None]:
        doc_key, entity = document_key(request.keys), _entity(request.url)
        if not self._ledger.claim(doc_key, entity, request.keys):
            busy = RetryableError(f"another attempt is posting {doc_key}", after=1.0)
            return {k: busy for k in request.keys}, None
        outcome = self._send(request, doc_key, entity)
        if isinstance(outcome, RejectedError) and len(request.keys) > 1:
            return self._one_by_one(request.keys, by_key), None
        down = outcome if isinstance(outcome, RetryableError) else None
        return {k: outcome for k in request.keys}, down

    def _one_by_one(self, keys: Sequence[str], by_key: dict[str, Any]) -> dict[str, Outcome]:
        result: dict[str, Outcome] = {}
        for key in keys:
            single, _ = self._post_document(self._build([by_key[key]])[0], by_key)
            result.update(single)
        return result

    def _send(self, request: HttpRequest, doc_key: str, entity: str) -> Outcome:
        body = {**request.body, self.reference_field: doc_key}
        what = f"{request.method} {entity}"
        try:
            response = self._session.request(request.method, request.url, data=to_json(body).encode(),
                                             headers=_headers(request.headers))
        except (requests.RequestException, BridgeError) as exc:
            if isinstance(exc, BridgeError) or never_sent(exc):
                self._ledger.drop(doc_key)  # nothing reached SL: free to post again
            return exc if isinstance(exc, BridgeError) else classify_exception(exc, what)
        with response:
            return self._settle_response(response, doc_key, what)

    def _settle_response(self, response: requests.Response, doc_key: str, what: str) -> Outcome:
        outcome = classify(response, what, self._session.redact)
        if isinstance(outcome, Delivered):
            self._ledger.done(doc_key, _doc_entry(response))
            return Delivered("posted")
        if response.status_code < 500 or response.status_code == 503:
            self._ledger.drop(doc_key)  # refused, throttled or unavailable: nothing was created
        return outcome  # other 5xx: unknown, the intent stays and the next attempt searches

    def _build(self, events: list[Any]) -> list[HttpRequest]:
        return build_requests(events, self._mapping, self._lookups, now=datetime.now(timezone.utc),
                              new_id=lambda: str(uuid.uuid4()))


def _reference_field(mapping: Any) -> str:
    idem = mapping.writes.idempotency
    if idem.strategy != "reference_field" or not idem.field:
        raise ConfigError(f"{mapping.system}: SAP B1 has no idempotency header; set writes.idempotency "
                          "to {strategy: reference_field, field: U_<your UDF>}")
    for name, spec in mapping.requests.items():
        if spec.method == "POST" and idem.field not in (spec.body or {}):
            raise ConfigError(f"{mapping.system}: request {name} must write the document key into "
                              f"{idem.field} (body: {idem.field}: {{field: key}})")
    return idem.field


def _entity(url: str) -> str:
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


def _headers(headers: dict[str, str]) -> dict[str, str]:
    """The engine's headers without the session placeholder: the cookie jar sends B1SESSION and
    ROUTEID itself. Any other placeholder is a credential this connector does not have."""
    out = {}
    for name, value in headers.items():
        if value == "{auth:session}":
            continue
        if PLACEHOLDER.search(value):
            raise ConfigError(f"header {name}: sap_b1 fills only the session cookie")
        out[name] = value
    return out


def _doc_entry(response: requests.Response) -> str | None:
    try:
        return str(response.json()["DocEntry"])
    except (ValueError, KeyError, TypeError):
        return None  # 204 (Prefer: return-no-content) or an unexpected body: created all the same
