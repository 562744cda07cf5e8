"""The SQLite queue's enqueue of several entries, planned in Python (issue 15).

Entry by entry, a batch of webhooks cost about six statements per webhook on a hot SKU (insert
the sale and its sum; for the availability marker a lookup, an insert, the superseded update and
the head promotion). In the intake each statement also gave the GIL to the event loop and waited
up to the switch interval to get it back, so a commit of eight webhooks took about 6 ms for
0.4 ms of fsync. Here the queue reads what the batch needs in one statement (KEYS_SQL: which of
its idempotency keys are stored already; per ordering key whether it has an unfinished entry and
the pending marker a new one would replace; the last id given), ``plan`` works out every row as
the entry-by-entry path would have left it, and the queue writes them in one multi-row insert,
one update of the stored markers replaced, the sums, and a head promotion only where the plan
cannot know the head (sqlite.py, ``_enqueue_batch``). SQLite only: PostgreSQL has its own enqueue.

``plan`` is what the entry-by-entry path does, replayed in memory: ids in order from the last one
given (the write lock is held, nobody else inserts; a duplicate takes one as well), the head for
the first unfinished entry of a key, a coalescing entry replacing the newest pending coalescing
entry of its key and kind (stored before the batch, or earlier in it) and keeping its backoff, a
duplicate answered with the entry as it stands at that point. tests/unit/test_queue_sqlite_batch.py
compares both paths row by row.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from .base import Entry, NewEntry, State
from .sqlite_rows import at, dumps, new_entry

Key = tuple[str, str, str]

#: a batch's rows, ids and heads decided by sqlite_batch.plan (no ON CONFLICT: it left out every
#: idempotency key stored already, so a conflict is a bug and fails the whole commit)
INSERT = (
    "INSERT INTO entries (id, target, kind, item, location, idempotency_key, payload, quantity, coalescing,"
    " state, head, available_at, created_at, updated_at, superseded_by) VALUES ")
ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

#: per (target, item, location, kind of a coalescing entry or NULL) of a batch: whether the key
#: has an unfinished entry, and the newest pending coalescing entry a new one would replace, with
#: its head flag and whether it is the key's only unfinished entry (the ``state IN`` repeats
#: entries_open's predicate, so these walk only the key's open entries; the CASE: a plain entry's
#: key, often a backlog of sales, is not walked for a marker, nor for the head's neighbours unless
#: a head is replaced); the batch's idempotency keys stored already (ids); the last id given. One row, JSON arrays: one step, one GIL hand-over (issue 15);
#: available_at as text of 17 digits (JSON's numbers keep 15, which moves a backoff's end).
KEYS_SQL = (
    "SELECT json_group_array(json_array(k.column1, k.column2, k.column3, k.column4,"
    " EXISTS (SELECT 1 FROM entries o WHERE o.target = k.column1 AND o.item = k.column2"
    " AND o.location = k.column3 AND o.state IN ('pending', 'leased')), r.id, printf('%!.17g', r.available_at),"
    " r.quantity, r.head, CASE WHEN r.head THEN NOT EXISTS (SELECT 1 FROM entries o WHERE o.target = k.column1"
    " AND o.item = k.column2 AND o.location = k.column3 AND o.state IN ('pending', 'leased') AND o.id <> r.id)"
    " ELSE 0 END)),"
    " (SELECT json_group_array(e.id) FROM (VALUES {pairs}) AS d JOIN entries e"
    " ON e.target = d.column1 AND e.idempotency_key = d.column2),"
    " max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'entries'), 0),"
    " coalesce((SELECT max(id) FROM entries), 0))"
    " FROM (VALUES {keys}) AS k LEFT JOIN entries r ON r.id = CASE WHEN k.column4 IS NOT NULL THEN"
    " (SELECT id FROM entries e WHERE e.target = k.column1 AND e.item = k.column2 AND e.location = k.column3"
    " AND e.state IN ('pending', 'leased') AND e.state = 'pending' AND e.kind = k.column4"
    " AND e.coalescing = 1 ORDER BY id DESC LIMIT 1) END")


def text(quantity: Decimal | None) -> str | None:
    return None if quantity is None else str(quantity)


def values(row: Row, now: float) -> tuple:
    """ROW's values."""
    n = row.new
    return (row.id, n.target, n.kind, n.item, n.location, n.idempotency_key, dumps(n.payload),
            text(n.quantity), int(n.coalesce),
            "pending" if row.superseded_by is None else "done", int(row.head), row.available_at, now, now,
            row.superseded_by)


@dataclass
class Row:
    """A new row as the commit stores it; ``entry`` is what its own enqueue returns."""

    id: int
    new: NewEntry
    head: bool
    available_at: float
    entry: Entry
    superseded_by: int | None = None

    @property
    def key(self) -> Key:
        return (self.new.target, self.new.item, self.new.location)


