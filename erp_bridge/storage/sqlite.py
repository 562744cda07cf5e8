"""Opening one of the bridge's SQLite files, which more than one process may open at once (the
service and an ``erp-bridge`` command such as ``reconcile`` or ``retry``)."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

#: how long to wait between two tries of the switch to WAL while another process holds the file
_PAUSE_S = 0.005


def connect(path: str | Path, timeout_s: float = 30.0, *, before_wal: tuple[str, ...] = ()) -> sqlite3.Connection:
    """An autocommit connection to ``path`` (shared by threads behind the caller's own lock), in
    WAL mode.

    ``PRAGMA journal_mode=WAL`` may answer "database is locked" at once, without waiting out the
    busy timeout: SQLite does not call its busy handler when waiting could deadlock, which is the
    case while another connection is creating the same new file or switching it to WAL too. Two
    processes starting together on a new file hit it (measured: about one start in five with six
    processes). The switch is tried again until ``timeout_s``, the same bound every other
    statement waits for a lock; once the file is in WAL the pragma only reads its mode.

    ``before_wal`` are pragmas that must come first (``page_size``, which WAL fixes once written).
    """
    db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    try:
        for pragma in before_wal:
            db.execute(f"PRAGMA {pragma}")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                return db
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(_PAUSE_S)
    except BaseException:
        db.close()
        raise
