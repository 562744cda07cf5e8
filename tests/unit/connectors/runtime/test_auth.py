"""runtime/auth.py: OAuth 2 tokens against a real token endpoint (the Zoho double's accounts
server): cached, renewed before expiry, renewed once per generation however many threads saw the
401, a refused refresh is a ConfigError naming the secrets without their values; OAuth 1 TBA's
HMAC-SHA256 signature against an independent RFC 5849 computation."""
from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys
import threading
import time
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import pytest
import requests

from erp_bridge.connectors.runtime.auth import EXPIRY_MARGIN_S, OAuth1Tba, OAuth2, build
from erp_bridge.connectors.runtime.sender import Reply, Sender
from erp_bridge.errors import ConfigError, RetryableError
from erp_bridge.mapping.schema import Auth
from tests.fakes.clock import FakeClock
from tests.fakes.sap_b1 import Fault
from tests.fakes.zoho_inventory import FakeZoho, stocked
from tests.pg import storage_url  # noqa: F401 - fixture

NAMES = "zoho_client_id, zoho_client_secret, zoho_refresh_token"


@pytest.fixture
def zoho():
    with FakeZoho() as fake:
        yield stocked(fake)


def oauth2(zoho, clock=None, refresh_token=None):
    client_id, secret, refresh = zoho.client
    return OAuth2(zoho.token_url, client_id, secret, refresh_token=refresh_token or refresh,
                  prefix="Zoho-oauthtoken ", timeout_s=2.0, names=NAMES, clock=clock or FakeClock(0.0))


def test_the_token_is_fetched_once_and_cached(zoho):
    strategy = oauth2(zoho)
    first, second = strategy.current(), strategy.current()
    assert first == second and first.value in zoho.tokens
    assert strategy.fetches == 1 and len(zoho.token_requests()) == 1
    assert first.value in strategy.secret_values  # the fetched token is redacted too


def test_the_token_is_renewed_shortly_before_the_expiry_it_announced(zoho):
    clock = FakeClock(0.0)
    strategy = oauth2(zoho, clock)
    first = strategy.current()
    clock.advance(3600 - EXPIRY_MARGIN_S - 1)
    assert strategy.current() is first
    clock.advance(1)
    renewed = strategy.current()
    assert renewed.value != first.value and renewed.generation == first.generation + 1
    assert strategy.fetches == 2


def test_a_short_lived_token_keeps_half_its_life(zoho):
    zoho.token_lifetime_s = 40
    clock = FakeClock(0.0)
    strategy = oauth2(zoho, clock)
    first = strategy.current()
    clock.advance(19)
    assert strategy.current() is first
    clock.advance(1)
    assert strategy.current() is not first


def test_eight_threads_seeing_a_401_renew_once(zoho):
    client_id, secret, refresh = zoho.client
    sender = Sender("zoho", timeout_s=2.0, auth=oauth2(zoho))
    params = {"organization_id": zoho.organization_id, "item_ids": "4815000000044208"}
    assert isinstance(sender.call("GET", zoho.url + "/itemdetails", params=params), Reply)
    zoho.expire_tokens()
    barrier, results = threading.Barrier(8), []

    def read() -> None:
        barrier.wait()
        results.append(sender.call("GET", zoho.url + "/itemdetails", params=params))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    sender.close()
    assert len(results) == 8 and all(isinstance(r, Reply) and r.status == 200 for r in results), results
    assert len(zoho.token_requests()) == 2  # the first token and exactly one renewal
    assert sender.auth.fetches == 2


@pytest.mark.parametrize("change, error", [("refresh_token", "invalid_code"),
                                           ("client_secret", "invalid_client_secret"),
                                           ("client_id", "invalid_client")])