@dataclass
class Replaced:
    """A pending marker stored before the batch, now done: superseded by ``by``."""

    id: int
    by: int
    new: NewEntry  # the marker replacing it (its key and kind are the replaced one's)
    quantity: str | None


@dataclass
class Plan:
    last_id: int  # the last id the batch takes (sqlite_sequence after it)
    rows: list[Row] = field(default_factory=list)
    replaced: list[Replaced] = field(default_factory=list)
    out: list[Entry] = field(default_factory=list)
    #: keys whose head was a stored marker now replaced, beside other stored unfinished entries:
    #: the queue promotes their oldest unfinished entry after the rows are written
    promote: set[Key] = field(default_factory=set)


@dataclass
class Stored:
    """What the queue read before planning. ``open``: ordering keys with an unfinished entry;
    ``markers``: per (key, kind) the newest pending coalescing entry."""

    entries: dict[tuple[str, str], Entry]
    open: set[Key]
    markers: dict[tuple[Key, str], Marker]
    last_id: int


@dataclass(frozen=True)
class Marker:
    """A stored pending coalescing entry; ``alone``: its key's head and only unfinished entry."""

    id: int
    available_at: float
    quantity: str | None
    head: bool
    alone: bool


class _Replay:
    def __init__(self, stored: Stored, now: float, stamp: datetime):
        self.stored, self.now, self.stamp = stored, now, stamp
        self.plan = Plan(stored.last_id)
        self.open = set(stored.open)
        self.markers: dict[tuple[Key, str], Row | Marker] = dict(stored.markers)
        self.by_key: dict[tuple[str, str], Row] = {}
        self.unfinished: dict[Key, list[Row]] = {}  # the batch's open rows per key, oldest first
        self.done: dict[int, int] = {}  # stored id -> the id that superseded it in this batch

    def add(self, new: NewEntry) -> None:
        self.plan.last_id += 1  # a duplicate takes an id too (an INSERT that meets its conflict does)
        key = (new.target, new.idempotency_key)
        if key in self.by_key:
            return self.plan.out.append(self._now(self.by_key[key]))
        if key in self.stored.entries:
            return self.plan.out.append(self._stored_now(self.stored.entries[key]))
        self.plan.out.append(self._insert(new).entry)

    def _insert(self, new: NewEntry) -> Row:
        ordering = (new.target, new.item, new.location)
        replaced = self.markers.get((ordering, new.kind)) if new.coalesce else None
        available_at = max(self.now, replaced.available_at) if replaced else self.now
        row_id = self.plan.last_id
        row = Row(row_id, new, ordering not in self.open, available_at,
                  _entry(row_id, new, self.stamp, available_at, self.now))
        self.plan.rows.append(row)
        self.by_key[(new.target, new.idempotency_key)] = row
        self.open.add(ordering)
        self.unfinished.setdefault(ordering, []).append(row)
        if new.coalesce:
            self.markers[(ordering, new.kind)] = row
        if replaced is not None:
            self._supersede(replaced, row)
        return row

    def _supersede(self, replaced: Row | Marker, by: Row) -> None:
        """``replaced`` is done. If it was its key's head, the entry-by-entry path promoted the
        key's oldest unfinished entry: one of this batch (``by`` at least) when nothing stored is
        left unfinished, else the queue finds it after writing the rows (``plan.promote``)."""
        if isinstance(replaced, Marker):  # stored before the batch: the queue updates it
            self.plan.replaced.append(Replaced(replaced.id, by.id, by.new, replaced.quantity))
            self.done[replaced.id] = by.id
            if replaced.head and not replaced.alone:
                self.plan.promote.add(by.key)
            head_here = replaced.alone
        else:
            replaced.superseded_by = by.id
            self.unfinished[by.key].remove(replaced)
            head_here, replaced.head = replaced.head, False
        if head_here:
            self.unfinished[by.key][0].head = True

    def _now(self, row: Row) -> Entry:
        """A duplicate of a row of this batch: that row as it stands now."""
        if row.superseded_by is None:
            return row.entry
        return replace(row.entry, state=State.DONE, superseded_by=row.superseded_by)

    def _stored_now(self, entry: Entry) -> Entry:
        """A duplicate of a stored entry: unchanged, unless this batch replaced it."""
        if entry.id not in self.done:
            return entry
        return replace(entry, state=State.DONE, superseded_by=self.done[entry.id], updated_at=self.stamp)


def plan(entries: list[NewEntry], now: float, stamp: datetime, stored: Stored) -> Plan:
    replay = _Replay(stored, now, stamp)
    for new in entries:
        replay.add(new)
    return replay.plan



def _entry(entry_id: int, new: NewEntry, stamp: datetime, available_at: float, now: float) -> Entry:
    """What the entry-by-entry path returns for a row it just inserted: ``new_entry``, due at
    ``available_at`` when a replaced marker's backoff kept it later than now."""
    entry = new_entry(entry_id, new, stamp)
    return entry if available_at == now else replace(entry, available_at=at(available_at))
