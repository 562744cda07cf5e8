"""Log lines are JSON, and no secret value survives in them, wherever it appeared."""
from __future__ import annotations

import io
import json
import logging

from erp_bridge.logs import setup_logging

SECRET = 'p@ss"w\\rd-42'


def test_one_json_object_per_line_with_extras_and_secrets_redacted():
    stream = io.StringIO()
    setup_logging("INFO", [SECRET, "tok-abc"], stream=stream)
    log = logging.getLogger("erp_bridge.delivery")
    log.info("delivered with token tok-abc", extra={"event_key": "shopify:1:1", "target": "sap_b1",
                                                      "outcome": "delivered", "duration_ms": 12.5,
                                                      "echo": {"password": SECRET}})
    try:
        raise RuntimeError(f"login failed for password {SECRET}")
    except RuntimeError:
        log.exception("attempt failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "delivered with token ***"
    assert (first["event_key"], first["target"], first["outcome"], first["duration_ms"]) == (
        "shopify:1:1", "sap_b1", "delivered", 12.5)
    assert first["echo"] == {"password": "***"}
    assert "login failed for password ***" in second["exc_info"]
    assert SECRET not in stream.getvalue() and "tok-abc" not in stream.getvalue()
    assert json.dumps(SECRET)[1:-1] not in stream.getvalue()


def test_masking_replaces_values_not_fragments_of_words():
    """Issue 9: a user named ``bridge`` must not turn ``erp-bridge listening`` into ``erp-***``."""
    stream = io.StringIO()
    setup_logging("INFO", ["bridge", "hunter2"], stream=stream)
    log = logging.getLogger("erp_bridge.http.server")
    log.info("erp-bridge listening; erp_bridge.http up", extra={"login": "bridge"})
    log.info("login bridge/hunter2 refused: {'login': 'bridge', 'password': 'hunter2'}")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "erp-bridge listening; erp_bridge.http up" and first["login"] == "***"
    assert second["message"] == "login ***/*** refused: {'login': '***', 'password': '***'}"
