"""Odoo (the stock_sync_bridge module's API): JSON-RPC with odoorpc (17, 18), JSON-2 (19).

The module does the stock work in Odoo's own transactions, one server method per business
operation; this adapter only calls its public methods (docs/odoo-module.md) with named arguments
and classifies what comes back. The transport follows ``connection.auth.kind``:
``session_login`` (user + password) uses odoorpc's JSON-RPC, ``bearer`` (an API key) uses Odoo
19's JSON-2 API (odoo_json2.py). ``GET /web/version`` tells which one the server wants: JSON-2
on an Odoo older than 19 is a ConfigError, JSON-RPC on 19 works but is deprecated there and
logs a warning once. odoorpc clients are not thread safe, so each worker thread logs in with its
own client.
"""
from __future__ import annotations

import http.client
import logging
import socket
import threading
import urllib.error
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import odoorpc

from ..domain import Availability, Count, Decrement, Delivered, Increment, Result
from ..errors import BridgeError, ConfigError, RejectedError, RetryableError, Throttled
from ..mapping.compile import UnmappedError
from ..mapping.engine import item_code
from .base import Capability
from .odoo_json2 import Json2Client, classify_json2, server_version

log = logging.getLogger(__name__)
API_MODEL = "stock.sync.api"
APPLIED = {"applied", "duplicate"}
#: differences per report_drift call (the module takes at most 5000)
DRIFT_ROWS = 2000
# Server-side errors that mean "try again": the transaction lost a race or the server is busy.
TRANSIENT_ODOO_ERRORS = ("psycopg2.errors.SerializationFailure", "psycopg2.errors.LockNotAvailable",
                         "psycopg2.extensions.TransactionRollbackError", "odoo.exceptions.ConcurrencyError")
ACCESS_ERRORS = ("odoo.exceptions.AccessError", "odoo.exceptions.AccessDenied")


def classify(exc: BaseException, what: str) -> BridgeError:
    """The one place Odoo failures become the bridge's error classes."""
    if isinstance(exc, odoorpc.error.RPCError):
        name = ((exc.info or {}).get("data") or {}).get("name", "")
        message = ((exc.info or {}).get("data") or {}).get("message") or str(exc)
        if name in ACCESS_ERRORS:
            return ConfigError(f"Odoo refused {what}: {message} (is the bridge user in the "
                               "'Stock Sync Bridge' group?)")
        if name in TRANSIENT_ODOO_ERRORS:
            return RetryableError(f"Odoo {what}: transient {name}: {message}", after=1)
        return RejectedError(f"Odoo {what} failed: {name or 'error'}: {message}")
    if isinstance(exc, urllib.error.HTTPError):
        after = 30.0 if exc.code in (429, 503) else None
        kind = Throttled if exc.code == 429 else RetryableError
        return kind(f"Odoo {what}: HTTP {exc.code} {exc.reason}", after=after)
    if isinstance(exc, (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
                        http.client.HTTPException, OSError)):
        return RetryableError(f"Odoo {what}: cannot reach the server: {exc}")
    return RetryableError(f"Odoo {what}: {type(exc).__name__}: {exc}")


