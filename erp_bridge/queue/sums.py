"""Running sums of unapplied quantities per (target, item, location, kind).

``pending_quantity`` is asked on every pull request; summing the key's rows made it cost one
row per pending decrement (20,000 pending took a real-time check from 5 ms to 40-200 ms). The
sums move in the same transaction as the rows, so a read costs one index lookup whatever the
backlog.

An entry is *unapplied* while its state is pending, leased or dead (base.Queue.pending_quantity);
only entries with a quantity count. Entries never change key or quantity, only state, and of the
state changes only four move a sum: an entry stored (+), delivered (ack: -), superseded by a
coalescing entry (-) and discarded (-). Lease, release, retry, dead-lettering, replay and purge
(done entries only) move between unapplied states or among applied ones.

SQLite: the queue's own statements keep them (sqlite.py calls ``sqlite_add`` at those four
places), summed per key in Python, one upsert per key: the row triggers that kept them before
ran on every lease too and cost about 40 % of the queue's batch-64 throughput (issue 15). A
hand-written UPDATE of the entries table no longer moves them (it never was a supported way to
change the queue: use the CLI). Quantities are stored as text and added as integer micro-units
(exact); one that does not fit (more than 6 decimals, 10**9 units or more, exponent notation)
counts in ``inexact`` instead, and while a key has one the read sums that key's rows exactly.
PostgreSQL adds ``numeric`` (exact) with statement-level triggers: they see a whole batch at
once (transition tables), so a 64-row statement costs one upsert statement, and a lease
(pending -> leased, both unapplied) none.
"""
from __future__ import annotations

import re
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from functools import lru_cache
from typing import Any

UNAPPLIED = "('pending', 'leased', 'dead')"
MICRO = 1_000_000


def _counts(r: str) -> str:
    return f"{r}.quantity IS NOT NULL AND {r}.state IN {UNAPPLIED}"

# -- SQLite ------------------------------------------------------------------------------------

_WHOLE = re.compile(r"-?[0-9]{1,10}")
_FITS = re.compile(r"(-?)([0-9]{1,9})(?:\.([0-9]{0,6}))?")


@lru_cache(maxsize=4096)  # a few quantities ("-1", "1", "-2") are nearly all of them
def micro(quantity: str) -> int | None:
    """``quantity`` (the column's text, e.g. "-2.5") in micro-units, None if it does not fit (more
    than 6 decimals, 10**9 units or more, exponent notation: it counts in ``inexact``). The rules
    of the triggers that kept the sums before (a file they filled is continued exactly): a whole
    number of at most 10 characters that reads back as itself, else sign, at most 9 digits, an
    optional point and at most 6 decimals."""
    if len(quantity) <= 10 and _WHOLE.fullmatch(quantity) and str(int(quantity)) == quantity:
        return int(quantity) * MICRO
    fits = _FITS.fullmatch(quantity)
    if fits is None:
        return None
    value = int(fits[2]) * MICRO + int((fits[3] or "").ljust(6, "0"))
    return -value if fits[1] else value


#: add to one key's sum (the statement the queue runs, once per key a transaction moves)
_ADD = ("INSERT INTO pending_sums (target, item, location, kind, micro, inexact) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (target, item, location, kind) DO UPDATE SET micro = micro + excluded.micro,"
        " inexact = inexact + excluded.inexact")
_INT64 = 2 ** 63


def sqlite_add(db: sqlite3.Connection, rows: Iterable[Sequence[Any]], sign: int) -> None:
    """Add ``sign`` times each row's quantity to its key's sum: rows of (target, item, location,
    kind, quantity text or None), summed per key here, one upsert per key (a batch of 64 entries
    of one key costs one statement). The queue calls it in the transaction that moves the rows."""
    groups: dict[tuple, list[int]] = {}
    spill = []  # a key whose sum would not bind as a 64-bit integer: its rows one by one
    for target, item, location, kind, quantity in rows:
        if quantity is None:
            continue
        got = groups.setdefault((target, item, location, kind), [0, 0])
        value = micro(quantity)
        if value is None:
            got[1] += sign
        elif -_INT64 < got[0] + sign * value < _INT64:
            got[0] += sign * value
        else:  # what is summed so far goes on its own; SQLite's sum then turns real: read exactly
            spill.append((target, item, location, kind, got[0], 0))
            got[0] = sign * value
    if groups or spill:  # entries without a quantity (availability markers) add nothing
        db.executemany(_ADD, [(*key, m, n) for key, (m, n) in groups.items()] + spill)


