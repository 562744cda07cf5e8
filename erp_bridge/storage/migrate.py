"""``erp-bridge db migrate``: bring the storage a URL names up to date, and say what was done."""
from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from . import POSTGRES, engine, redacted, sqlite_path


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
