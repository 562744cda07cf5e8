"""A fake Square Inventory API: a real HTTP server on 127.0.0.1 (a free port, in a thread).

Behaves like the documented API (../shared/specs/square/api.json, vendor-apis.md §7):
- Bearer token required (401 ``UNAUTHORIZED`` in Square's ``errors`` envelope otherwise);
- every request body is validated against the spec (tests/fakes/square_spec.py): a violation is
  answered 400 ``INVALID_REQUEST_ERROR`` and recorded, so a test can assert there were none;
- BatchChangeInventory is atomic (an unknown variation refuses the whole batch, naming the
  field), idempotent (the same key and body answer the first response again, applying nothing;
  the same key with another body is ``IDEMPOTENCY_KEY_REUSED``), and records each change in the
  history with its own id; physical counts apply in ``occurred_at`` order, as Square does;
- BatchRetrieveInventoryCounts / BatchRetrieveInventoryChanges with ``limit`` + ``cursor`` pages;
- scripted faults: any status with headers and body (429 ``RATE_LIMITED``, 5xx), a hang past the
  client's timeout, or a lost answer (applied, then the connection is cut).
Till activity (sales, returns, recounts) is made with ``sell``/``restock``/``recount``, each of
which returns the signed ``inventory.count.updated`` notification Square would send.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes import square_spec

TOKEN = "EAAAl-square-token-7f3a9c"
SIGNATURE_KEY = "Ibxx_5AKakO-webhook-key"
LOCATION = "L8GQ5K3W1XJ9Z"
VARIATIONS = {"chair-blue": "W62UWFY35CWMYGVWK6TWJDNI", "chair-red": "AII5UGDRBKNXKJ4ZXGDXBRRF"}
Key = tuple[str, str]


@dataclass(frozen=True)
class Fault:
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0  # hold the request this long before answering (past the client's timeout)
    lost: bool = False  # apply the request, then cut the connection: the answer is lost
    path: str | None = None  # only requests to this path


def error(category: str, code: str, detail: str, field_name: str | None = None) -> dict:
    one = {"category": category, "code": code, "detail": detail}
    if field_name:
        one["field"] = field_name
    return {"errors": [one]}


CREATE_PATH = "/v2/inventory/changes/batch-create"
RATE_LIMITED = Fault(429, error("RATE_LIMIT_ERROR", "RATE_LIMITED", "Rate limit exceeded."))


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeSquare:
    def __init__(self, token: str = TOKEN, signature_key: str = SIGNATURE_KEY):
        self.token, self.signature_key = token, signature_key
        self.counts: dict[Key, Decimal] = {}
        self.history: list[dict] = []  # InventoryChange objects, oldest first
        self.received: list[tuple[str, Any]] = []
        self.answered: list[tuple[str, Any]] = []  # (path, body) of every 200 answer
        self.violations: list[str] = []
        self._faults: list[Fault] = []
        self._keys: dict[str, tuple[str, Any]] = {}
        self._last_count_at: dict[Key, str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._release = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeSquare:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._release.set()
        self._server.cut_all()
        self._server.shutdown()
        self._server.server_close()

    # -- scenario helpers ------------------------------------------------------------------------

    def stock(self, sku: str, quantity: Any, location: str = LOCATION) -> None:
        with self._lock:
            self.counts[(VARIATIONS.get(sku, sku), location)] = Decimal(str(quantity))

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def sell(self, sku: str, quantity: Any, transaction_id: str, location: str = LOCATION) -> bytes:
        return self._adjust(sku, location, quantity, "IN_STOCK", "SOLD", transaction_id=transaction_id)

    def restock(self, sku: str, quantity: Any, refund_id: str, source: str = "SOLD", location: str = LOCATION) -> bytes:
        return self._adjust(sku, location, quantity, source, "IN_STOCK", refund_id=refund_id)

    def waste(self, sku: str, quantity: Any, location: str = LOCATION) -> bytes:
        return self._adjust(sku, location, quantity, "IN_STOCK", "WASTE")

    def recount(self, sku: str, quantity: Any, location: str = LOCATION) -> bytes:
        key = (VARIATIONS.get(sku, sku), location)
        now = rfc3339(datetime.now(UTC))
        with self._lock:
            self.counts[key] = Decimal(str(quantity))
            self._record("PHYSICAL_COUNT", {"catalog_object_id": key[0], "location_id": location, "state": "IN_STOCK",
                                            "quantity": str(quantity), "occurred_at": now,
                                            "source": {"product": "SQUARE_POS", "name": "Square POS 6.1 for iOS"}})
        return self.notification([key])

    def changes(self, kind: str | None = None) -> list[dict]:
        with self._lock:
            return [c for c in self.history if kind is None or c["type"] == kind]

    def notification(self, keys: list[Key], kind: str = "inventory.count.updated",
                     created_at: datetime | None = None, event_id: str | None = None) -> bytes:
        """The body Square posts; a state change names both states of one key (the before/after pair)."""
        created = rfc3339(created_at or datetime.now(UTC))
        counts = [{"catalog_object_id": k[0], "catalog_object_type": "ITEM_VARIATION", "state": state,
                   "location_id": k[1], "quantity": str(self.counts.get(k, 0)), "calculated_at": created}
                  for k in keys for state in ("IN_STOCK", "SOLD")]
        event = {"merchant_id": "MLEFBHHSJGVHD", "type": kind, "event_id": event_id or f"evt-{next(self._ids)}",
                 "created_at": created, "data": {"type": "inventory_counts", "id": f"obj-{next(self._ids)}",
                                                 "object": {"inventory_counts": counts}}}
        return json.dumps(event).encode()

    def sign(self, url: str, body: bytes) -> str:
        digest = hmac.new(self.signature_key.encode(), url.encode() + body, hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    # -- the API ---------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict, Any, bool]:
        with self._lock:
            self.received.append((path, body))
            if headers.get("authorization") != f"Bearer {self.token}":
                refused = error("AUTHENTICATION_ERROR", "UNAUTHORIZED", "This request could not be authorized.")
                return 401, {}, refused, False
            fault = self._fault(path)
        if fault is not None and fault.hang_s:
            self._release.wait(fault.hang_s)
        if fault is not None and not fault.lost:
            return fault.status, fault.headers, fault.body, False
        with self._lock:
            status, out = self._serve(method, path, body)
            if status == 200:
                self.answered.append((path, out))
        return status, {}, out, bool(fault and fault.lost)

    def _fault(self, path: str) -> Fault | None:
        for n, fault in enumerate(self._faults):
            if fault.path is None or fault.path == path:
                return self._faults.pop(n)
        return None

    def _serve(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        broken = square_spec.violations(method, path, body)
        if broken:
            self.violations += [f"{path}: {v}" for v in broken]
            return 400, error("INVALID_REQUEST_ERROR", "BAD_REQUEST", "; ".join(broken))
        if path == "/v2/inventory/changes/batch-create":
            return self._batch_change(body)
        if path == "/v2/inventory/counts/batch-retrieve":
            return 200, self._page("counts", self._count_rows(body), body)
        return 200, self._page("changes", self._change_rows(body), body)

    def _batch_change(self, body: dict) -> tuple[int, Any]:
        text = json.dumps(body, sort_keys=True)
        known = self._keys.get(body["idempotency_key"])
        if known is not None:
            if known[0] != text:
                return 400, error("INVALID_REQUEST_ERROR", "IDEMPOTENCY_KEY_REUSED",
                                  "The idempotency key was used before with a different request.", "idempotency_key")
            return 200, known[1]
        for n, change in enumerate(body.get("changes") or []):
            count = change["physical_count"]
            if (count["catalog_object_id"], count["location_id"]) not in self.counts:
                return 400, error("INVALID_REQUEST_ERROR", "NOT_FOUND",
                                  f"Object `{count['catalog_object_id']}` of type ItemVariation not found at "
                                  f"location {count['location_id']}", f"changes[{n}].physical_count.catalog_object_id")
        made = [self._apply_count(change["physical_count"]) for change in body.get("changes") or []]
        answer = {"changes": made, "counts": [self._count_row(k) for k in dict.fromkeys(
            (c["physical_count"]["catalog_object_id"], c["physical_count"]["location_id"]) for c in made)]}
        self._keys[body["idempotency_key"]] = (text, answer)
        return 200, answer

    def _apply_count(self, count: dict) -> dict:
        key = (count["catalog_object_id"], count["location_id"])
        later = [c for c in self.history if c["type"] == "ADJUSTMENT" and _key(c["adjustment"]) == key
                 and c["adjustment"]["occurred_at"] > count["occurred_at"]]
        quantity = Decimal(count["quantity"]) + sum((_signed(c["adjustment"]) for c in later), Decimal(0))
        if count["occurred_at"] >= self._last_count_at.get(key, ""):  # an older count changes nothing
            self.counts[key] = quantity
            self._last_count_at[key] = count["occurred_at"]
        source = {"product": "EXTERNAL_API", "application_id": "sq0idp-bridge"}
        return self._record("PHYSICAL_COUNT", {**count, "source": source})

    def _adjust(self, sku: str, location: str, quantity: Any, source: str, target: str, **ids: str) -> bytes:
        key = (VARIATIONS.get(sku, sku), location)
        with self._lock:
            adj = {"catalog_object_id": key[0], "location_id": location, "from_state": source, "to_state": target,
                   "quantity": str(quantity), "occurred_at": rfc3339(datetime.now(UTC)),
                   "source": {"product": "SQUARE_POS", "name": "Square POS 6.1 for iOS"}, **ids}
            self.counts[key] = self.counts.get(key, Decimal(0)) + _signed(adj)
            self._record("ADJUSTMENT", adj)
        return self.notification([key])

    def _record(self, kind: str, detail: dict) -> dict:
        created = datetime.now(UTC) + timedelta(microseconds=len(self.history))
        body = {**detail, "id": f"{kind[:2]}{next(self._ids):08d}", "created_at": rfc3339(created)}
        change = {"type": kind, "physical_count" if kind == "PHYSICAL_COUNT" else "adjustment": body}
        self.history.append(change)
        return change

    def _count_rows(self, body: dict) -> list[dict]:
        ids, locations = set(body.get("catalog_object_ids") or []), set(body.get("location_ids") or [])
        return [self._count_row(k) for k in self.counts
                if (not ids or k[0] in ids) and (not locations or k[1] in locations)]

    def _count_row(self, key: Key) -> dict:
        return {"catalog_object_id": key[0], "catalog_object_type": "ITEM_VARIATION", "state": "IN_STOCK",
                "location_id": key[1], "quantity": str(self.counts[key]),
                "calculated_at": rfc3339(datetime.now(UTC))}

    def _change_rows(self, body: dict) -> list[dict]:
        locations = set(body.get("location_ids") or [])
        types = set(body.get("types") or ["PHYSICAL_COUNT", "ADJUSTMENT"])
        after = body.get("updated_after") or ""
        return [c for c in self.history if c["type"] in types and _detail(c)["created_at"] > after
                and (not locations or _detail(c)["location_id"] in locations)]

    def _page(self, name: str, rows: list[dict], body: dict) -> dict:
        start, limit = int(body.get("cursor") or 0), int(body.get("limit") or 100)
        page = {name: rows[start:start + limit]}
        if start + limit < len(rows):
            page["cursor"] = str(start + limit)
        return page


def _detail(change: dict) -> dict:
    return change.get("adjustment") or change["physical_count"]


def _key(detail: dict) -> Key:
    return (detail["catalog_object_id"], detail["location_id"])


def _signed(adj: dict) -> Decimal:
    quantity = Decimal(adj["quantity"])
    if adj["to_state"] == "IN_STOCK":
        return quantity
    return -quantity if adj["from_state"] == "IN_STOCK" else Decimal(0)


class _Server(ThreadingHTTPServer):
    def __init__(self, *args: Any):
        super().__init__(*args)
        self.open: set[socket.socket] = set()

    def get_request(self):
        conn, address = super().get_request()
        self.open.add(conn)
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        self.open.discard(request)
        super().shutdown_request(request)

    def cut_all(self) -> None:
        for conn in list(self.open):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # cut connections and client timeouts are part of the scenarios


def _handler(square: FakeSquare):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return self._send(400, {}, error("INVALID_REQUEST_ERROR", "INVALID_CONTENT_TYPE", "Invalid JSON"))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload, lost = square.handle("POST", self.path, headers, body)
            if lost:
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self._send(status, extra, payload)

        def _send(self, status: int, headers: dict, payload: Any) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


NOTIFICATION_URL = "https://bridge.example.com/webhooks/square"


def example_mapping_set(directory, url: str, timeout_s: float = 5.0, batch_size: int | None = None,
                        extra_items: dict[str, str] | None = None, with_odoo: bool = False):
    """mappings/square.yaml and its lookup table, copied to ``directory`` with the fake's URL: the
    tests run the mapping that ships (``with_odoo``: plus the Odoo mapping, the system of record)."""
    import re
    import shutil
    from pathlib import Path

    from erp_bridge.mapping.loader import load_mappings
    source = Path(__file__).resolve().parents[2] / "mappings"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "square_items.csv", directory / "square_items.csv")
    with (directory / "square_items.csv").open("a", encoding="utf-8") as table:
        table.writelines(f"{sku},{code},extra\n" for sku, code in (extra_items or {}).items())
    text = (source / "square.yaml").read_text(encoding="utf-8")
    text = re.sub(r"base_url: \S+", f"base_url: {url}", text)
    text = re.sub(r"timeout_s: \S+", f"timeout_s: {timeout_s}", text)
    text = re.sub(r"notification_url: \S+", f"notification_url: {NOTIFICATION_URL}", text)
    if batch_size is not None:
        text = re.sub(r"batch_size: \d+", f"batch_size: {batch_size}", text)
    (directory / "square.yaml").write_text(text, encoding="utf-8")
    if with_odoo:
        shutil.copy(source / "odoo.yaml", directory / "odoo.yaml")
    return load_mappings(directory)


def connector_for(square: FakeSquare, directory, storage_url: str | None = None, **options):
    """The real SquareConnector, built by the registry's factory, talking to ``square``."""
    from erp_bridge.connectors import registry
    mappings = example_mapping_set(directory, square.url, **options)
    secrets = {"square_token": square.token, "square_webhook_signature_key": square.signature_key}
    storage = storage_url or f"sqlite:///{directory}/queue.sqlite3"
    return registry.build(mappings.systems["square"], secrets, mappings.lookups, storage_url=storage)
