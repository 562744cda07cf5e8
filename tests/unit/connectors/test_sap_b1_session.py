"""SAP B1 Service Layer on the runtime: SL error classification, login, both cookies, one re-login, logout."""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from erp_bridge.connectors.runtime.classify import Redactor, classify_response
from erp_bridge.connectors.runtime.sender import Reply
from erp_bridge.connectors.sap_b1 import session_sender
from erp_bridge.connectors.sap_b1.classify import sap_message
from erp_bridge.domain import Delivered
from erp_bridge.errors import ConfigError, RejectedError, RetryableError
from tests.fakes.clock import FakeClock
from tests.fakes.sap_b1 import FakeServiceLayer, Fault, connector_for, move, sap_mapping

PASSWORD = "pa55-Wörd-never-echo"


def response(status, body=b"", headers=None):
    r = requests.Response()
    r.status_code, r._content, r.headers = status, body, requests.structures.CaseInsensitiveDict(headers or {})
    return r


def sap_body(code, value):
    return json.dumps({"error": {"code": code, "message": {"lang": "en-us", "value": value}}},
                      separators=(",", ":")).encode()


@pytest.mark.parametrize("status, body, headers, kind, message, after", [
    (201, b'{"DocEntry": 7}', {}, Delivered, None, None),
    (204, b"", {}, Delivered, None, None),
    (429, b"", {"Retry-After": "7"}, RetryableError, "HTTP 429 from POST X: (empty body)", 7),
    (503, b"", {"Retry-After": "12"}, RetryableError, "HTTP 503 from POST X: (empty body)", 12),
    (500, sap_body(-1, "Internal error"), {}, RetryableError, "HTTP 500 from POST X: SAP error -1: Internal error", None),
    (502, b"<html>bad gateway</html>", {}, RetryableError, "HTTP 502 from POST X: <html>bad gateway</html>", None),
    (400, sap_body(-5002, "Item 'NOPE' not found"), {}, RejectedError,
     "HTTP 400 from POST X: SAP error -5002: Item 'NOPE' not found", None),
    (400, sap_body(-10, f"bad {PASSWORD}"), {}, RejectedError, "HTTP 400 from POST X: SAP error -10: bad ***", None),
    (404, b"not json", {}, RejectedError, "HTTP 404 from POST X: not json", None),
], ids=["201-created", "204-no-content", "429-retry-after", "503-retry-after", "500-retry-with-sap-reason",
        "502-html-retry", "400-rejected-with-sap-reason", "400-echoed-secret-redacted", "404-without-sap-body"])
def test_classify(status, body, headers, kind, message, after):
    on_status = {"429": "retry", "5xx": "retry", "4xx": "fail"}
    outcome = classify_response(response(status, body, headers), "POST X", on_status, Redactor.of([PASSWORD]),
                                sap_message)
    assert isinstance(outcome, kind)
    if message is not None:
        assert str(outcome) == message and getattr(outcome, "after", None) == after


@pytest.fixture
def sl():
    with FakeServiceLayer(password=PASSWORD) as fake:
        fake.stock("CHAIR-BLUE", "01", 100)
        yield fake


def session(sl, password=PASSWORD, clock=None, timeout_s=2.0):
    return session_sender("sap_b1", sl.url, "SBODEMOUS", "manager", password, timeout_s=timeout_s,
                          **({"clock": clock} if clock else {}))


def get_item(s, sl):
    """The status SL answered (a Reply's, or the classified error's); raises what a login raises."""
    reply = s.call("GET", f"{sl.url}/Items('CHAIR-BLUE')?$select=ItemCode")
    if isinstance(reply, Reply):
        return reply.status
    if reply.status is None:  # no answer from SL, or the login refused: what the caller classifies
        raise reply
    return reply.status


