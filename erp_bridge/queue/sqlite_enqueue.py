"""The SQLite queue's enqueue (``SQLiteQueue.enqueue``), in the caller's write transaction.

Three paths, one result: a batch with markers among several entries (the intake's: a sale and an
availability refresh per webhook) is planned in Python and written in a few statements
(sqlite_batch.py); plain entries go in one executemany; a lone marker, entry by entry. Each stores
what enqueuing the entries one call at a time would (tests/unit/test_queue_sqlite_batch.py).
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from itertools import groupby

from . import sqlite_batch, sums
from .base import Entry, NewEntry
from .sqlite_rows import ENTRY_COLUMNS
from .sqlite_rows import at as _at
from .sqlite_rows import dumps as _dumps
from .sqlite_rows import entries as _entries
from .sqlite_rows import entry as _entry
from .sqlite_rows import new_entry as _new_entry
from .sqlite_sql import chunks, promote, promote_keys

#: a new non-coalescing entry: head unless its key has an unfinished entry (ON CONFLICT: duplicate)
PLAIN_INSERT = (
    "INSERT INTO entries (target, kind, item, location, idempotency_key, payload, quantity, coalescing,"
    " state, available_at, created_at, updated_at, head)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 'pending', ?8, ?8, ?8, NOT EXISTS (SELECT 1 FROM entries"
    " WHERE target = ?1 AND item = ?3 AND location = ?4 AND state IN ('pending', 'leased')))"
    " ON CONFLICT (target, idempotency_key) DO NOTHING")


def _sequence(db: sqlite3.Connection) -> int:
    """The last id AUTOINCREMENT gave: every new row's id is above it, each above the one before
    (n rows stored by n inserts and the sequence moved by n: their ids are consecutive)."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
    return row[0] if row else 0


def _add_sums(db: sqlite3.Connection, rows: list[tuple], sign: int) -> None:
    """The running sums (sums.py) of PLAIN_INSERT's argument rows: target, item, location, kind,
    quantity of each."""
    sums.sqlite_add(db, [(r[0], r[2], r[3], r[1], r[6]) for r in rows], sign)


def enqueue(db: sqlite3.Connection, entries: Sequence[NewEntry], now: float) -> list[Entry]:
    """Store ``entries`` in the caller's write transaction (``SQLiteQueue.enqueue``'s)."""
    # Markers among several entries (the intake's sales and refreshes): a few statements for
    # the whole batch (sqlite_batch.py) instead of about five per marker. Plain entries
    # only: one executemany, 10.5 against the batch path's 15.4 us per entry (64 keys).
    if len(entries) > 1 and any(new.coalesce for new in entries):
        return _enqueue_batch(db, list(entries), now)
    out: list[Entry] = []
    for coalesce, run in groupby(entries, key=lambda new: new.coalesce):
        if coalesce:  # each may replace an entry, maybe one stored just before it
            out += [_enqueue_one(db, new, now) for new in run]
        else:
            out += _enqueue_plain(db, list(run), now)
    return out


def _enqueue_batch(db: sqlite3.Connection, entries: list[NewEntry], now: float) -> list[Entry]:
    """What entry-by-entry enqueues would store, in four or five statements whatever the batch."""
    plan = sqlite_batch.plan(entries, now, _at(now), _before(db, entries))
    for chunk in chunks(plan.rows, 500):  # 15 parameters a row, under SQLite's bound
        db.execute(sqlite_batch.INSERT + ", ".join([sqlite_batch.ROW] * len(chunk)),
                   [v for row in chunk for v in sqlite_batch.values(row, now)])
    if not plan.rows or plan.rows[-1].id < plan.last_id:  # it ended with duplicates: their ids are taken
        db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'entries'", (plan.last_id,))
    for chunk in chunks(plan.replaced, 500):
        db.execute("UPDATE entries SET state = 'done', head = 0, superseded_by = v.column2, updated_at = ?"
                   f" FROM (VALUES {', '.join(['(?, ?)'] * len(chunk))}) AS v WHERE entries.id = v.column1",
                   [now, *(v for r in chunk for v in (r.id, r.by))])
    # a row superseded within the batch added and took away its quantity: neither is written
    sums.sqlite_add(db, [(r.new.target, r.new.item, r.new.location, r.new.kind,
                          sqlite_batch.text(r.new.quantity)) for r in plan.rows if r.superseded_by is None], 1)
    sums.sqlite_add(db, [(r.new.target, r.new.item, r.new.location, r.new.kind, r.quantity)
                         for r in plan.replaced], -1)
    promote_keys(db, plan.promote)
    return plan.out


def _before(db: sqlite3.Connection, entries: list[NewEntry]) -> sqlite_batch.Stored:
    """What ``sqlite_batch.plan`` needs from the file: one statement per 1,000 entries, and one
    more when some of their idempotency keys are stored already (duplicates are rare)."""
    found, stored_ids, last = [], [], 0
    for chunk in chunks(entries, 1000):  # 6 parameters an entry at most, under SQLite's bound
        pairs = list(dict.fromkeys((n.target, n.idempotency_key) for n in chunk))
        keys = list(dict.fromkeys((n.target, n.item, n.location, n.kind if n.coalesce else None) for n in chunk))
        got, ids, last = db.execute(
            sqlite_batch.KEYS_SQL.format(pairs=", ".join(["(?, ?)"] * len(pairs)), keys=", ".join(["(?, ?, ?, ?)"] * len(keys))),
            [*(v for p in pairs for v in p), *(v for k in keys for v in k)]).fetchone()
        found += json.loads(got)
        stored_ids += json.loads(ids)
    return sqlite_batch.Stored(
        entries={(e.target, e.idempotency_key): e for e in _entries_by_id(db, stored_ids)},
        open={tuple(f[:3]) for f in found if f[4]}, last_id=last,
        markers={(tuple(f[:3]), f[3]): sqlite_batch.Marker(f[5], float(f[6]), f[7], bool(f[8]), bool(f[9]))
                 for f in found if f[5] is not None})


