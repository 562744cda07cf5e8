"""A pull app on the real service, cache, reader and SQLite queue, with an in-memory system of
record behind the reader's connector interface (unit level: no network). Integration tests use
the real runtime and HTTP fakes instead (tests/integration/test_pull_http.py)."""
from __future__ import annotations

import threading
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from erp_bridge.domain import Availability, Decrement
from erp_bridge.errors import RetryableError
from erp_bridge.http import pull
from erp_bridge.mapping.loader import load_mappings
from erp_bridge.queue.base import NewEntry, RetryPolicy
from erp_bridge.queue.sqlite import SQLiteQueue
from erp_bridge.sync.availability import AvailabilityCache, SorReader

REPO = Path(__file__).resolve().parents[3]
TOKEN = "dr_pull_token_for_tests_0123"


class MemorySoR:
    """The reader's view of a system of record: free stock per (sku, location), a restock date,
    and a switch that makes every read fail (down) or block (hang) like an unreachable server."""

    capabilities = frozenset()

    def __init__(self, name: str = "odoo"):
        self.name, self.free, self.restock = name, {}, {}
        self.reads, self.down, self.read_at = 0, False, None
        self.hang = threading.Event()
        self.hang.set()  # set = not hanging

    def read_availability(self, keys):
        self.reads += 1
        self.hang.wait(10)
        if self.down:
            raise RetryableError("odoo read_availability: cannot reach the server: connection refused")
        return {k: Availability(item=k[0], location=k[1], on_hand=self.free[k], free=self.free[k],
                                restock_at=self.restock.get(k[0]), **self._when())
                for k in keys if k in self.free}

    def _when(self) -> dict:
        return {"read_at": self.read_at} if self.read_at else {}

    def close(self):
        pass


def make_app(tmp_path: Path, mappings_dir: Path = REPO / "mappings", clock=None) -> SimpleNamespace:
    mappings = load_mappings(mappings_dir)
    queue = SQLiteQueue(tmp_path / "queue.sqlite3", RetryPolicy(max_attempts=3, base_s=1, jitter=0))
    cache = AvailabilityCache(clock) if clock else AvailabilityCache()
    sor = MemorySoR()
    reader = SorReader(mappings, {"odoo": sor}, cache, queue)
    runtime = SimpleNamespace(mappings=mappings, cache=cache, reader=reader, queue=queue,
                              settings=SimpleNamespace(secrets={"digital_river_pull_token": SecretStr(TOKEN)}))
    app = FastAPI()
    app.include_router(pull.router)
    app.state.runtime = runtime
    return SimpleNamespace(client=TestClient(app), sor=sor, queue=queue, cache=cache, runtime=runtime, app=app)


def sell(queue, sku: str, location: str, quantity: int, order: str, sor: str = "odoo") -> None:
    """A decrement received (stored durably) but not yet applied in the system of record."""
    change = Decrement(channel="shopify", order=order, line="1", item=sku, location=location,
                       quantity=Decimal(quantity))
    queue.enqueue([NewEntry(target=sor, kind="decrement", item=sku, location=location,
                            idempotency_key=change.idempotency_key, payload=change.model_dump(mode="json"),
                            quantity=change.signed_quantity)])


def form(code: str, quantity: int | None = 1, **options) -> dict:
    data = {".catalog": "teststore", ".code": code, ".id": code.lower(), ".price": "10.00"}
    if quantity is not None:
        data[".quantity"] = str(quantity)
    return {**data, **options}


def restock(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T08:00:00+00:00")
