"""The runtime's Reply carries the body as received, for protocols that are not JSON (SOAP): on a
2xx and on a status the caller's on_status ignores (SOAP faults come as HTTP 500)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from erp_bridge.connectors.runtime.sender import Reply, Sender
from erp_bridge.errors import RetryableError

XML = b'<?xml version="1.0" encoding="UTF-8"?><Envelope>caf\xc3\xa9</Envelope>'


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(int(self.path.strip("/")))
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(XML)))
        self.end_headers()
        self.wfile.write(XML)

    def log_message(self, *args):
        pass


@pytest.fixture
def url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_2xx_reply_keeps_the_raw_body(url):
    reply = Sender("t").call("POST", f"{url}/200", body=b"<x/>", headers={"Content-Type": "text/xml"})
    assert isinstance(reply, Reply) and reply.content == XML and reply.body is None


def test_an_ignored_status_keeps_the_raw_body_and_others_stay_errors(url):
    sender = Sender("t")
    reply = sender.call("POST", f"{url}/500", body=b"<x/>", on_status={"500": "ignore"})
    assert isinstance(reply, Reply) and (reply.status, reply.content) == (500, XML)
    assert isinstance(sender.call("POST", f"{url}/500", body=b"<x/>"), RetryableError)