def test_a_refused_refresh_is_a_config_error_naming_the_secrets_not_their_values(zoho, change, error):
    client_id, secret, refresh = zoho.client
    values = {"client_id": client_id, "client_secret": secret, "refresh_token": refresh}
    values[change] = "1000.wrong-" + change
    strategy = OAuth2(zoho.token_url, values["client_id"], values["client_secret"],
                      refresh_token=values["refresh_token"], names=NAMES, timeout_s=2.0)
    with pytest.raises(ConfigError) as caught:
        strategy.current()
    message = str(caught.value)
    assert f"token endpoint refused the credentials ({error})" in message and NAMES in message
    assert not any(v in message for v in (*values.values(), *zoho.client))


def test_a_throttled_or_failing_token_endpoint_is_retryable_with_its_retry_after(zoho):
    zoho.fail_next(Fault(status=503, headers={"Retry-After": "30"}, body={"error": "busy"}, path="/oauth/v2/token"))
    with pytest.raises(RetryableError) as caught:
        oauth2(zoho).current()
    assert caught.value.after == 30 and "HTTP 503 from POST" in str(caught.value)


def test_a_token_answer_without_a_token_is_retryable_and_redacted(zoho):
    client_id, secret, refresh = zoho.client
    zoho.fail_next(Fault(status=200, body=f"<html>proxy error for {secret}</html>", path="/oauth/v2/token"))
    with pytest.raises(RetryableError) as caught:
        oauth2(zoho).current()
    assert "without a token" in str(caught.value) and secret not in str(caught.value) and "***" in str(caught.value)


def test_build_needs_a_token_url_for_oauth2():
    auth = Auth(kind="oauth2_refresh_token", secrets={"client_id": "a", "client_secret": "b", "refresh_token": "c"})
    with pytest.raises(ConfigError, match="needs connection.auth.token_url"):
        build(auth, lambda name: "value")


# --- OAuth 1.0a TBA ---------------------------------------------------------------------------
CONSUMER_KEY, CONSUMER_SECRET, TOKEN_ID, TOKEN_SECRET = "ck-123", "cs&secret/ü", "tk-456", "ts secret+1"


def rfc5849_signature(method: str, url: str, oauth: dict[str, str]) -> str:
    """HMAC-SHA256 over the RFC 5849 §3.4.1 base string, written from the RFC, not from oauthlib."""
    enc = lambda s: quote(s, safe="~")
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True) + [(k, v) for k, v in oauth.items()
                                                                 if k not in ("realm", "oauth_signature")]
    normalized = "&".join(f"{k}={v}" for k, v in sorted((enc(k), enc(v)) for k, v in params))
    base = "&".join([method.upper(), enc(f"{parts.scheme}://{parts.netloc}{parts.path}"), enc(normalized)])
    key = f"{enc(CONSUMER_SECRET)}&{enc(TOKEN_SECRET)}"
    return base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()).decode()


def header_params(header: str | bytes) -> dict[str, str]:
    header = header.decode() if isinstance(header, bytes) else header  # requests-oauthlib sets bytes
    assert header.startswith("OAuth ")
    pairs = [p.strip().split("=", 1) for p in header[len("OAuth "):].split(",")]
    return {k: unquote(v.strip('"')) for k, v in pairs}


def test_tba_signs_with_hmac_sha256_as_rfc_5849_computes_it():
    strategy = OAuth1Tba(CONSUMER_KEY, CONSUMER_SECRET, TOKEN_ID, TOKEN_SECRET, realm="1234567_SB1")
    strategy._oauth.client.nonce, strategy._oauth.client.timestamp = "fixednonce42", "1700000000"
    url = "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/record/v1/inventoryAdjustment?expand=true&q=a b"
    request = requests.Request("POST", url, data=b'{"memo": "x"}',
                               headers={"Content-Type": "application/json"}).prepare()
    signed = strategy(request)
    oauth = header_params(signed.headers["Authorization"])
    assert oauth["realm"] == "1234567_SB1" and oauth["oauth_signature_method"] == "HMAC-SHA256"
    assert (oauth["oauth_nonce"], oauth["oauth_timestamp"]) == ("fixednonce42", "1700000000")
    assert (oauth["oauth_consumer_key"], oauth["oauth_token"]) == (CONSUMER_KEY, TOKEN_ID)
    assert oauth["oauth_signature"] == rfc5849_signature("POST", signed.url, oauth)
    assert oauth["oauth_signature"] != rfc5849_signature("GET", signed.url, oauth)  # the check can fail
    sent = str(signed.headers["Authorization"])
    assert CONSUMER_SECRET not in sent and quote(TOKEN_SECRET) not in sent


