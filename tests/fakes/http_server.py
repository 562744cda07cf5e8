"""A real HTTP(S) server on 127.0.0.1 for vendor doubles that are more than one JSON endpoint (Azure
AD, Dynamics 365): an ``App`` answers ``(method, path, headers, raw body)`` with status, headers and
bytes; scripted ``Fault``s come first (any status with headers and body, a hang, a commit-then-drop,
a drop before processing). TLS when given an ``ssl.SSLContext`` (msal only talks to https
authorities). ``down()`` cuts every open connection, as a dead host does.
"""
from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from .served import CuttingServer

Answer = tuple[int, dict[str, Any], bytes]


@dataclass
class Fault:
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang_s: float = 0.0
    #: "after_commit": serve the request, then close the socket unanswered; "before": close at once
    drop: str | None = None
    #: only requests whose path contains this match; None: any
    path: str | None = None


class App(Protocol):
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer: ...


class Served:
    """The server and its faults; the app keeps its own state."""

    def __init__(self, app: App, tls: ssl.SSLContext | None = None):
        self.app, self.tls = app, tls
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._port = 0
        self._server: _Server | None = None

    @property
    def origin(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._port}"

    def up(self) -> None:
        self._server = _Server(("127.0.0.1", self._port), _handler(self))
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.cut_all()
            self._server = None

    def fail_next(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[Answer, str | None]:
        with self.lock:
            fault = next((f for f in self.faults if f.path is None or f.path in path), None)
            if fault is not None:
                self.faults.remove(fault)
        if fault is not None and fault.hang_s:
            time.sleep(fault.hang_s)
        if fault is not None and fault.drop != "after_commit":
            return (fault.status, fault.headers, fault.body), fault.drop
        return self.app.handle(method, path, headers, body), fault.drop if fault else None


class _Server(CuttingServer):
    daemon_threads = True


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def _serve(self, method: str) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            (status, headers, data), drop = served.answer(method, self.path, dict(self.headers.items()), raw)
            if drop:
                self.connection.shutdown(socket.SHUT_RDWR)  # as if the service or the network died
                self.close_connection = True
                return
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, str(value))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                self.close_connection = True

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
