"""SAP Business One Service Layer: a mirror (goods issues/receipts from the SoR's moves) and, when
the mapping says so, a system of record (availability from ``Items``; decrements and increments
as goods issues/receipts). Facts and sources: ../shared/reference/vendor-apis.md §1; integrator
guide: docs/connectors/sap_b1.md.

What is SAP's own and stays here: the session login (session.py), SL's error envelope
(classify.py), the reference-field search that settles a lost answer, and how ``Items`` reads as
availability. Sending, classification and the exactly-once ledger are the runtime's.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from ...domain import Availability, Count, Decrement, Increment, Result, StockMove
from ...errors import BridgeError, ConfigError
from ...mapping.binder import Binder
from ...mapping.compile import UnmappedError, compiled
from ..base import Capability
from ..runtime.context import ConnectorContext
from ..runtime.documents import DocumentTarget, DocumentWriter
from ..runtime.ledger import Intent, Ledger
from ..runtime.sender import Reply, Sender
from .session import session_sender

__all__ = ["SapB1Connector", "from_context", "session_sender"]
ITEM_SELECT = "ItemCode,ItemWarehouseInfoCollection"
# a mirror's stock is read too: for reconciliation (docs/reconciliation.md), never for the rule
CAPABILITIES = {"mirror": {Capability.POST_MOVES, Capability.READ_AVAILABILITY, Capability.AUDIT_DOCUMENTS},
                "system_of_record": {Capability.READ_AVAILABILITY, Capability.APPLY_STOCK_CHANGES,
                                     Capability.AUDIT_DOCUMENTS}}


class SapB1Connector:
    def __init__(self, mapping: Any, sender: Sender, ledger: Ledger, lookups: Any = None, *,
                 settle_s: float | None = None, clock: Callable[[], float] = time.time):
        self.name = mapping.system
        self.mapping, self.sender, self.ledger = mapping, sender, ledger
        self.base_url = str(mapping.connection.base_url)
        self.capabilities = frozenset(c for role in mapping.roles for c in CAPABILITIES.get(role, ()))
        self._binder = Binder(mapping, (lookups or {}).get(mapping.system))
        # long enough for a POST that timed out on our side to have finished inside SL
        settle = settle_s if settle_s is not None else 3 * sender.timeout[1]
        self._documents = DocumentWriter(mapping, lookups, sender, ledger, DocumentTarget.searched(self._find_all, _doc_entry),
                                         settle_s=settle, clock=clock)

    def post_moves(self, moves: Sequence[StockMove]) -> list[Result]:
        return self._documents.write(moves)

    def apply_stock_changes(self, changes: Sequence[Decrement | Increment | Count]) -> list[Result]:
        return self._documents.write_changes(changes)

    def read_availability(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Availability]:
        """From ``Items('{ItemCode}')``: on_hand=InStock, reserved=Committed, free=InStock-Committed,
        forecast=free+Ordered, in internal units. Unknown items and locations are absent."""
        by_sku: dict[str, list[str]] = defaultdict(list)
        for sku, location in keys:
            by_sku[sku].append(location)
        # SL reads one item per call: up to limits.concurrency calls at once (the sender is thread-safe)
        workers = max(1, min(self.mapping.limits.concurrency, len(by_sku)))
        with ThreadPoolExecutor(workers, thread_name_prefix=f"{self.name}-read") as pool:
            warehouses = dict(zip(by_sku, pool.map(self._warehouses, by_sku)))
        result = {}
        for sku, locations in by_sku.items():
            rows = warehouses[sku]
            for location in locations:
                figure = self._figure(sku, location, rows)
                if figure is not None:
                    result[(sku, location)] = figure
        return result

    def close(self) -> None:
        self.sender.close()
        self.ledger.close()

    def audit_documents(self, since: float, limit: int) -> list[tuple[Intent, list[str]]]:
        return self._documents.audit(since, limit)

    def _find_all(self, intent: Intent) -> list[str]:
        """The DocEntry of every document carrying ``intent``'s key in the reference field."""
        literal = intent.document_key.replace("'", "''")  # OData string literal
        query = quote(f"{self._documents.reference_field} eq '{literal}'", safe="'")
        reply = self.sender.call("GET", f"{self.base_url}/{intent.kind}?$filter={query}&$select=DocEntry",
                                 what=f"GET {intent.kind} (search)")
        if isinstance(reply, BridgeError):
            raise reply
        return [str(row.get("DocEntry", "?")) for row in (reply.body or {}).get("value") or []]

    def _warehouses(self, sku: str) -> dict[str, dict]:
        try:
            code = self._binder.item_code(sku)
        except UnmappedError:
            return {}
        url = f"{self.base_url}/Items('{quote(code.replace(chr(39), chr(39) * 2), safe='')}')?$select={ITEM_SELECT}"
        # SL: 404 / -2028 "No matching records found": not an item of this company
        reply = self.sender.call("GET", url, what="GET Items", on_status={**self.sender.on_status, "404": "ignore"})
        if isinstance(reply, BridgeError):
            raise reply
        if reply.status == 404 or not isinstance(reply.body, dict):
            return {}
        return {row.get("WarehouseCode"): row for row in reply.body.get("ItemWarehouseInfoCollection") or []}

    def _figure(self, sku: str, location: str, rows: dict[str, dict]) -> Availability | None:
        entry = self.mapping.location_entry(location)
        # several internal locations on one warehouse: only the primary one carries its stock
        if entry is None or entry.code not in rows or self.mapping.internal_location(entry.code) != location:
            return None
        factor = compiled(self.mapping).units(sku, None)[0]
        row = rows[entry.code]
        on_hand, reserved, ordered = (Decimal(str(row.get(f) or 0)) / factor for f in ("InStock", "Committed", "Ordered"))
        return Availability(item=sku, location=location, on_hand=on_hand, reserved=reserved,
                            free=on_hand - reserved, forecast=on_hand - reserved + ordered)


def _doc_entry(reply: Reply) -> str | None:
    body = reply.body
    return str(body["DocEntry"]) if isinstance(body, dict) and "DocEntry" in body else None


def from_context(ctx: ConnectorContext, *, settle_s: float | None = None, clock: Callable[[], float] = time.time,
                 session_clock: Callable[[], float] = time.monotonic) -> SapB1Connector:
    conn, names = ctx.mapping.connection, ctx.mapping.connection.auth.secrets
    if not conn.database:
        raise ConfigError(f"{ctx.system}: connection.database must name the SAP CompanyDB")
    sender = session_sender(ctx.system, str(conn.base_url), conn.database, ctx.secret(names["username"]),
                            ctx.secret(names["password"]), timeout_s=float(conn.timeout_s),
                            on_status=dict(ctx.mapping.writes.on_status), clock=session_clock)
    return SapB1Connector(ctx.mapping, sender, ctx.ledger(clock), ctx.lookups, settle_s=settle_s, clock=clock)
