"""``erp-bridge db migrate``: bring the storage a URL names up to date, and say what was done;
with ``--inbox-from``, carry the channel inboxes of a SQLite queue over into PostgreSQL."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import psycopg
from psycopg.rows import dict_row

from ..errors import ConfigError
from . import POSTGRES, SQLITE, engine, redacted, sqlite_path

#: SQLite inbox table -> (PostgreSQL table, columns): the same columns on both engines
INBOX_TABLES = {
    "inbox_references": ("bridge_inbox_references",
                         "system, ref, payload, received_at, attempts, next_at, last_error, done_at"),
    "inbox_keys": ("bridge_inbox_keys", "system, kind, key, created_at"),
    "inbox_cursors": ("bridge_inbox_cursors", "system, name, value"),
}
CHUNK = 5000


def migrate_storage(url: str) -> str:
    if engine(url) != POSTGRES:
        return _sqlite(url)
    from .postgres import StorageUnavailable, _why, migrate, versions

    try:
        with psycopg.connect(url, row_factory=dict_row, connect_timeout=10) as conn:
            applied = migrate(conn)
            current = versions(conn)
    except psycopg.OperationalError as exc:
        raise StorageUnavailable(_why(url, exc)) from None
    done = f"applied {', '.join(map(str, applied))}" if applied else "nothing to apply"
    return f"storage {redacted(url)}: {done}; schema version {max(current)} (migrations {current})"


def _sqlite(url: str) -> str:
    """SQLite creates its tables when opened: opening each store once is its migration."""
    from ..connectors.runtime.inbox import Inbox
    from ..connectors.runtime.ledger import Ledger
    from ..queue.sqlite import SQLiteQueue
    from ..sync.figures import FigureStore

    path = sqlite_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    for store in (SQLiteQueue(path), Ledger(url, "-"), FigureStore(url), Inbox(url, "-")):
        store.close()
    return f"storage {url}: queue, figure, ledger and inbox tables present"


def carry_inboxes(source: str, target: str) -> str:
    """Copy every channel inbox row of the SQLite queue ``source`` into the PostgreSQL ``target``
    (run after ``migrate_storage(target)``), so that moving to PostgreSQL neither misses nor
    double-counts a sale: pollers go on from their cursors (Square's history since the old host's
    last pass), seen ids and counted keys still hold (a WooCommerce or BigCommerce status update
    that repeats an order counted before the move counts nothing), and references not yet
    resolved are resolved. Rows already in ``target`` are kept: running it again copies nothing."""
    if engine(source) != SQLITE or engine(target) != POSTGRES:
        raise ConfigError(f"--inbox-from {redacted(source)}: copies the inboxes of a SQLite queue "
                          f"(sqlite:///<path>) into a PostgreSQL queue.url, not into {redacted(target)}")
    path = sqlite_path(source)
    if not path.is_file():
        raise ConfigError(f"--inbox-from {source}: no such file {path} (the old host's queue file)")
    copied = []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as old, psycopg.connect(target, connect_timeout=10) as new:
        for table, (into, columns) in INBOX_TABLES.items():
            count = sum(_insert(new, into, columns, rows) for rows in _chunks(old, table, columns))
            copied.append(f"{count} {table.removeprefix('inbox_')}")
    return f"inboxes of {source} -> {redacted(target)}: copied {', '.join(copied)} (rows already there kept)"


def _chunks(old: sqlite3.Connection, table: str, columns: str) -> Iterator[list[tuple]]:
    if not old.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone():
        return  # the old queue never had a channel with an inbox
    cursor = old.execute(f"SELECT {columns} FROM {table}")
    while rows := cursor.fetchmany(CHUNK):
        yield rows


def _insert(new: psycopg.Connection, into: str, columns: str, rows: list[tuple]) -> int:
    marks = ", ".join(["%s"] * len(columns.split(",")))
    with new.transaction(), new.cursor() as cur:  # one chunk a transaction: an interrupted copy is run again
        cur.executemany(f"INSERT INTO {into} ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING", rows)
        return max(cur.rowcount, 0)
