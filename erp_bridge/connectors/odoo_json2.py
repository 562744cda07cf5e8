"""Odoo 19's JSON-2 API: ``POST /json/2/<model>/<method>``, a bearer API key, named arguments only.

Odoo 19 deprecates ``/xmlrpc`` and ``/jsonrpc`` (odoorpc's transport; every call logs a warning
there and they are scheduled for removal in Odoo 20). Each JSON-2 call is one request and one
transaction on the server, which is what the module's API was built for: one server method per
business operation, nothing chained. API keys expire (at most three months for a bot user):
a 401 is a ConfigError that says so, never retried.
"""
from __future__ import annotations

import re
import threading
from typing import Any

import requests
from pydantic import SecretStr

from ..errors import BridgeError, ConfigError, RejectedError, RetryableError, Throttled

TRANSIENT = ("psycopg2.errors.SerializationFailure", "psycopg2.errors.LockNotAvailable",
             "psycopg2.errors.DeadlockDetected", "psycopg2.extensions.TransactionRollbackError",
             "odoo.exceptions.ConcurrencyError")
ACCESS = ("odoo.exceptions.AccessError", "odoo.exceptions.AccessDenied")
USER_AGENT = "erp-bridge (stock_sync_bridge JSON-2 client)"


class Json2Error(Exception):
    """A JSON-2 answer other than 200: the HTTP status and Odoo's serialized exception."""

    def __init__(self, status: int, body: dict, retry_after: float | None = None):
        self.status, self.name = status, str(body.get("name") or "")
        self.message = str(body.get("message") or "")[:500]
        self.retry_after = retry_after
        super().__init__(f"HTTP {status} {self.name}: {self.message}".strip())


class Json2Client:
    """One database of one Odoo 19 server; thread safe (a requests session per thread)."""

    def __init__(self, base_url: str, database: str | None, api_key: SecretStr, timeout_s: float):
        self.base_url = base_url.rstrip("/")
        self._database, self._key, self._timeout = database, api_key, timeout_s
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers.update({"User-Agent": USER_AGENT, "Content-Type": "application/json"})
            if self._database:
                session.headers["X-Odoo-Database"] = self._database
        return session

    def call(self, model: str, method: str, **kwargs: Any) -> Any:
        response = self._session().post(
            f"{self.base_url}/json/2/{model}/{method}", json=kwargs, timeout=self._timeout,
            headers={"Authorization": f"bearer {self._key.get_secret_value()}"})
        if response.status_code == 200:
            return response.json()
        raise Json2Error(response.status_code, _body(response), _retry_after(response))

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()
        self._local = threading.local()


def _body(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {"message": re.sub(r"<[^>]+>", " ", response.text or "")[:300].strip()}
    return body if isinstance(body, dict) else {"message": str(body)[:300]}


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def classify_json2(exc: BaseException, what: str) -> BridgeError:
    """The one place JSON-2 failures become the bridge's error classes."""
    if isinstance(exc, Json2Error):
        if exc.status == 401:
            return ConfigError(f"Odoo refused the API key for {what} (HTTP 401 {exc.message}): the key is "
                               "wrong, revoked or expired; create a new one for the bot user "
                               "(docs/odoo-module.md, 'Rotate the API key')")
        if exc.status == 403 or exc.name in ACCESS:
            return ConfigError(f"Odoo refused {what}: {exc.message} (is the bridge user in the "
                               "'Stock Sync Bridge' group?)")
        if exc.status == 404:
            return ConfigError(f"Odoo has no {what} (HTTP 404 {exc.message}): is the module "
                               "stock_sync_bridge installed in this database?")
        if exc.name in TRANSIENT or exc.status in (429, 502, 503, 504):
            kind = Throttled if exc.status == 429 else RetryableError
            return kind(f"Odoo {what}: transient HTTP {exc.status} {exc.name}: {exc.message}",
                                  after=exc.retry_after or (30.0 if exc.status in (429, 503) else 1))
        if exc.status >= 500 and not exc.name.startswith("odoo.exceptions."):
            return RetryableError(f"Odoo {what}: HTTP {exc.status} {exc.name}: {exc.message}")
        return RejectedError(f"Odoo {what} failed: HTTP {exc.status} {exc.name or 'error'}: {exc.message}")
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return RetryableError(f"Odoo {what}: cannot reach the server: {type(exc).__name__}")
    if isinstance(exc, ValueError):  # a 200 whose body is not JSON: a proxy page, not Odoo
        return RetryableError(f"Odoo {what}: the answer is not JSON")
    return RetryableError(f"Odoo {what}: {type(exc).__name__}: {exc}")


def server_version(base_url: str, timeout_s: float) -> tuple[int, ...] | None:
    """``GET /web/version``: (major, minor); () when the server answers without that route
    (Odoo 17 and older); None when it cannot be asked now (unreachable)."""
    try:
        response = requests.get(f"{base_url.rstrip('/')}/web/version", timeout=timeout_s,
                                headers={"User-Agent": USER_AGENT})
    except requests.RequestException:
        return None
    try:
        info = response.json().get("version_info") if response.status_code == 200 else None
    except (ValueError, AttributeError):
        info = None
    if isinstance(info, list) and len(info) >= 2:
        return tuple(int(x) for x in info[:2])
    return () if response.status_code < 500 else None
