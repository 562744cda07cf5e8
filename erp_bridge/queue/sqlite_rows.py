"""Entries from and to SQLite rows (erp_bridge/queue/sqlite.py), kept apart so the queue module
stays about its transactions. The hot paths (enqueue, lease) build many entries per call: they
read tuples by position and convert each distinct timestamp once."""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..storage import json_loads
from .base import ENTRY_FIELDS, Entry, NewEntry, State, built_entry


def dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def at(epoch: float) -> datetime:
    """A timestamp column that is never NULL."""
    return datetime.fromtimestamp(epoch, UTC)


def entry(row: sqlite3.Row, payload: dict | None = None) -> Entry:
    """An Entry from its row; ``payload``: the dict the row's JSON was just made from, if known."""
    quantity = row["quantity"]
    return Entry(
        id=row["id"], target=row["target"], kind=row["kind"], item=row["item"],
        location=row["location"], idempotency_key=row["idempotency_key"],
        payload=loads(row["payload"]) if payload is None else payload, quantity=None if quantity is None else Decimal(quantity),
        state=State(row["state"]), attempts=row["attempts"], available_at=at(row["available_at"]),
        created_at=at(row["created_at"]), updated_at=at(row["updated_at"]),
        lease_owner=row["lease_owner"], lease_until=dt(row["lease_until"]),
        last_error=row["last_error"], superseded_by=row["superseded_by"])


def _make(values: Iterable[Any]) -> Entry:
    """``Entry(*values)``, its fields in order, without its ``__init__`` (base.built_entry)."""
    return built_entry(zip(ENTRY_FIELDS, values))


def new_entry(entry_id: int, new: NewEntry, stamp: datetime) -> Entry:
    """The Entry just stored from ``new`` at ``stamp``, without reading it back."""
    quantity = new.quantity
    return _make((entry_id, new.target, new.kind, new.item, new.location, new.idempotency_key, new.payload,
                  quantity if quantity is None or isinstance(quantity, Decimal) else Decimal(str(quantity)),
                  State.PENDING, 0, stamp, stamp, stamp, None, None, None, None))


#: what ``entries`` reads, by position (sqlite3.Row looks names up one by one)
ENTRY_COLUMNS = ("id, target, kind, item, location, idempotency_key, payload, quantity, state, attempts,"
                 " available_at, created_at, updated_at, lease_owner, lease_until, last_error, superseded_by")
STATES = {s.value: s for s in State}
#: json.dumps(payload, default=str) without building an encoder per call
dumps = json.JSONEncoder(default=str).encode
loads = json_loads  # msgspec, json for what it refuses (storage.json_loads)


def entries(rows: list[tuple]) -> list[Entry]:
    """Entries from rows of ENTRY_COLUMNS. A batch shares a few timestamps: each is converted once."""
    stamps: dict[float | None, datetime | None] = {None: None}

    def stamp(epoch: float | None) -> Any:
        if epoch not in stamps:
            stamps[epoch] = datetime.fromtimestamp(epoch, UTC)  # type: ignore[arg-type]
        return stamps[epoch]
    # positional: ENTRY_COLUMNS is Entry's field order (keywords cost more, per entry)
    return [_make((r[0], r[1], r[2], r[3], r[4], r[5], loads(r[6]), None if r[7] is None else Decimal(r[7]),
                   STATES[r[8]], r[9], stamp(r[10]), stamp(r[11]), stamp(r[12]), r[13], stamp(r[14]), r[15],
                   r[16]))
            for r in rows]