#: the triggers that kept the sums before the queue's own statements did (dropped on upgrade)
_OLD_TRIGGERS = ("pending_sums_insert", "pending_sums_join", "pending_sums_leave", "pending_sums_delete")

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending_sums (
    target TEXT NOT NULL, item TEXT NOT NULL, location TEXT NOT NULL, kind TEXT NOT NULL,
    micro INTEGER NOT NULL DEFAULT 0, inexact INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (target, item, location, kind)
) WITHOUT ROWID;
"""


#: the unapplied entries with a quantity, read through the open and dead entries' partial indexes
#: (their predicates spelt as the indexes have them), not the done history
_UNAPPLIED_ROWS = ("SELECT target, item, location, kind, quantity FROM entries WHERE state IN ('pending', 'leased')"
                   " AND quantity IS NOT NULL UNION ALL SELECT target, item, location, kind, quantity FROM entries"
                   " WHERE state IN ('dead', 'discarded') AND state = 'dead' AND quantity IS NOT NULL")


def sqlite_install(db: sqlite3.Connection) -> int:
    """Create the sums if this file lacks them, filled from the rows, and drop the triggers an
    earlier version kept them with (its sums are right: they continue), in one transaction (a
    file written before is upgraded in place; writers wait meanwhile).

    Sums the file already has are checked against a recount of its unapplied entries, and rebuilt
    if they differ: a process of an older version writing to the file while this one ran (its
    triggers and these statements both counting), or a hand-written change to the entries, would
    otherwise leave pull answers wrong for good. The check reads a snapshot (WAL: writers go on
    meanwhile); only a rebuild takes the write lock. Returns how many keys were wrong."""
    with _immediate(db):
        created = not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'pending_sums'").fetchone()
        if created:
            for statement in filter(str.strip, SQLITE_SCHEMA.split(";")):
                db.execute(statement)
            sqlite_add(db, db.execute(_UNAPPLIED_ROWS), 1)
        for name in _OLD_TRIGGERS:
            db.execute(f"DROP TRIGGER IF EXISTS {name}")
    if created:
        return 0
    db.execute("BEGIN")  # deferred: one read snapshot of the entries and the sums together
    try:
        wrong = _sqlite_wrong_keys(db)
    finally:
        db.execute("COMMIT")
    if wrong:
        with _immediate(db):
            if _sqlite_wrong_keys(db):  # still, under the write lock
                db.execute("DELETE FROM pending_sums")
                sqlite_add(db, db.execute(_UNAPPLIED_ROWS), 1)
    return wrong


@contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _sqlite_wrong_keys(db: sqlite3.Connection) -> int:
    """Keys whose stored (micro, inexact) differ from a recount. A key summed past 64 bits (its
    stored sum turned real; the read sums its rows exactly) is not compared."""
    counted: dict[tuple, list[int]] = {}
    for *key, quantity in db.execute(_UNAPPLIED_ROWS):
        got = counted.setdefault(tuple(key), [0, 0])
        value = micro(quantity)
        if value is None:
            got[1] += 1
        else:
            got[0] += value
    stored = {tuple(r[:4]): (r[4], r[5]) for r in db.execute(
        "SELECT target, item, location, kind, micro, inexact FROM pending_sums")}
    wrong = 0
    for key in counted.keys() | stored.keys():
        want, have = tuple(counted.get(key, (0, 0))), stored.get(key, (0, 0))
        if isinstance(have[0], float) or not -_INT64 < want[0] < _INT64:
            continue
        wrong += want != have
    return wrong


def sqlite_pending(db: sqlite3.Connection, key: tuple[str, str, str], kinds: Collection[str] | None,
                   done_since: float | None) -> Decimal:
    """``Queue.pending_quantity`` on SQLite: one statement (one snapshot) over the key's sums and
    its entries done since ``done_since``."""
    only, kind_args = _kinds(kinds)
    row = db.execute(
        f"SELECT (SELECT sum(micro) FROM pending_sums WHERE target = ?1 AND item = ?2 AND location = ?3{only})"
        f" AS micro, (SELECT count(*) FROM pending_sums WHERE target = ?1 AND item = ?2 AND location = ?3{only}"
        " AND (inexact <> 0 OR typeof(micro) <> 'integer')) AS inexact, (SELECT group_concat(quantity, ' ')"
        " FROM entries WHERE target = ?1 AND item = ?2 AND location = ?3 AND state = 'done'"
        f" AND quantity IS NOT NULL AND superseded_by IS NULL AND updated_at >= ?4{only}) AS done",
        (*key, done_since, *kind_args)).fetchone()
    if row[1]:  # a quantity that does not fit micro-units (or a sum past 2**63): the rows, exactly
        return _sqlite_rows(db, key, kinds, done_since)
    done = sum((Decimal(q) for q in (row[2] or "").split()), Decimal(0))
    return Decimal(row[0] or 0) / MICRO + done


def _kinds(kinds: Collection[str] | None) -> tuple[str, list[str]]:
    if kinds is None:
        return "", []
    kinds = sorted(kinds)  # numbered from ?5: the same parameters serve each place they appear
    return f" AND kind IN ({', '.join(f'?{5 + n}' for n in range(len(kinds)))})", kinds


def _sqlite_rows(db: sqlite3.Connection, key: tuple[str, str, str], kinds: Collection[str] | None,
                 done_since: float | None) -> Decimal:
    rows = db.execute("SELECT kind, quantity FROM entries WHERE target = ?1 AND item = ?2 AND location = ?3"
                      f" AND quantity IS NOT NULL AND (state IN {UNAPPLIED} OR (?4 IS NOT NULL"
                      " AND state = 'done' AND superseded_by IS NULL AND updated_at >= ?4))",
                      (*key, done_since)).fetchall()
    return sum((Decimal(r[1]) for r in rows if kinds is None or r[0] in kinds), Decimal(0))


# -- PostgreSQL --------------------------------------------------------------------------------

#: migration 5: sums kept by statement-level triggers; ``{old}``/``{new}``: the contributions of
#: the statement's transition tables (a lease moves pending -> leased: they cancel, no write)
_PG_DELTA = ("INSERT INTO bridge_pending_sums AS s (target, item, location, kind, quantity)"
             " SELECT target, item, location, kind, sum(q) FROM ({parts}) d GROUP BY 1, 2, 3, 4"
             " HAVING sum(q) <> 0 ORDER BY 1, 2, 3, 4"  # sorted: concurrent upserts lock in one order
             " ON CONFLICT (target, item, location, kind) DO UPDATE SET quantity = s.quantity + excluded.quantity;")
_PG_NEW = f"SELECT target, item, location, kind, quantity AS q FROM new_rows WHERE {_counts('new_rows')}"
_PG_OLD = f"SELECT target, item, location, kind, -quantity AS q FROM old_rows WHERE {_counts('old_rows')}"


#: an UPDATE moves a sum only if a row left or joined the unapplied states: most do neither (a
#: lease, a head promoted, an attempt counted), and this test is cheaper than the upsert's plan
_PG_MOVED = (f"IF NOT EXISTS (SELECT 1 FROM new_rows WHERE quantity IS NOT NULL AND state NOT IN {UNAPPLIED})"
             f" AND NOT EXISTS (SELECT 1 FROM old_rows WHERE quantity IS NOT NULL AND state NOT IN {UNAPPLIED})"
             " THEN RETURN NULL; END IF; ")


def _pg_function(name: str, parts: str, guard: str = "") -> str:
    return (f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {guard}"
            f"{_PG_DELTA.format(parts=parts)} RETURN NULL; END $$;\n")


PG_MIGRATION = (
    """
