"""SAP Business One Service Layer: a mirror (goods issues/receipts from the SoR's moves) and, when
the mapping says so, a system of record (availability from ``Items``; decrements and increments
as goods issues/receipts). Facts and sources: ../shared/reference/vendor-apis.md §1; integrator
guide: docs/connectors/sap_b1.md.

Layering: the mapping engine builds every document body; this adapter only logs in, sends,
classifies, and keeps the ledger that makes each event count once.
"""
from __future__ import annotations

import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import quote

import requests

from ...domain import Availability, Count, Decrement, Increment, StockMove
from ...errors import BridgeError, ConfigError, RejectedError
from ...mapping.compile import compiled
from ...mapping.engine import UnmappedError, item_code
from ..base import Capability, Outcome
from ..ledger import Ledger
from ..registry import secret_value
from .classify import classify, classify_exception
from .documents import DocumentPoster
from .session import ServiceLayerSession

__all__ = ["SapB1Connector", "ServiceLayerSession", "from_mapping", "classify"]
ITEM_SELECT = "ItemCode,ItemWarehouseInfoCollection"
CAPABILITIES = {"mirror": {Capability.POST_MOVES},
                "system_of_record": {Capability.READ_AVAILABILITY, Capability.APPLY_STOCK_CHANGES}}


class SapB1Connector:
    def __init__(self, mapping: Any, session: ServiceLayerSession, ledger: Ledger, lookups: Any = None, *,
                 settle_s: float | None = None, clock: Callable[[], float] = time.time):
        self.name = mapping.system
        self.mapping, self.session, self.ledger = mapping, session, ledger
        self.capabilities = frozenset(c for role in mapping.roles for c in CAPABILITIES.get(role, ()))
        self._table = (lookups or {}).get(mapping.system)
        # long enough for a POST that timed out on our side to have finished inside SL
        settle = settle_s if settle_s is not None else 3 * session.timeout[1]
        self._documents = DocumentPoster(mapping, lookups, session, ledger, settle_s=settle, clock=clock)

    def post_moves(self, moves: Sequence[StockMove]) -> list[Outcome]:
        return self._documents.post(moves)

    def apply_stock_changes(self, changes: Sequence[Decrement | Increment | Count]) -> list[Outcome]:
        counts = {id(c) for c in changes if isinstance(c, Count)}
        posted = iter(self._documents.post([c for c in changes if id(c) not in counts]))
        refused = RejectedError("sap_b1 takes decrements and increments, not absolute counts")
        return [refused if id(c) in counts else next(posted) for c in changes]

    def read_availability(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Availability]:
        """From ``Items('{ItemCode}')``: on_hand=InStock, reserved=Committed, free=InStock-Committed,
        forecast=free+Ordered, in internal units. Unknown items and locations are absent."""
        by_sku: dict[str, list[str]] = defaultdict(list)
        for sku, location in keys:
            by_sku[sku].append(location)
        result = {}
        for sku, locations in by_sku.items():
            rows = self._warehouses(sku)
            for location in locations:
                figure = self._figure(sku, location, rows)
                if figure is not None:
                    result[(sku, location)] = figure
        return result

    def prune(self, older_than_s: float) -> int:
        """Forget posted documents older than the queue's retention (their moves are done)."""
        return self.ledger.prune(older_than_s)

    def close(self) -> None:
        self.session.close()
        self.ledger.close()

    def _warehouses(self, sku: str) -> dict[str, dict]:
        try:
            code = item_code(self.mapping, self._table, sku)
        except UnmappedError:
            return {}
        url = f"{self.session.base_url}/Items('{quote(code.replace(chr(39), chr(39) * 2), safe='')}')"
        what = "GET Items"
        try:
            response = self.session.request("GET", f"{url}?$select={ITEM_SELECT}")
        except requests.RequestException as exc:
            raise classify_exception(exc, what) from None
        with response:
            if response.status_code == 404:
                return {}  # SL: -2028 "No matching records found": not an item of this company
            outcome = classify(response, what, self.session.redact)
            if isinstance(outcome, BridgeError):
                raise outcome
            body = response.json(parse_float=Decimal)
        return {row.get("WarehouseCode"): row for row in body.get("ItemWarehouseInfoCollection") or []}

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


def from_mapping(system_mapping: Any, secrets: Any, lookups: Any = None) -> SapB1Connector:
    """Registry factory. ``secrets``: the settings object (``.secret()``, ``.data_dir``) or a plain
    mapping of secret names to values (the ledger then goes under ./var, the settings default)."""
    conn = system_mapping.connection
    if not conn.database:
        raise ConfigError(f"{system_mapping.system}: connection.database must name the SAP CompanyDB")
    names = conn.auth.secrets
    session = ServiceLayerSession(str(conn.base_url), conn.database, secret_value(secrets, names["username"]),
                                  secret_value(secrets, names["password"]), timeout_s=float(conn.timeout_s))
    data_dir = Path(getattr(secrets, "data_dir", None) or "var")
    ledger = Ledger(data_dir / f"ledger-{system_mapping.system}.sqlite3")
    return SapB1Connector(system_mapping, session, ledger, lookups)
