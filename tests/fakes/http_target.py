"""A fake target that is a real HTTP server on 127.0.0.1 (a free port, in a thread).

It behaves like an idempotent JSON endpoint: the first request with an ``Idempotency-Key`` is
applied (200), a later one with the same key is answered 409. Replies scripted per key come
first: any status with headers and a body (``Retry-After``, error JSON), or a hang that holds the
request past any client timeout until the target stops.
"""
from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    hang: bool = False


@dataclass(frozen=True)
class Received:
    path: str
    key: str | None
    headers: dict[str, str]
    body: Any
    status: int | None  # None for a request held by a hang


class FakeTarget:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.applied: list[str] = []  # keys, in the order they were first applied
        self._applied: set[str] = set()
        self._script: dict[str, list[Reply]] = {}
        self._cond = threading.Condition()
        self._release = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def plan(self, key: str, *replies: Reply) -> None:
        """Answer the next requests for ``key`` with ``replies``, then behave normally."""
        with self._cond:
            self._script.setdefault(key, []).extend(replies)

    def preload(self, key: str) -> None:
        """The target already has ``key`` (applied by an earlier request this test did not make)."""
        with self._cond:
            self._applied.add(key)

    def requests_for(self, key: str) -> list[Received]:
        with self._cond:
            return [r for r in self.received if r.key == key]

    def counts(self) -> tuple[int, int]:
        """(unique keys applied, total requests received)."""
        with self._cond:
            return len(self._applied), len(self.received)

    def wait_until(self, predicate: Callable[[FakeTarget], bool], timeout_s: float = 20.0) -> bool:
        """Poll-free wait: re-checked whenever a request arrives, up to a deadline."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout_s)

    def answer(self, path: str, key: str | None, headers: dict[str, str], body: Any) -> Reply:
        with self._cond:
            script = self._script.get(key or "")
            reply = script.pop(0) if script else self._idempotent(key)
            self.received.append(Received(path, key, headers, body, None if reply.hang else reply.status))
            self._cond.notify_all()
            return reply

    def _idempotent(self, key: str | None) -> Reply:
        if not key:
            return Reply(400, body={"error": "Idempotency-Key header is required"})
        if key in self._applied:
            return Reply(409, body={"error": "duplicate", "key": key})
        self._applied.add(key)
        self.applied.append(key)
        return Reply(200, body={"applied": key})

    def hold(self) -> None:
        self._release.wait()

    def start(self) -> FakeTarget:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client killed mid-request (the crash test's SIGKILL) resets its connection: expected
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


def _handler(target: FakeTarget) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall
        protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do
        # one write per response and no Nagle: headers and body in separate small segments
        # would meet the client's delayed ACK and cost ~40 ms a request
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw) if raw else None
            reply = target.answer(self.path.lstrip("/"), self.headers.get("Idempotency-Key"),
                                  dict(self.headers), body)
            if reply.hang:
                target.hold()
            try:
                self._send(reply)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up waiting (its timeout)

        def _send(self, reply: Reply) -> None:
            payload = b"" if reply.body is None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
