"""A NetSuite REST record API double on 127.0.0.1 (vendor-apis.md §2b, NOTES-rest-record-api.md):
``PUT /services/rest/record/v1/inventoryadjustment/eid:<id>`` upserts (204, ``Location`` header);
an external id with characters other than letters, digits, ``_`` and ``-`` is refused (400); a
sublist sent in an update is merged into the record's lines unless the query says
``replace=<sublist>`` ("Working with Sublists"), which is how a replay doubles a quantity; the
OAuth 1.0a header must carry realm = the account and a valid HMAC-SHA256 signature (checked with
the standard library over oauthlib's RFC 5849 base string), else 401 with NetSuite's error body;
more requests in flight than ``concurrency`` get 429 CONCURRENCY_LIMIT_EXCEEDED (a lead, not
confirmed by Oracle's text).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from oauthlib.oauth1.rfc5849 import signature as rfc5849
from oauthlib.oauth1.rfc5849.utils import escape

ROOT = "/services/rest/record/v1"
EID = re.compile(r"^[A-Za-z0-9_-]+$")


def error(status: int, code: str, detail: str) -> tuple[int, dict]:
    return status, {"type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1", "title": "Error",
                    "status": status, "o:errorDetails": [{"detail": detail, "o:errorCode": code}]}


class FakeNetSuiteRest:
    def __init__(self, account: str = "1234567_SB1", secrets: tuple[str, str, str, str] = ("ck" * 32, "cs" * 32,
                 "ti" * 32, "ts" * 32), concurrency: int = 5):
        self.account, self.secrets, self.concurrency = account, secrets, concurrency
        self.records: dict[str, dict] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.in_flight = 0
        self.lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{ROOT}"

    def __enter__(self) -> FakeNetSuiteRest:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def quantity(self, eid: str) -> Decimal:
        lines = self.records[eid]["inventory"]["items"]
        return sum((Decimal(str(line["adjustQtyBy"])) for line in lines), Decimal(0))

    def handle(self, method: str, raw: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        with self.lock:
            self.in_flight += 1
            busy = self.in_flight > self.concurrency
        try:
            if busy:
                return error(429, "CONCURRENCY_LIMIT_EXCEEDED", "Concurrency limit exceeded.")
            return self._handle(method, raw, headers, body)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _handle(self, method: str, raw: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        parts = urlsplit(raw)
        if not self._signed(method, raw, headers.get("Authorization", "")):
            return error(401, "INVALID_LOGIN", "Invalid login attempt. For more details, see the Login Audit Trail.")
        match = re.fullmatch(rf"{ROOT}/inventoryadjustment/eid:(.*)", unquote(parts.path))
        if method != "PUT" or not match:
            return error(404, "NONEXISTENT_ID", f"The record instance does not exist: {parts.path}")
        if not EID.match(match.group(1)):
            return error(400, "INVALID_ID", "Invalid external ID: use letters, numbers, _ and - only.")
        record = json.loads(body)
        replace = {s for v in parse_qs(parts.query).get("replace", []) for s in v.split(",")}
        with self.lock:
            self.requests.append((method, raw, record))
            self._upsert(match.group(1), record, replace)
        return 204, {}

    def _upsert(self, eid: str, record: dict, replace: set[str]) -> None:
        existing = self.records.get(eid)
        if existing is None:
            self.records[eid] = record
            return
        for key, value in record.items():
            if isinstance(value, dict) and "items" in value and key not in replace:
                existing.setdefault(key, {"items": []})["items"] += value["items"]  # merged: lines added
            else:
                existing[key] = value

    def _signed(self, method: str, raw: str, header: str) -> bool:
        if not header.startswith("OAuth "):
            return False
        params = dict(rfc5849.collect_parameters(headers={"Authorization": header}, exclude_oauth_signature=False,
                                                 with_realm=True))
        if params.get("realm") != self.account or params.get("oauth_signature_method") != "HMAC-SHA256":
            return False
        if (params.get("oauth_consumer_key"), params.get("oauth_token")) != (self.secrets[0], self.secrets[2]):
            return False
        collected = rfc5849.collect_parameters(uri_query=urlsplit(raw).query, headers={"Authorization": header})
        base = rfc5849.signature_base_string(method, rfc5849.base_string_uri(f"http://127.0.0.1{raw}".replace(
            "127.0.0.1", f"127.0.0.1:{self._server.server_port}", 1)), rfc5849.normalize_parameters(collected))
        key = f"{escape(self.secrets[1])}&{escape(self.secrets[3])}".encode()
        expected = base64.b64encode(hmac.new(key, base.encode(), hashlib.sha256).digest()).decode()
        return hmac.compare_digest(expected, params.get("oauth_signature", ""))


def _handler(service: FakeNetSuiteRest) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, payload = service.handle(self.command, self.path, dict(self.headers), body)
            data = json.dumps(payload).encode() if payload else b""
            self.send_response(status)
            if status == 204:
                self.send_header("Location", f"{service.url}/inventoryadjustment/{1000 + len(service.records)}")
            if data:
                self.send_header("Content-Type", "application/vnd.oracle.resource+json; type=error")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_PUT = do_POST = do_PATCH = _any

        def log_message(self, *args: Any) -> None:
            pass
    return Handler