class OdooConnector:
    capabilities = frozenset({Capability.READ_AVAILABILITY, Capability.APPLY_STOCK_CHANGES, Capability.OUTBOX,
                              Capability.REPORT_DRIFT})

    @classmethod
    def from_context(cls, ctx) -> OdooConnector:
        """Registry factory (a ConnectorContext): secrets through the context's secret source."""
        return cls(ctx.mapping, _SecretSource(ctx.secret), ctx.lookups)

    def __init__(self, mapping, settings, lookups=None, client_factory: Callable[..., Any] = odoorpc.ODOO):
        self.name = mapping.system
        self.mapping = mapping
        conn = mapping.connection
        self._base_url, self._timeout = conn.base_url, conn.timeout_s
        self._database = conn.database
        secrets = conn.auth.secrets
        self.transport = "json2" if conn.auth.kind == "bearer" else "jsonrpc"
        if self.transport == "json2":
            self._json2 = Json2Client(conn.base_url, conn.database, settings.secret(secrets["token"]),
                                      conn.timeout_s)
        else:
            url = urlsplit(conn.base_url)
            self._target = dict(host=url.hostname, port=url.port or (443 if url.scheme == "https" else 80),
                                protocol="jsonrpc+ssl" if url.scheme == "https" else "jsonrpc",
                                timeout=conn.timeout_s)
            self._login = settings.secret(secrets["username"])
            self._password = settings.secret(secrets["password"])
        self._factory = client_factory
        self._local = threading.local()
        self._version_checked = False

    def _check_version(self) -> None:
        """Once: does the server's version suit the configured transport?"""
        if self._version_checked:
            return
        version = server_version(self._base_url, self._timeout)
        if version is None:
            return  # unreachable now: the call itself will say so, and we ask again next time
        if self.transport == "json2" and (not version or version[0] < 19):
            raise ConfigError(f"this Odoo ({'.'.join(map(str, version)) or 'older than 18'}) has no JSON-2 "
                              "API: use connection.auth kind session_login (user and password) for Odoo 17 "
                              "and 18")
        if self.transport == "jsonrpc" and version and version[0] >= 19:
            log.warning("Odoo %s.%s deprecates /jsonrpc (scheduled for removal): set connection.auth "
                        "kind: bearer with an API key secret to use JSON-2 (docs/odoo-module.md)",
                        *version[:2])
        self._version_checked = True

    def _api(self):
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._factory(**self._target)
            client.login(self._database, self._login.get_secret_value(), self._password.get_secret_value())
            self._local.client = client
        return client

    def call(self, method: str, **kwargs) -> Any:
        """One public method of stock.sync.api, named arguments only (as JSON-2 requires)."""
        try:
            self._check_version()
            if self.transport == "json2":
                return self._json2.call(API_MODEL, method, **kwargs)
            return self._api().execute_kw(API_MODEL, method, [], kwargs)
        except BridgeError:
            raise
        except Exception as exc:  # every failure is classified, none escapes unnamed
            self._local.client = None  # a fresh login next time (session may have expired)
            if self.transport == "json2":
                raise classify_json2(exc, method) from exc
            raise classify(exc, method) from exc

    # --- outbox (flows 1 and 2) ----------------------------------------------------------------
    def fetch_markers(self, limit: int = 500) -> list[dict]:
        return self.call("fetch_markers", limit=limit)

    def ack_markers(self, results: list[dict]) -> list[dict]:
        return self.call("ack_markers", results=results)

    def fetch_journal(self, limit: int = 500) -> list[dict]:
        return self.call("fetch_journal", limit=limit)

    def ack_journal(self, results: list[dict]) -> list[dict]:
        return self.call("ack_journal", results=results)

    def report_drift(self, run_at: str, systems: Sequence[str], rows: Sequence[Mapping[str, str]]) -> None:
        """Stock Sync > Reconciliation in Odoo (stock.sync.drift), in calls of at most DRIFT_ROWS."""
        for start in range(0, max(len(rows), 1), DRIFT_ROWS):
            self.call("report_drift", run_at=run_at, systems=list(systems), rows=list(rows[start:start + DRIFT_ROWS]))

    # --- capabilities --------------------------------------------------------------------------
    def read_availability(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Availability]:
        """Figures per (SKU, internal location); keys Odoo does not know are absent."""
        codes = {self._code(loc): loc for _, loc in keys if self.mapping.location_entry(loc)}
        skus = {self._sku(sku): sku for sku, _ in keys}
        answers = self.call("read_availability", skus=sorted(skus), locations=sorted(codes))
        wanted, out = set(keys), {}
        for answer in answers:
            key = (skus.get(answer.get("sku")), codes.get(answer.get("location")))
            if answer.get("status") == "ok" and key in wanted:
                out[key] = availability_of(key[0], key[1], answer["availability"])
        return out

    def apply_stock_changes(self, changes: Sequence[Decrement | Increment | Count]) -> list[Result]:
        lines = [self._line_or_error(c) for c in changes]
        sent = [line for line in lines if isinstance(line, dict)]
        results = {r["key"]: r for r in self.call("apply_stock_changes", lines=sent)} if sent else {}
        return [line if isinstance(line, BridgeError) else _outcome(results.get(line["key"]), line["key"])
                for line in lines]

    def _line_or_error(self, change) -> dict | BridgeError:
        try:
            return rpc_line(self.mapping, change)
        except (RejectedError, UnmappedError) as exc:
            return exc if isinstance(exc, RejectedError) else RejectedError(str(exc))

    def _code(self, location: str) -> str:
        return self.mapping.location_entry(location).code

    def _sku(self, sku: str) -> str:
        return item_code(self.mapping, None, sku)

    def close(self) -> None:
        self._local = threading.local()
        if self.transport == "json2":
            self._json2.close()