CREATE TABLE bridge_pending_sums (
    target text NOT NULL, item text NOT NULL, location text NOT NULL, kind text NOT NULL,
    quantity numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (target, item, location, kind)
) WITH (fillfactor = 70);  -- room for HOT updates: a busy key's row is rewritten on every change
"""
    + _pg_function("bridge_pending_sums_insert", _PG_NEW)
    + _pg_function("bridge_pending_sums_update", f"{_PG_NEW} UNION ALL {_PG_OLD}", _PG_MOVED)
    + _pg_function("bridge_pending_sums_delete", _PG_OLD)
    + """
CREATE TRIGGER bridge_pending_sums_insert AFTER INSERT ON bridge_entries REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bridge_pending_sums_insert();
CREATE TRIGGER bridge_pending_sums_update AFTER UPDATE ON bridge_entries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bridge_pending_sums_update();
CREATE TRIGGER bridge_pending_sums_delete AFTER DELETE ON bridge_entries REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bridge_pending_sums_delete();
"""
    + f"""
INSERT INTO bridge_pending_sums (target, item, location, kind, quantity)
    SELECT target, item, location, kind, sum(quantity) FROM bridge_entries
    WHERE {_counts('bridge_entries')} GROUP BY 1, 2, 3, 4;
""")

#: ``Queue.pending_quantity`` on PostgreSQL: one statement, so one snapshot of sums and done rows
PG_PENDING = (
    "SELECT (SELECT coalesce(sum(quantity), 0) FROM bridge_pending_sums WHERE target = %(t)s AND item = %(i)s"
    " AND location = %(l)s AND (%(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s)))"
    " + (SELECT coalesce(sum(quantity), 0) FROM bridge_entries WHERE %(since)s::float8 IS NOT NULL"
    " AND target = %(t)s AND item = %(i)s AND location = %(l)s AND state = 'done' AND quantity IS NOT NULL"
    " AND superseded_by IS NULL AND updated_at >= %(since)s"
    " AND (%(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s))) AS q")


def pg_args(key: tuple[str, str, str], kinds: Collection[str] | None, done_since: float | None) -> dict[str, Any]:
    return {"t": key[0], "i": key[1], "l": key[2], "kinds": None if kinds is None else sorted(kinds),
            "since": done_since}
