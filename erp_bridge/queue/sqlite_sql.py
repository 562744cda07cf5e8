"""The SQLite queue's schema, and the statements both its parts run (sqlite.py: the queue;
sqlite_enqueue.py: its enqueue). postgres_sql.py is the same for PostgreSQL."""
from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator

#: page size of a new file (an existing one keeps its own: SQLite changes it only by VACUUM, never
#: in WAL mode). Every commit appends each page it dirtied to the WAL, and the FULL one fsyncs them:
#: a batch-1 cycle dirties about 12 pages (entries, its five indexes, the sums) for a few hundred
#: bytes of change, so 2 KiB pages write and sync half the bytes of 4 KiB ones (batch 1: about 8 %
#: more events/s; batch 64 unchanged; 1 KiB was no better at batch 1 and slower at 64, issue 15)
PAGE_SIZE = 2048

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL, kind TEXT NOT NULL, item TEXT NOT NULL, location TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, payload TEXT NOT NULL, quantity TEXT,
    coalescing INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL, head INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    leased_at REAL, lease_owner TEXT, lease_until REAL, last_error TEXT, superseded_by INTEGER,
    delivered_by TEXT, delivered_s REAL,
    UNIQUE (target, idempotency_key)
);
CREATE INDEX IF NOT EXISTS entries_open ON entries (target, item, location, id)
    WHERE state IN ('pending', 'leased');
CREATE INDEX IF NOT EXISTS entries_due ON entries (available_at)
    WHERE head = 1 AND state = 'pending';
CREATE INDEX IF NOT EXISTS entries_lease ON entries (lease_until) WHERE state = 'leased';
-- done entries by key (pending_quantity's done_since; stats and purge read the whole index:
-- with state a column, stats' count per target reads the index alone)
CREATE INDEX IF NOT EXISTS entries_done_key ON entries (target, item, location, updated_at, state)
    WHERE state = 'done';
CREATE INDEX IF NOT EXISTS entries_dead ON entries (state, target, id) WHERE state IN ('dead', 'discarded');
-- every attempt but the one that delivered: that one is the done entry's delivered_by (worker) and
-- delivered_s (duration; it started at updated_at - delivered_s), so an ack writes no attempt row
-- and no attempts_entry key (DELIVERED_ATTEMPT reads it back).
-- attempts.id: no AUTOINCREMENT (nothing refers to it; ordered per entry all the same), so an
-- attempt does not write sqlite_sequence too (a file created before keeps its AUTOINCREMENT)
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    entry_id INTEGER NOT NULL REFERENCES entries (id), number INTEGER NOT NULL,
    worker TEXT NOT NULL, outcome TEXT NOT NULL, started_at REAL NOT NULL,
    duration_s REAL NOT NULL, error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_entry ON attempts (entry_id, id);
"""


#: in-place upgrade of a file an older version created (SCHEMA adds what is new): the wide
#: (target, state) index was written by every state change, three times per delivered entry; the
#: partial entries_done_key and entries_dead answer what it served (stats, dead letters, purge).
#: Two indexes of done entries (by target; by key with a quantity) became one (entries_done_key):
#: every ack wrote both.
UPGRADE = ("DROP INDEX IF EXISTS entries_state; DROP INDEX IF EXISTS entries_done;"
           " DROP INDEX IF EXISTS entries_done_quantity;")
#: columns a file of an older version lacks (ALTER TABLE ADD COLUMN: no copy of the table); SCHEMA
#: lists them last too, so ``SELECT *`` has the same columns in the same order either way
NEW_COLUMNS = {"delivered_by": "TEXT", "delivered_s": "REAL"}

#: an entry's attempts: the attempts rows (retries, expired leases, releases, dead letters,
#: discards; a file of an older version also has its delivered attempts there), then the delivered
#: attempt its row keeps (ack, since issue 15's third round), in the order they happened
ATTEMPTS_SQL = (
    "SELECT 0 AS part, id, entry_id, number, worker, outcome, started_at, duration_s, error FROM attempts"
    " WHERE entry_id = ?1 UNION ALL SELECT 1, id, id, attempts, delivered_by, 'delivered',"
    " updated_at - delivered_s, delivered_s, NULL FROM entries WHERE id = ?1 AND delivered_by IS NOT NULL"
    " ORDER BY part, id")


def add_columns(db: sqlite3.Connection) -> None:
    """Add NEW_COLUMNS to a file an older version created (in place; a new file has them)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(entries)")}
    for name, kind in NEW_COLUMNS.items():
        if name not in have:
            db.execute(f"ALTER TABLE entries ADD COLUMN {name} {kind}")


#: depth per target and state, each part on the partial index whose predicate it repeats
STATS_SQL = (
    "SELECT target, state, count(*) AS n FROM entries WHERE state IN ('pending', 'leased') GROUP BY target, state"
    " UNION ALL SELECT target, 'done', count(*) FROM entries WHERE state = 'done' GROUP BY target"
    " UNION ALL SELECT target, state, count(*) FROM entries WHERE state IN ('dead', 'discarded')"
    " GROUP BY target, state")


def chunks(items: list, size: int) -> Iterator[list]:
    """``items`` in lists of ``size``: a statement stays under SQLite's bound-parameter limit."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


def promote_keys(db: sqlite3.Connection, keys: Collection[tuple[str, str, str]]) -> None:
    """``promote`` for many keys, in one statement per 200 of them."""
    if len(keys) == 1:  # a lone key: the simpler statement (3 us less, a batch-1 ack's case)
        promote(db, *next(iter(keys)))
        return
    for chunk in chunks(list(keys), 200):  # stay under SQLite's bound-parameter limit
        db.execute(
            "UPDATE entries SET head = 1 WHERE id IN (SELECT (SELECT min(id) FROM entries e"
            " WHERE e.target = k.column1 AND e.item = k.column2 AND e.location = k.column3"
            " AND e.state IN ('pending', 'leased')) FROM"
            f" (VALUES {', '.join(['(?, ?, ?)'] * len(chunk))}) AS k)"
            " AND NOT EXISTS (SELECT 1 FROM entries h WHERE h.target = entries.target"
            " AND h.item = entries.item AND h.location = entries.location"
            " AND h.state IN ('pending', 'leased') AND h.head = 1)",
            [v for key in chunk for v in key])


def promote(db: sqlite3.Connection, target: str, item: str, location: str) -> None:
    """Make the oldest unfinished entry of the key its head, unless the key has one."""
    db.execute(
        "UPDATE entries SET head = 1 WHERE id = (SELECT min(id) FROM entries WHERE target = ?1"
        " AND item = ?2 AND location = ?3 AND state IN ('pending', 'leased'))"
        " AND NOT EXISTS (SELECT 1 FROM entries WHERE target = ?1 AND item = ?2"
        " AND location = ?3 AND state IN ('pending', 'leased') AND head = 1)",
        (target, item, location))
