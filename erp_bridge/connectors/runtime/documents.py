"""Exactly-once documents for targets without an idempotency key (SAP B1 goods issues/receipts,
Zoho Inventory adjustments, ...): the mapping engine builds them, the ledger makes them count once.

Per batch: events the mapping cannot map are rejected alone; events an earlier attempt already
put in a document are settled first (the ledger says so, or the target is searched for the
document key in its reference field); the rest are built into documents of up to
``writes.batch_size`` lines, each claimed in the ledger BEFORE it is posted. The document key
(ledger.document_key: the sorted event keys, hashed) is what goes into the reference field, so a
search finds the document whatever grouping the events come back in.

A document whose POST timed out may still be committing in the target: searching right away
finds nothing, and reposting would double it, so an unresolved intent younger than ``settle_s``
is retried later instead of reposted. A target that refuses a whole document for one bad line
gets the document again line by line, so only the bad event is rejected.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ...domain import Count, Delivered, Result
from ...errors import BridgeError, ConfigError, MappingError, RejectedError, RetryableError
from ...mapping.engine import HttpRequest, UnmappedError, build_requests
from .batch import not_attempted
from .ledger import Intent, Ledger, document_key
from .sender import Reply, Sender

#: (intent) -> the target's id of a document carrying intent.document_key, or None; raises BridgeError
Find = Callable[[Intent], "str | None"]
#: (the answer to a successful POST) -> the target's id of the new document, if it says
DocumentId = Callable[[Reply], "str | None"]
#: (the request the engine built, its body with the document key) -> the answer; for a target whose
#: documents do not go as one JSON POST (an OData $batch changeset, a SOAP envelope)
Post = Callable[[HttpRequest, dict], "Reply | BridgeError"]


@dataclass(frozen=True)
class DocumentTarget:
    """What one system contributes: how to find a document by its key, and read its id."""

    find: Find
    document_id: DocumentId
    #: a 2xx answer that still says "refused" (an envelope with an error code), else None
    refused: Callable[[Reply], BridgeError | None] | None = None
    #: how one document is sent; None: the request as JSON through the sender
    post: Post | None = None
    #: every id of a document carrying intent.document_key (reconciliation finds doubles with it);
    #: None: the target cannot be searched that way, so its documents are not audited
    find_all: Callable[[Intent], list[str]] | None = None

    @classmethod
    def searched(cls, find_all: Callable[[Intent], list[str]], document_id: DocumentId, **more: Any) -> DocumentTarget:
        """A target whose search answers every document carrying the key (an OData ``$filter``):
        ``find`` is its first, and reconciliation audits with the whole list."""
        return cls(lambda intent: next(iter(find_all(intent)), None), document_id, find_all=find_all, **more)


class DocumentWriter:
    def __init__(self, mapping: Any, lookups: Any, sender: Sender, ledger: Ledger, target: DocumentTarget, *,
                 settle_s: float, clock: Callable[[], float] = time.time):
        self._mapping, self._lookups, self._sender, self._ledger = mapping, lookups, sender, ledger
        self._target, self._settle_s, self._clock = target, settle_s, clock
        self.reference_field = reference_field(mapping)

    def write(self, events: Sequence[Any]) -> list[Result]:
        outcomes: dict[str, Result] = {}
        by_key = {e.idempotency_key: e for e in events}
        mappable = [e for e in by_key.values() if self._mappable(e, outcomes)]
        todo = self._settle_earlier(mappable, outcomes)
        if todo:
            self._post_all(todo, by_key, outcomes)
        return [outcomes[e.idempotency_key] for e in events]

    def audit(self, since: float, limit: int) -> list[tuple[Intent, list[str]]]:
        """Each document confirmed since ``since`` (the ledger's), with the ids of every document
        the target holds under its key now: one is right, none is a missing move (deleted or
        cancelled in the target), more is a doubled one. Raises BridgeError when the target fails."""
        if self._target.find_all is None:
            raise ConfigError(f"{self._mapping.system}: its documents cannot be searched by reference")
        return [(intent, self._target.find_all(intent)) for intent in self._ledger.recent(since, limit)]

    def write_changes(self, changes: Sequence[Any]) -> list[Result]:
        """Channel sales and returns as documents; an absolute count is refused (a document target
        takes changes, and counts go to reconciliation)."""
        counts = {id(c) for c in changes if isinstance(c, Count)}
        written = iter(self.write([c for c in changes if id(c) not in counts]))
        refused = RejectedError(f"{self._mapping.system} takes decrements and increments, not absolute counts")
        return [refused if id(c) in counts else next(written) for c in changes]

    # --- before posting ---------------------------------------------------------------------
    def _mappable(self, event: Any, outcomes: dict[str, Result]) -> bool:
        try:
            self._build([event])
            return True
        except UnmappedError as exc:
            outcomes[event.idempotency_key] = RejectedError(f"cannot map to {self._mapping.system}: {exc}")
        except MappingError as exc:
            outcomes[event.idempotency_key] = exc
        return False

    def _settle_earlier(self, events: list[Any], outcomes: dict[str, Result]) -> list[Any]:
        keys = {e.idempotency_key for e in events}
        for intent in self._ledger.intents_for(sorted(keys)):
            verdict = self._resolve(intent)
            if verdict is not None:
                outcomes.update({k: verdict for k in intent.keys if k in keys})
        return [e for e in events if e.idempotency_key not in outcomes]

    def _resolve(self, intent: Intent) -> Result | None:
        """Delivered('duplicate') if the target has it; None (post again) if it certainly has not."""
        if intent.doc_entry is not None:
            return Delivered("duplicate")
        try:
            found = self._target.find(intent)
        except BridgeError as exc:
            return exc
        if found is not None:
            self._ledger.done(intent.document_key, found)
            return Delivered("duplicate")
        age = self._clock() - intent.created_at
        if age < self._settle_s:
            return RetryableError(f"document {intent.document_key} may still be committing in "
                                  f"{self._mapping.system}; searching again later", after=self._settle_s - age)
        self._ledger.drop(intent.document_key)
        return None

    # --- posting ----------------------------------------------------------------------------
    def _post_all(self, events: list[Any], by_key: dict[str, Any], outcomes: dict[str, Result]) -> None:
        pending = self._build(events)
        while pending:
            request = pending.pop(0)
            result, down = self._post_document(request, by_key)
            outcomes.update(result)
            if down:  # the target is down or throttling: the other documents would fare the same
                for left in pending:
                    outcomes.update({k: not_attempted(down) for k in left.keys})
                return

    def _post_document(self, request: HttpRequest, by_key: dict[str, Any]) -> tuple[dict, RetryableError | None]:
        doc_key, kind = document_key(request.keys), entity_of(request.url)
        if not self._ledger.claim(doc_key, kind, request.keys):
            busy = RetryableError(f"another attempt is posting {doc_key}", after=1.0)
            return {k: busy for k in request.keys}, None
        outcome = self._send(request, doc_key)
        if isinstance(outcome, RejectedError) and len(request.keys) > 1:
            return self._one_by_one(request.keys, by_key), None
        down = outcome if isinstance(outcome, RetryableError) else None
        return {k: outcome for k in request.keys}, down

    def _one_by_one(self, keys: Sequence[str], by_key: dict[str, Any]) -> dict[str, Result]:
        result: dict[str, Result] = {}
        for key in keys:
            single, _ = self._post_document(self._build([by_key[key]])[0], by_key)
            result.update(single)
        return result

    def _send(self, request: HttpRequest, doc_key: str) -> Result:
        body = {**request.body, self.reference_field: doc_key}
        reply = (self._target.post(request, body) if self._target.post else
                 self._sender.send(request, body=body, what=f"{request.method} {entity_of(request.url)}"))
        if isinstance(reply, Reply):
            refused = self._target.refused(reply) if self._target.refused else None
            if refused is not None:
                self._ledger.drop(doc_key)  # the target created nothing
                return refused
            self._ledger.done(doc_key, self._target.document_id(reply))
            return Delivered("posted")
        if _nothing_created(reply):
            self._ledger.drop(doc_key)  # free to post again
        return reply  # otherwise unknown: the intent stays and the next attempt searches

    def _build(self, events: list[Any]) -> list[HttpRequest]:
        return build_requests(events, self._mapping, self._lookups, now=datetime.now(UTC),
                              new_id=lambda: str(uuid.uuid4()))


def _nothing_created(error: BridgeError) -> bool:
    """Refused (4xx), throttled (429), unavailable (503), never sent, or no credential: the target
    created nothing. A timeout or another 5xx may have created the document."""
    if error.never_sent or isinstance(error, ConfigError):
        return True
    status = error.status or 0
    return 400 <= status < 500 or status == 503


def reference_field(mapping: Any) -> str:
    idem = mapping.writes.idempotency
    if idem.strategy != "reference_field" or not idem.field:
        raise ConfigError(f"{mapping.system}: this target has no idempotency key of its own; set "
                          "writes.idempotency to {strategy: reference_field, field: <its reference field>}")
    for name, spec in mapping.requests.items():
        if spec.method == "POST" and idem.field not in (spec.body or {}):
            raise ConfigError(f"{mapping.system}: request {name} must write the document key into "
                              f"{idem.field} (body: {idem.field}: {{field: key}})")
    return idem.field


def entity_of(url: str) -> str:
    """The last path segment of a document URL: the entity (SAP InventoryGenExits, an OData entity set)."""
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