THROTTLED = {"error": "Access Denied", "status": "failure",
             "error_description": "You have made too many requests continuously. Please try again after some time."}


@pytest.mark.parametrize("transient, outcome", [((), ConfigError), (("Access Denied",), RetryableError)])
def test_a_vendors_throttle_named_transient_is_retried_not_reported_as_wrong_credentials(zoho, transient, outcome):
    zoho.fail_next(Fault(status=400, body=THROTTLED, path="/oauth/v2/token"))
    client_id, secret, refresh = zoho.client
    strategy = OAuth2(zoho.token_url, client_id, secret, refresh_token=refresh, names=NAMES, transient_errors=transient)
    with pytest.raises(outcome, match="Access Denied: You have made too many requests"):
        strategy.current()


@pytest.mark.parametrize("error", ["temporarily_unavailable", "server_error"])
def test_rfc_6749s_own_transient_errors_are_retried(zoho, error):
    zoho.fail_next(Fault(status=400, body={"error": error}, headers={"Retry-After": "5"}, path="/oauth/v2/token"))
    with pytest.raises(RetryableError) as caught:
        oauth2(zoho).current()
    assert caught.value.after == 5 and error in str(caught.value)


# -- kind headers (Cin7 Core: two secrets, each in its own header) ---------------------------------

def test_headers_auth_puts_each_secret_in_its_header_and_redacts_them():
    secrets = {"acct": "704ef231-acct", "key": "0342a546-key"}
    auth = Auth(kind="headers", secrets={"api-auth-accountid": "acct", "api-auth-applicationkey": "key"})
    strategy = build(auth, secrets.__getitem__)
    prepared = strategy(requests.Request("GET", "http://x/y").prepare())
    assert prepared.headers["api-auth-accountid"] == "704ef231-acct"
    assert prepared.headers["api-auth-applicationkey"] == "0342a546-key"
    assert set(strategy.secret_values) == set(secrets.values()) and not strategy.renewable


def test_headers_auth_without_headers_is_a_config_error():
    with pytest.raises(ConfigError, match="header name -> secret name"):
        build(Auth(kind="headers", secrets={}), lambda name: "x")



# -- a refresh token the server rotates (Lightspeed: single-use), kept in the queue's storage -----

def lightspeed_oauth2(fake, storage: str, configured: str):
    from erp_bridge.connectors.runtime.inbox import Inbox
    from erp_bridge.connectors.runtime.tokens import StoredRefreshToken
    from tests.fakes.lightspeed_r import CLIENT_ID, CLIENT_SECRET
    strategy = OAuth2(fake.token_url, CLIENT_ID, CLIENT_SECRET, refresh_token=configured, timeout_s=2.0)
    strategy.store = StoredRefreshToken(Inbox(storage, "lightspeed_r"), configured)
    return strategy


def test_a_rotated_refresh_token_is_kept_for_the_next_process_and_restart(tmp_path):
    from tests.fakes.lightspeed_r import FIRST_REFRESH, FakeLightspeedR
    storage = f"sqlite:///{tmp_path}/q.sqlite3"
    with FakeLightspeedR() as fake:
        first = lightspeed_oauth2(fake, storage, FIRST_REFRESH)
        first.current()
        second = lightspeed_oauth2(fake, storage, FIRST_REFRESH)  # another worker, or after a restart
        second.current()
        first.renew(first.generation)  # the first one's stored token was rotated by the second: reloaded
        for strategy in (first, second):
            strategy.close()
        assert fake.ls.token_requests == 3 and FIRST_REFRESH in fake.ls.revoked
        newest = sorted(fake.ls.refresh_tokens)
        assert len(newest) == 1 and newest[0] not in first.secret_values[:1]