def availability_of(sku: str, location: str, figures: dict) -> Availability:
    def dec(name: str) -> Decimal | None:
        value = figures.get(name)
        return None if value is None else Decimal(str(value))

    restock = figures.get("restock_at")  # Odoo keeps naive UTC datetimes
    return Availability(item=sku, location=location, on_hand=dec("on_hand"), reserved=dec("reserved") or 0,
                        free=dec("free"), forecast=dec("forecast"), uom=figures.get("uom"),
                        restock_at=datetime.fromisoformat(restock).replace(tzinfo=UTC) if restock else None)


def rpc_line(mapping, change: Decrement | Increment | Count) -> dict[str, Any]:
    """One line of stock.sync.api.apply_stock_changes, in Odoo's terms (through the mapping)."""
    if isinstance(change, Count):
        raise RejectedError("Odoo takes channel sales and returns, not counts; counts go to reconciliation")
    entry = mapping.location_entry(change.location)
    if entry is None:
        raise RejectedError(f"location {change.location!r} is not in the {mapping.system} mapping's locations.map")
    return {"key": change.idempotency_key, "kind": change.kind, "sku": item_code(mapping, None, change.item),
            "location": entry.code, "quantity": float(change.quantity), "channel": change.channel,
            "order_ref": change.order, "occurred_at": change.occurred_at.isoformat()}


def describe_call(mapping, changes: Sequence[Decrement | Increment | Count]) -> str:
    """What ``mappings preview`` shows for Odoo: the exact RPC, since Odoo takes no mapped bodies."""
    import json

    lines = [rpc_line(mapping, c) for c in changes]
    if mapping.connection.auth.kind == "bearer":  # Odoo 19: JSON-2, named arguments
        return (f"# {mapping.system} apply_stock_changes, key {lines[0]['key'] if lines else '-'}\n"
                f"POST {mapping.connection.base_url.rstrip('/')}/json/2/{API_MODEL}/apply_stock_changes  "
                f"(JSON-2, Authorization: bearer ***, X-Odoo-Database: {mapping.connection.database})\n"
                f"{json.dumps({'lines': lines}, indent=2)}\n")
    return (f"# {mapping.system} apply_stock_changes, key {lines[0]['key'] if lines else '-'}\n"
            f"POST {mapping.connection.base_url}/jsonrpc  (odoorpc execute_kw as the bridge user, "
            f"database {mapping.connection.database})\n"
            f"model stock.sync.api, method apply_stock_changes, args:\n{json.dumps([lines], indent=2)}\n")


def _outcome(result: dict | None, key: str) -> Result:
    if result is None:
        return RetryableError(f"Odoo returned no result for {key}")
    status, detail = result.get("status"), result.get("detail") or ""
    if status in APPLIED:
        return Delivered(status)
    reasons = {"unknown_product": "unknown SKU in Odoo", "unknown_location": "unknown location in Odoo",
               "insufficient_stock": "not enough free stock in Odoo and backorders are off"}
    return RejectedError(f"{reasons.get(str(status), status)}: {detail}".rstrip(": "))


class _SecretSource:
    """``.secret(name)`` as SecretStr over a context's secret function (what __init__ reads)."""

    def __init__(self, secret):
        self._secret = secret

    def secret(self, name: str):
        from pydantic import SecretStr

        return SecretStr(self._secret(name))
