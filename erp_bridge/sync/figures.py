"""The figure last pushed to each channel key, so an unchanged figure is not pushed again.

A small SQLite file in the data directory (durable: after a restart the bridge still knows what
each channel shows). Losing it costs one redundant push per key, never a wrong figure.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from decimal import Decimal
from pathlib import Path


class FigureStore:
    def __init__(self, path: Path | str):
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS pushed (target TEXT, item TEXT, location TEXT, "
                             "quantity TEXT NOT NULL, pushed_at REAL NOT NULL, PRIMARY KEY (target, item, location))")

    def get(self, target: str, item: str, location: str) -> Decimal | None:
        with self._lock:
            row = self._db.execute("SELECT quantity FROM pushed WHERE target=? AND item=? AND location=?",
                                   (target, item, location)).fetchone()
        return None if row is None else Decimal(row[0])

    def put(self, target: str, item: str, location: str, quantity: Decimal) -> None:
        with self._lock:
            self._db.execute("INSERT INTO pushed VALUES (?, ?, ?, ?, ?) ON CONFLICT (target, item, location) "
                             "DO UPDATE SET quantity=excluded.quantity, pushed_at=excluded.pushed_at",
                             (target, item, location, str(quantity), time.time()))

    def items(self, target: str) -> list[tuple[str, str]]:
        """Every (item, channel location code) a figure was pushed to for ``target``."""
        with self._lock:
            return [(r[0], r[1]) for r in self._db.execute(
                "SELECT item, location FROM pushed WHERE target=? ORDER BY item, location", (target,))]

    def forget(self, target: str, item: str, location: str) -> None:
        """The channel does not show what was pushed (reconciliation): the next figure is pushed."""
        with self._lock:
            self._db.execute("DELETE FROM pushed WHERE target=? AND item=? AND location=?", (target, item, location))

    def close(self) -> None:
        with self._lock:
            self._db.close()
