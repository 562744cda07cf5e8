"""Running sums of unapplied quantities per (target, item, location, kind), kept by the database.

``pending_quantity`` is asked on every pull request; summing the key's rows made it cost one
row per pending decrement (20,000 pending took a real-time check from 5 ms to 40-200 ms). The
sums are kept by triggers on the entries table, so every transition (enqueue, coalescing, lease,
ack, fail, release, expiry, reclaim, replay, discard, purge, and any hand-written UPDATE) moves
them in the same transaction as the row, and a read costs one index lookup whatever the backlog.

An entry is *unapplied* while its state is pending, leased or dead (base.Queue.pending_quantity);
only entries with a quantity count. Entries never change key or quantity, only state.

SQLite stores quantities as text: the triggers add them as integer micro-units (exact integer
arithmetic parsed from the text, never a float). A quantity that does not fit (more than 6
decimals, 10**9 units or more, exponent notation) counts in ``inexact`` instead, and while a key
has one the read sums that key's rows exactly, as before. PostgreSQL adds ``numeric``: exact.
Statement-level triggers there see a whole batch at once (transition tables), so a 64-row
statement costs one upsert statement, and a lease (pending -> leased, both unapplied) none.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Collection
from decimal import Decimal
from typing import Any

UNAPPLIED = "('pending', 'leased', 'dead')"
MICRO = 1_000_000

# -- SQLite ------------------------------------------------------------------------------------

#: sign, integer part and fraction of ``{r}.quantity`` (text such as "-2.5"), for the upsert below
_PARTS = ("SELECT s, CASE WHEN d = 0 THEN a ELSE substr(a, 1, d - 1) END AS ip,"
          " CASE WHEN d = 0 THEN '' ELSE substr(a, d + 1) END AS fp FROM (SELECT s, a, instr(a, '.') AS d"
          " FROM (SELECT CASE WHEN substr({r}.quantity, 1, 1) = '-' THEN -1 ELSE 1 END AS s,"
          " CASE WHEN substr({r}.quantity, 1, 1) = '-' THEN substr({r}.quantity, 2) ELSE {r}.quantity END AS a))")
_FITS = ("ip <> '' AND ip NOT GLOB '*[^0-9]*' AND length(ip) <= 9"
         " AND fp NOT GLOB '*[^0-9]*' AND length(fp) <= 6")
#: add ``{sign}`` times the row's quantity to its key's sum
_DELTA = ("INSERT INTO pending_sums (target, item, location, kind, micro, inexact)"
          " SELECT {r}.target, {r}.item, {r}.location, {r}.kind,"
          f" CASE WHEN {_FITS} THEN {{sign}} * s * (CAST(ip AS INTEGER) * {MICRO}"
          " + CAST(substr(fp || '000000', 1, 6) AS INTEGER)) ELSE 0 END,"
          f" CASE WHEN {_FITS} THEN 0 ELSE {{sign}} END FROM ({_PARTS}) WHERE true"
          " ON CONFLICT (target, item, location, kind) DO UPDATE SET micro = micro + excluded.micro,"
          " inexact = inexact + excluded.inexact;")


def _counts(r: str) -> str:
    return f"{r}.quantity IS NOT NULL AND {r}.state IN {UNAPPLIED}"


def _whole(r: str) -> str:
    """``{r}.quantity`` is a whole number of at most 10 characters ("-3", "12"): what almost every
    stock change is, added by two casts instead of _PARTS' string surgery (about 10 % of the
    queue's batch-64 throughput, issue 15). "1.0", "-0" or "1E+3" do not cast back to themselves
    and take the exact general path."""
    return f"length({r}.quantity) <= 10 AND CAST(CAST({r}.quantity AS INTEGER) AS TEXT) = {r}.quantity"


#: add ``{sign}`` times the row's quantity to its key's sum: one trigger per transition (each
#: trigger a statement runs costs, whether or not its WHEN holds), the general path in a scalar
#: subquery that only a quantity which is not a whole number reaches
_ONE_DELTA = ("INSERT INTO pending_sums (target, item, location, kind, micro, inexact)"
              " VALUES ({r}.target, {r}.item, {r}.location, {r}.kind,"
              " CASE WHEN {whole} THEN {sign} * CAST({r}.quantity AS INTEGER) * " + str(MICRO) +
              f" ELSE (SELECT CASE WHEN {_FITS} THEN {{sign}} * s * (CAST(ip AS INTEGER) * {MICRO}"
              f" + CAST(substr(fp || '000000', 1, 6) AS INTEGER)) ELSE 0 END FROM ({_PARTS})) END,"
              " CASE WHEN {whole} THEN 0"
              f" ELSE (SELECT CASE WHEN {_FITS} THEN 0 ELSE {{sign}} END FROM ({_PARTS})) END)"
              " ON CONFLICT (target, item, location, kind) DO UPDATE SET micro = micro + excluded.micro,"
              " inexact = inexact + excluded.inexact;")


def _trigger(name: str, event: str, when: str, r: str, sign: int) -> str:
    return (f"CREATE TRIGGER IF NOT EXISTS {name} {event} WHEN {when}\n"
            f"BEGIN {_ONE_DELTA.format(r=r, sign=sign, whole=_whole(r))} END;")


SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS pending_sums (
    target TEXT NOT NULL, item TEXT NOT NULL, location TEXT NOT NULL, kind TEXT NOT NULL,
    micro INTEGER NOT NULL DEFAULT 0, inexact INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (target, item, location, kind)
) WITHOUT ROWID;
{_trigger("pending_sums_insert", "AFTER INSERT ON entries", _counts("NEW"), "NEW", 1)}
{_trigger("pending_sums_join", "AFTER UPDATE OF state ON entries",
           f"{_counts('NEW')} AND OLD.state NOT IN {UNAPPLIED}", "NEW", 1)}
{_trigger("pending_sums_leave", "AFTER UPDATE OF state ON entries",
           f"{_counts('OLD')} AND NEW.state NOT IN {UNAPPLIED}", "OLD", -1)}
{_trigger("pending_sums_delete", "AFTER DELETE ON entries", _counts("OLD"), "OLD", -1)}
-- entries delivered since a figure was read (done_since): bounded by that window
CREATE INDEX IF NOT EXISTS entries_done_quantity ON entries (target, item, location, updated_at)
    WHERE state = 'done' AND quantity IS NOT NULL AND superseded_by IS NULL;
"""


def sqlite_install(db: sqlite3.Connection) -> None:
    """Create the sums and their triggers if this file lacks them, filled from the rows, in one
    transaction (a file written before them is upgraded in place; writers wait meanwhile)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'pending_sums'").fetchone():
            for statement in _statements(SQLITE_SCHEMA):
                db.execute(statement)
            _sqlite_backfill(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _statements(script: str) -> list[str]:
    """The script's statements (a trigger body's own ';' stays inside its BEGIN ... END)."""
    out, current = [], ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            out.append(current)
            current = ""
    return out


def _sqlite_backfill(db: sqlite3.Connection) -> None:
    """Replay the insert trigger's arithmetic over the unapplied rows: the same code adds them."""
    db.execute("CREATE TEMP TABLE pending_sums_rows AS SELECT * FROM entries WHERE 0")
    db.execute(f"CREATE TEMP TRIGGER pending_sums_fill AFTER INSERT ON pending_sums_rows"
               f" BEGIN {_DELTA.format(r='NEW', sign=1)} END")
    db.execute(f"INSERT INTO pending_sums_rows SELECT * FROM entries WHERE {_counts('entries')}")
    db.execute("DROP TABLE temp.pending_sums_rows")  # its trigger goes with it


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