def test_login_once_then_both_cookies_on_every_call(sl):
    s = session(sl)
    assert [get_item(s, sl) for _ in range(3)] == [200] * 3
    calls = [r for r in sl.received if r.path != "Login"]
    session_id, route = next(iter(sl.sessions)), next(iter(sl.sessions.values()))["route"]
    assert (sl.logins, s.auth.fetches) == (1, 1)
    assert [r.cookies for r in calls] == [{"B1SESSION": session_id, "ROUTEID": route}] * 3
    login = next(r for r in sl.received if r.path == "Login")
    assert login.body == {"CompanyDB": "SBODEMOUS", "UserName": "manager", "Password": PASSWORD}


def test_without_routeid_the_fake_refuses_the_session(sl):
    s = session(sl)
    get_item(s, sl)
    cookie = f"B1SESSION={next(iter(sl.sessions))}"  # the cookie a client keeping one cookie sends
    assert requests.get(f"{sl.url}/Items('CHAIR-BLUE')", headers={"Cookie": cookie}, timeout=2).status_code == 401


def test_expired_session_causes_exactly_one_relogin(sl):
    s = session(sl)
    get_item(s, sl)
    sl.expire_sessions()
    assert get_item(s, sl) == 200
    assert (sl.logins, [r.status for r in sl.received if r.path.startswith("Items")]) == (2, [200, 401, 200])


def test_concurrent_threads_on_an_expired_session_share_one_relogin(sl):
    s = session(sl)
    get_item(s, sl)
    sl.expire_sessions()
    start = threading.Barrier(8)

    def call(_):
        start.wait()
        return get_item(s, sl)
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(call, range(8))) == [200] * 8
    assert sl.logins == 2


def test_session_still_invalid_after_relogin_is_retryable_not_a_loop(sl):
    s = session(sl)
    get_item(s, sl)
    sl.fail_next(Fault(401, body={"error": {"code": 301, "message": {"lang": "en-us", "value": "Invalid session."}}}),
                 Fault(401, body={"error": {"code": 301, "message": {"lang": "en-us", "value": "Invalid session."}}},
                       path="Items"))
    reply = s.call("GET", f"{sl.url}/Items('CHAIR-BLUE')?$select=ItemCode")
    assert isinstance(reply, RetryableError) and reply.status == 401
    assert sl.logins == 2  # one re-login, then the 401 is retryable (no loop, no dead letter for a glitch)


def test_idle_session_is_renewed_before_sl_would_drop_it(sl):
    clock = FakeClock(1000.0)
    sl.clock = clock
    s = session(sl, clock=clock)
    get_item(s, sl)
    clock.advance(29 * 60)  # under SessionTimeout (30 min) minus the margin: same session
    get_item(s, sl)
    clock.advance(29 * 60 + 45)
    get_item(s, sl)
    assert sl.logins == 2 and [r.status for r in sl.received if r.path.startswith("Items")] == [200] * 3


@pytest.mark.parametrize("password", ["wrong", ""], ids=["wrong-password", "empty-password"])
def test_login_refused_is_a_config_error_without_the_password(sl, password):
    s = session(sl, password=password or "")
    with pytest.raises(ConfigError) as caught:
        get_item(s, sl)
    assert "SAP error 100000027: Login failed" in str(caught.value)
    assert PASSWORD not in str(caught.value) and (not password or password not in str(caught.value))


def test_sl_down_at_login_is_retryable(sl):
    s = session(sl)
    sl.down()
    with pytest.raises(RetryableError, match="POST Login failed: ConnectionError"):
        get_item(s, sl)


def test_close_logs_out_and_ends_the_session(sl, tmp_path):
    connector = connector_for(sl, tmp_path)
    connector.post_moves([move("1")])
    connector.close()
    assert sl.logouts == 1 and sl.sessions == {}
    assert [r.path for r in sl.received][-1] == "Logout"


def test_every_request_has_the_mapping_timeout(sl, tmp_path):
    connector = connector_for(sl, tmp_path, mapping=sap_mapping(sl.url, timeout_s=0.5))
    assert connector.sender.timeout == (0.5, 0.5)
    sl.fail_next(Fault(201, hang_s=1.5, path="InventoryGenExits"))
    outcome = connector.post_moves([move("1")])[0]
    assert isinstance(outcome, RetryableError) and str(outcome) == "POST InventoryGenExits timed out: ReadTimeout"
