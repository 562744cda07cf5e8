"""What the HTTP doubles of vendors share: a threaded server on 127.0.0.1 that can go down and
come back on the same port (cutting kept-alive connections, as a dead host does), the faults a
test schedules, and writing a JSON answer."""
from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

S = TypeVar("S", bound="Served")


@dataclass
class Fault:
    """What the next matching request gets instead of (or after) normal service."""

    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    hang_s: float = 0.0
    #: "after_commit": process (store the document), then close the socket without answering;
    #: "before": close the socket without processing anything
    drop: str | None = None
    #: only requests whose path contains this (e.g. "InventoryGenExits") match; None: any call
    path: str | None = None


class CuttingServer(ThreadingHTTPServer):
    """Remembers open connections so that ``down`` also cuts kept-alive ones, as a dead host does."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.open: set[socket.socket] = set()

    def get_request(self) -> tuple[socket.socket, Any]:
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
        pass  # dropped connections and client timeouts are part of the scenarios


class Served:
    """Lifecycle of a double: ``with Double() as d``, ``d.down()`` (connections refused) and
    ``d.up()`` (back on the same port). A subclass gives its request handler class."""

    _port: int = 0
    _server: CuttingServer | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def port(self) -> int:
        return self._port

    def __enter__(self: S) -> S:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        """Listen (again, on the same port after ``down``)."""
        self._server = CuttingServer(("127.0.0.1", self._port), self.handler())
        self._server.daemon_threads = True
        self._port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Stop listening: new connections are refused until ``up``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.cut_all()
            self._server = None


def send_json(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, Any], payload: Any,
              content_type: str = "application/json") -> None:
    """Write one answer; a header given as a list is sent once per value (Set-Cookie)."""
    data = b"" if payload is None else json.dumps(payload, default=json_number).encode()
    try:
        handler.send_response(status)
        for name, value in headers.items():
            for one in value if isinstance(value, list) else [value]:
                handler.send_header(name, one)
        if payload is not None:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True


def drop_connection(handler: BaseHTTPRequestHandler) -> None:
    """Close the socket without answering, as if the vendor or the network died mid-answer."""
    handler.connection.shutdown(socket.SHUT_RDWR)
    handler.close_connection = True


def json_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)