def _entries_by_id(db: sqlite3.Connection, ids: list[int]) -> list[Entry]:
    out: list[Entry] = []
    for chunk in chunks(sorted(set(ids)), 500):
        cursor = db.cursor()
        cursor.row_factory = None  # tuples in ENTRY_COLUMNS order, for _entries
        out += _entries(cursor.execute(f"SELECT {ENTRY_COLUMNS} FROM entries WHERE id IN"
                                       f" ({', '.join('?' * len(chunk))})", chunk).fetchall())
    return out


def _enqueue_plain(db: sqlite3.Connection, run: list[NewEntry], now: float) -> list[Entry]:
    """Non-coalescing entries: one executemany; the head is decided row by row as before (each
    row's NOT EXISTS sees the rows of the run inserted before it), duplicates are skipped."""
    rows = [(n.target, n.kind, n.item, n.location, n.idempotency_key, _dumps(n.payload),
             sqlite_batch.text(n.quantity), now) for n in run]
    if len(rows) == 1:  # one statement rather than three
        got = db.execute(PLAIN_INSERT + " RETURNING id", rows[0]).fetchone()
        if got is None:
            return [_duplicate(db, run[0])]
        _add_sums(db, rows, 1)
        return [_new_entry(got[0], run[0], _at(now))]
    last = _sequence(db)
    stored = db.executemany(PLAIN_INSERT, rows).rowcount  # a duplicate is not, yet takes an id
    stamp = _at(now)
    if stored == len(rows) == _sequence(db) - last:  # all stored: ids last + 1, ... in order
        _add_sums(db, rows, 1)
        return [_new_entry(last + i, n, stamp) for i, n in enumerate(run, 1)]
    # some were duplicates; ids only grow and the write lock is ours: above ``last`` is new
    ids = {(r[1], r[2]): r[0] for r in db.execute(
        "SELECT id, target, idempotency_key FROM entries WHERE id > ?", (last,))}
    out, seen, new = [], set(), []
    for n, row in zip(run, rows):
        key = (n.target, n.idempotency_key)
        entry_id = ids.get(key) if key not in seen else None
        seen.add(key)
        out.append(_duplicate(db, n) if entry_id is None else _new_entry(entry_id, n, stamp))
        new += [] if entry_id is None else [row]
    _add_sums(db, new, 1)
    return out


def _duplicate(db: sqlite3.Connection, new: NewEntry) -> Entry:
    """The stored entry, unchanged (its own payload)."""
    return _entry(db.execute("SELECT * FROM entries WHERE target = ? AND idempotency_key = ?",
                             (new.target, new.idempotency_key)).fetchone())


def _enqueue_one(db: sqlite3.Connection, new: NewEntry, now: float) -> Entry:
    replaced = _coalescable(db, new) if new.coalesce else None
    # a replacement keeps the older entry's backoff: a newer marker must not dodge Retry-After
    available_at = max(now, replaced["available_at"]) if replaced else now
    row = db.execute(
        "INSERT INTO entries (target, kind, item, location, idempotency_key, payload, quantity,"
        " coalescing, state, available_at, created_at, updated_at, head)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?10, ?10, NOT EXISTS (SELECT 1"
        " FROM entries WHERE target = ?1 AND item = ?3 AND location = ?4"
        " AND state IN ('pending', 'leased'))) ON CONFLICT (target, idempotency_key) DO NOTHING"
        " RETURNING *",
        (new.target, new.kind, new.item, new.location, new.idempotency_key,
         _dumps(new.payload), sqlite_batch.text(new.quantity),
         int(new.coalesce), available_at, now)).fetchone()
    if row is None:  # a duplicate
        return _duplicate(db, new)
    sums.sqlite_add(db, [(new.target, new.item, new.location, new.kind, row["quantity"])], 1)
    if replaced:
        db.execute("UPDATE entries SET state = 'done', head = 0, superseded_by = ?, updated_at = ?"
                   " WHERE id = ?", (row["id"], now, replaced["id"]))
        sums.sqlite_add(db, [(new.target, new.item, new.location, new.kind, replaced["quantity"])], -1)
        promote(db, new.target, new.item, new.location)  # head is not in an Entry: no re-read
    return _entry(row, new.payload)  # just stored from this dict: no need to parse it back


def _coalescable(db: sqlite3.Connection, new: NewEntry) -> sqlite3.Row | None:
    # ``state IN (...)`` repeats entries_open's predicate so SQLite uses that partial index (the
    # key's few open entries); without it the lookup walked every entry of the target, done
    # ones too, once per webhook (intake fell from 1,025 to 410/s, scripts/bench_webhooks.py)
    return db.execute(
        "SELECT id, available_at, quantity FROM entries WHERE target = ? AND item = ? AND location = ?"
        " AND state IN ('pending', 'leased') AND state = 'pending' AND kind = ? AND coalescing = 1"
        " ORDER BY id DESC LIMIT 1",
        (new.target, new.item, new.location, new.kind)).fetchone()