def test_a_newly_configured_refresh_token_wins_over_the_stored_one(tmp_path):
    from erp_bridge.connectors.runtime.inbox import Inbox
    from erp_bridge.connectors.runtime.tokens import StoredRefreshToken
    inbox = Inbox(f"sqlite:///{tmp_path}/q.sqlite3", "lightspeed_r")
    StoredRefreshToken(inbox, "configured-1").save("rotated-1")
    assert StoredRefreshToken(inbox, "configured-1").load() == "rotated-1"
    assert StoredRefreshToken(inbox, "re-authorised-2").load() == "re-authorised-2"
    inbox.close()


def test_processes_refreshing_at_once_spend_each_refresh_token_once(storage_url):  # noqa: F811
    """Six processes (each its own strategy and inbox on one storage) renew at the same moment:
    the single-use refresh token is spent by one at a time, each next one loading the token the
    previous one stored, so none is refused."""
    from tests.fakes.lightspeed_r import FIRST_REFRESH, FakeLightspeedR
    with FakeLightspeedR() as fake:
        strategies = [lightspeed_oauth2(fake, storage_url, FIRST_REFRESH) for _ in range(6)]
        start, errors = threading.Barrier(6), []

        def renew(strategy) -> None:
            start.wait()
            try:
                strategy.current()
            except Exception as exc:  # what a process would see
                errors.append(exc)
        threads = [threading.Thread(target=renew, args=(s,)) for s in strategies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for strategy in strategies:
            strategy.close()
    assert errors == [] and fake.ls.token_requests == 6 and len(fake.ls.refresh_tokens) == 1


def renew_at(token_url: str, storage: str, configured: str, start_at: float) -> None:
    """A process of its own (see below): renew once at ``start_at``, print what came of it."""
    from erp_bridge.connectors.runtime.inbox import Inbox
    from erp_bridge.connectors.runtime.tokens import StoredRefreshToken
    from tests.fakes.lightspeed_r import CLIENT_ID, CLIENT_SECRET
    strategy = OAuth2(token_url, CLIENT_ID, CLIENT_SECRET, refresh_token=configured, timeout_s=5.0)
    strategy.store = StoredRefreshToken(Inbox(storage, "lightspeed_r"), configured)
    time.sleep(max(0.0, start_at - time.time()))
    try:
        strategy.current()
        print("renewed")
    except Exception as exc:  # what the process would see
        print(f"{type(exc).__name__}: {exc}")
    strategy.close()


def test_a_command_and_the_service_on_one_sqlite_file_renew_one_at_a_time(tmp_path):
    """Separate OS processes on one SQLite file (the service and `erp-bridge reconcile`, say):
    the lock is a file lock, not a lock of one process, so neither spends a spent token."""
    from tests.fakes.lightspeed_r import FIRST_REFRESH, FakeLightspeedR
    storage = f"sqlite:///{tmp_path}/q.sqlite3"
    with FakeLightspeedR() as fake:
        start_at = time.time() + 4  # every process imported and waiting by then
        code = (f"from tests.unit.connectors.runtime.test_auth import renew_at;"
                f" renew_at({fake.token_url!r}, {storage!r}, {FIRST_REFRESH!r}, {start_at!r})")
        processes = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
                     for _ in range(4)]
        outcomes = [p.communicate(timeout=60)[0].strip() for p in processes]
    assert outcomes == ["renewed"] * 4
    assert fake.ls.token_requests == 4 and len(fake.ls.refresh_tokens) == 1
