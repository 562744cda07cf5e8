"""The one sender: every request a connector on the runtime makes goes through ``Sender.call``.

It owns what every HTTP system needs and no system should write again: a (connect, read)
timeout on every call, one ``requests.Session`` per worker thread, the auth strategy (renewed
once on a 401), classification by the mapping's ``writes.on_status`` plus ``Retry-After``, and
redaction of every secret from every error. A connector module keeps only what is its own: which
requests to make (mostly built by the mapping engine), how to read its error envelope, and what
an answer means for its items.
"""
from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from ...domain import Delivered
from ...errors import BridgeError, ConfigError, RetryableError
from ...mapping.wire import PLACEHOLDER, HttpRequest, to_json
from .auth import NoAuth, Strategy
from .classify import (
    CONNECT_TIMEOUT_S,
    Action,
    Redactor,
    VendorMessage,
    VendorWait,
    classify_response,
    json_or_none,
    transport_error,
    with_status,
)
from .pacing import NoPacing, Pacer
from .paginate import Paginator
from .sessions import ThreadSessions


@dataclass(frozen=True)
class Reply:
    """A successful answer (2xx, or a status the mapping says to ignore)."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    detail: str = "delivered"
    #: the body as received, for answers that are not JSON (SOAP envelopes, an OData $batch)
    content: bytes = field(default=b"", repr=False)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class Sender:
    def __init__(self, system: str, *, timeout_s: float = 10.0, auth: Strategy | None = None,
                 on_status: Mapping[str, Action] | None = None, message: VendorMessage | None = None,
                 secret_values: Sequence[str] = (), headers: Mapping[str, str] | None = None,
                 secret_names: str = "", wait: VendorWait | None = None, pacer: Pacer | None = None,
                 renew_on: Collection[int] = (401,), throttled_on: Collection[int] = (429,)):
        self.system = system
        #: statuses that mean "over the rate limit or quota" (classify_response: Throttled)
        self.throttled_on = frozenset(throttled_on)
        #: statuses that mean "this credential is no longer good": renewed once, then sent again
        #: (401; Amazon SP-API answers an expired access token with 403)
        self.renew_on = frozenset(renew_on)
        self.timeout = (min(CONNECT_TIMEOUT_S, timeout_s), timeout_s)
        self.auth = auth or NoAuth()
        self.on_status = dict(on_status or {})
        self._message, self._secret_values, self._wait = message, tuple(secret_values), wait
        self._headers, self._secret_names = dict(headers or {}), secret_names
        self._sessions = ThreadSessions()
        self.pacer: Pacer = pacer or NoPacing()

    @property
    def redact(self) -> Redactor:
        return Redactor.of((*self._secret_values, *self.auth.secret_values))

    def call(self, method: str, url: str, *, what: str | None = None, body: Any = None,
             params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
             on_status: Mapping[str, Action] | None = None) -> Reply | BridgeError:
        """One request; ``body`` is JSON text or a JSON-able value (Decimals kept digit for digit).
        Never raises for the target's or the network's failures: they come back classified."""
        what = what or f"{method} {url.split('?')[0]}"
        data = body if isinstance(body, (str, bytes)) or body is None else to_json(body)
        sent_headers = {**self._headers, **(headers or {})}
        if data is not None:
            sent_headers.setdefault("Content-Type", "application/json")
        try:
            generation = self.auth.generation
            response = self._send(method, url, data, params, sent_headers)
            if response.status_code in self.renew_on and self.auth.renewable:
                response.close()
                self.auth.renew(generation)
                response = self._send(method, url, data, params, sent_headers)
        except BridgeError as exc:  # the strategy could not get a credential: the request was not
            exc.never_sent = True  # sent, or was refused with a 401, so the target created nothing
            return exc
        except requests.RequestException as exc:
            return transport_error(exc, what)
        with response:
            return self._classify(response, what, on_status)

    def send(self, request: HttpRequest, body: Any = None, what: str | None = None) -> Reply | BridgeError:
        """A request the mapping engine built; ``body`` replaces its body (e.g. with a reference)."""
        return self.call(request.method, request.url, what=what or f"{request.method} {request.name}",
                         body=request.body if body is None else body, headers=self.engine_headers(request.headers))

    def pages(self, method: str, url: str, paginator: Paginator, *, what: str,
              params: Mapping[str, Any] | None = None, max_pages: int = 100) -> Iterator[Reply]:
        """Every page of a listing, as the paginator walks it; raises the first failure."""
        state = paginator.first(dict(params or {}))
        for _ in range(max_pages):
            reply = self.call(method, state.url or url, what=what, params=state.params)
            if isinstance(reply, BridgeError):
                raise reply
            yield reply
            next_state = paginator.next(state, reply.body)
            if next_state is None:
                return
            state = next_state
        raise ConfigError(f"{what}: more than {max_pages} pages; narrow the query")

    def engine_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The engine's headers without its credential placeholders: the strategy sets those."""
        out = {}
        for name, value in headers.items():
            if PLACEHOLDER.search(value):
                if name.lower() in ("authorization", "cookie") or "{auth:" in value or _credential(name):
                    continue
                raise ConfigError(f"{self.system}: header {name} holds a credential placeholder; name the "
                                  "credential in connection.auth instead")
            out[name] = value
        return out

    def close(self) -> None:
        self.auth.close()
        self._sessions.close()

    def _send(self, method: str, url: str, data: Any, params: Any, headers: dict) -> requests.Response:
        if isinstance(data, str):
            data = data.encode()
        self.pacer.wait(method)
        response = self._sessions.get().request(method, url, data=data, params=params, headers=headers,
                                                auth=self.auth, timeout=self.timeout, allow_redirects=False)
        self.pacer.observe(method, response.headers)  # any status: a 429 says the most about the budget
        return response

    def _said(self, response: requests.Response) -> str:
        """The vendor's own words on a 401 (Magento names the ACL resource the integration lacks), redacted."""
        text = self._message(response) if self._message else None
        return f": {self.redact.excerpt(text)}" if text else ""

    def _classify(self, response: requests.Response, what: str,
                  on_status: Mapping[str, Action] | None) -> Reply | BridgeError:
        if response.status_code == 401:
            check = f"check {self._secret_names or 'the secrets in connection.auth'}"
            if self.auth.renewable:  # a fresh credential refused at once: a glitch, or revoked since
                return with_status(RetryableError(f"HTTP 401 from {what} even with a fresh credential ({check})"), 401)
            return ConfigError(f"{self.system} refused the credentials (HTTP 401 from {what}{self._said(response)}): "
                               f"{check}")
        outcome = classify_response(response, what, on_status or self.on_status, self.redact, self._message,
                                    self._wait, self.throttled_on)
        if isinstance(outcome, Delivered):
            return Reply(response.status_code, json_or_none(response), dict(response.headers), outcome.detail,
                         response.content)
        return outcome


def _credential(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in ("token", "key", "secret", "auth"))
