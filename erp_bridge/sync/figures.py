"""The figure last pushed to each channel key, so an unchanged figure is not pushed again.

Kept in the queue's storage (one URL for everything durable): a table in the SQLite queue's file,
or in the PostgreSQL database every process and host shares, so a host that did not push a figure
still knows what the channel shows. Losing it costs one redundant push per key, never a wrong
figure (per key, one delivery is in flight at a time across all hosts: the queue's rule).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from ..storage import POSTGRES, engine, sqlite_path
from ..storage import postgres as pg
from ..storage import sqlite as sqlite_store

UPSERT = ("INSERT INTO {table} (target, item, location, quantity, pushed_at) VALUES ({marks})"
          " ON CONFLICT (target, item, location) DO UPDATE SET quantity = excluded.quantity,"
          " pushed_at = excluded.pushed_at")


class FigureStore:
    """``storage``: the queue's storage URL (``sqlite:///...`` or ``postgresql://...``), or a
    path to a SQLite file of its own."""

    def __init__(self, storage: Path | str, clock: Callable[[], float] = time.time):
        self._clock = clock
        url = str(storage) if "://" in str(storage) else f"sqlite:///{storage}"
        self._impl: _SQLiteFigures | _PgFigures = _PgFigures(url) if engine(url) == POSTGRES \
            else _SQLiteFigures(sqlite_path(url))

    def get(self, target: str, item: str, location: str) -> Decimal | None:
        return self._impl.get(target, item, location)

    def put(self, target: str, item: str, location: str, quantity: Decimal) -> None:
        self._impl.put(target, item, location, quantity, self._clock())

    def items(self, target: str) -> list[tuple[str, str]]:
        """Every (item, channel location code) a figure was pushed to for ``target``."""
        return self._impl.items(target)

    def forget(self, target: str, item: str, location: str) -> None:
        """The channel does not show what was pushed (reconciliation): the next figure is pushed."""
        self._impl.forget(target, item, location)

    def close(self) -> None:
        self._impl.close()


class _SQLiteFigures:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite_store.connect(path)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS pushed (target TEXT, item TEXT, location TEXT, "
                             "quantity TEXT NOT NULL, pushed_at REAL NOT NULL, PRIMARY KEY (target, item, location))")

    def get(self, target: str, item: str, location: str) -> Decimal | None:
        with self._lock:
            row = self._db.execute("SELECT quantity FROM pushed WHERE target=? AND item=? AND location=?",
                                   (target, item, location)).fetchone()
        return None if row is None else Decimal(row[0])

    def put(self, target: str, item: str, location: str, quantity: Decimal, now: float) -> None:
        with self._lock:
            self._db.execute(UPSERT.format(table="pushed", marks="?, ?, ?, ?, ?"),
                             (target, item, location, str(quantity), now))

    def items(self, target: str) -> list[tuple[str, str]]:
        with self._lock:
            return [(r[0], r[1]) for r in self._db.execute(
                "SELECT item, location FROM pushed WHERE target=? ORDER BY item, location", (target,))]

    def forget(self, target: str, item: str, location: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM pushed WHERE target=? AND item=? AND location=?", (target, item, location))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _PgFigures:
    def __init__(self, url: str):
        self._url, self._pool = url, pg.acquire(url)

    def get(self, target: str, item: str, location: str) -> Decimal | None:
        with pg.reading(self._pool) as conn:
            row = conn.execute("SELECT quantity FROM bridge_pushed WHERE target = %s AND item = %s"
                               " AND location = %s", (target, item, location)).fetchone()
        return None if row is None else Decimal(row["quantity"])

    def put(self, target: str, item: str, location: str, quantity: Decimal, now: float) -> None:
        pg.run(self._pool, lambda conn: conn.execute(UPSERT.format(table="bridge_pushed", marks="%s, %s, %s, %s, %s"),
                                                     (target, item, location, quantity, now)))

    def items(self, target: str) -> list[tuple[str, str]]:
        with pg.reading(self._pool) as conn:
            rows = conn.execute("SELECT item, location FROM bridge_pushed WHERE target = %s ORDER BY item, location",
                                (target,)).fetchall()
        return [(r["item"], r["location"]) for r in rows]

    def forget(self, target: str, item: str, location: str) -> None:
        pg.run(self._pool, lambda conn: conn.execute(
            "DELETE FROM bridge_pushed WHERE target = %s AND item = %s AND location = %s", (target, item, location)))

    def close(self) -> None:
        pg.release(self._url)
