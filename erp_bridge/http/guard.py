"""Bounds on unauthenticated input, before any route sees it.

- Bodies: a per-route cap (``http.max_body_bytes``, ``http.route_body_bytes`` by path prefix). A
  declared ``Content-Length`` over the cap is answered 413 before a byte of the body is read; a
  chunked body is counted as it arrives and cut off at the cap. So memory per request is bounded
  by the cap, whatever a client sends.
- Slow clients: a request's headers must arrive within ``http.header_timeout_s`` of the connection
  (or of the previous response), and its whole body within ``http.body_timeout_s``; otherwise the
  connection is closed (headers) or answered 408 (body). Slowloris then holds a connection for
  seconds, not forever, and the unit's raised ``LimitNOFILE`` leaves room for many.
- Headers: a header block over ``http.max_header_bytes`` is refused (431): by ``GuardedProtocol``
  while it arrives, and by this middleware when it arrived at once.
- Concurrency: at most ``http.max_concurrent_requests`` requests are in the application at once;
  more get 503 with ``Retry-After`` (webhook senders retry). Health checks are never refused.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import HTTPException
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
#: always answered, even at the concurrency limit: they are how an operator sees the service
UNLIMITED = ("/healthz", "/readyz")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body over {limit} bytes (the limit for this route)")


class BodyTooSlow(HTTPException):
    def __init__(self, timeout_s: float):
        super().__init__(408, f"request body not received within {timeout_s:g} s")


class InputGuard:
    """ASGI middleware: body caps and deadlines, and the in-flight request limit."""

    def __init__(self, app, *, max_body_bytes: int, route_body_bytes: Mapping[str, int] | None = None,
                 body_timeout_s: float = 30.0, max_concurrent_requests: int = 256,
                 max_header_bytes: int = 16384):
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.default = max_body_bytes
        # longest prefix first, so /webhooks/shopify beats /webhooks/
        self.routes = sorted((route_body_bytes or {}).items(), key=lambda kv: len(kv[0]), reverse=True)
        self.body_timeout_s = body_timeout_s
        self.slots = max_concurrent_requests
        self.in_flight = 0

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.routes if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ())) > self.max_header_bytes:
            return await _reply(send, 431, f"request headers over {self.max_header_bytes} bytes", close=True)
        limit = self.limit_for(path)
        declared = _content_length(scope)
        if declared == -1:
            return await _reply(send, 400, "Content-Length is not a number")
        if declared is not None and declared > limit:
            return await _reply(send, 413, f"request body over {limit} bytes (the limit for this route)",
                                close=True)
        exempt = path in UNLIMITED
        if not exempt and self.in_flight >= self.slots:
            return await _reply(send, 503, "too many requests in progress; retry shortly",
                                headers=[(b"retry-after", b"1")])
        self.in_flight += 0 if exempt else 1
        try:
            await self.app(scope, self._bounded(receive, limit), send)
        finally:
            self.in_flight -= 0 if exempt else 1

    def _bounded(self, receive: Receive, limit: int) -> Receive:
        deadline = time.monotonic() + self.body_timeout_s
        seen = 0

        async def bounded() -> dict:
            nonlocal seen
            try:  # a timer on this task, not a task per receive as wait_for makes (issue 15)
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow(self.body_timeout_s) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message
        return bounded


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when absent; -1 when it is not a plain number."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) <= 18 else -1
    return None


async def _reply(send: Send, status: int, error: str, headers: list | None = None, close: bool = False) -> None:
    body = json.dumps({"error": error}).encode()
    extra = [(b"connection", b"close")] if close else []
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *extra, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (llhttp, in C) with two bounds on each request's header block:
    - a deadline: a client that opens a connection and sends its request line and headers slowly
      (slowloris) is disconnected after ``header_timeout_s``, instead of holding a descriptor for
      as long as it likes;
    - a size: a header block over ``max_header_bytes`` is answered 431 and the connection closed
      as soon as that many bytes arrived without the blank line (llhttp itself buffers a header
      of any length until it ends).
    It replaced uvicorn's h11 protocol, which bounds the block itself but parses in Python: the
    trivial ``/healthz`` went from 5,354 to 6,838 requests/s (issue 15, BENCHMARKS.md)."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = 16384
    _headers_deadline: asyncio.TimerHandle | None = None
    _awaiting_head = True  # the next bytes belong to a request line and headers
    _head_bytes = 0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._headers_deadline = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._awaiting_head and self._head_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._refuse_head()

    def on_headers_complete(self) -> None:
        self._awaiting_head, self._head_bytes = False, 0
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._awaiting_head = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._arm()  # the next request's headers are due from now (a pipelined one: already in)
        super().on_response_complete()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._headers_deadline = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
            self._headers_deadline = None

    def _too_slow(self) -> None:
        self._headers_deadline = None
        in_request = self.cycle is not None and not self.cycle.response_complete
        if self._awaiting_head and not in_request and not self.transport.is_closing():
            log.debug("closing a connection whose request headers took over %ss", self.header_timeout_s)
            self.transport.close()

    def _refuse_head(self) -> None:
        message = f"request headers over {self.max_header_bytes} bytes".encode()
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(message), message))
        self.transport.close()


def protocol_with(header_timeout_s: float, max_header_bytes: int) -> type[GuardedProtocol]:
    return type("Guarded", (GuardedProtocol,), {"header_timeout_s": header_timeout_s,
                                                 "max_header_bytes": max_header_bytes})
