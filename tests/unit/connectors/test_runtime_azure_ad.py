"""The runtime's Azure AD strategy (msal client credentials) against the Azure AD double over TLS:
cached and renewed before expiry, renewed for real after a 401 (msal's own cache bypassed), refusals
as configuration errors that name what to check and never the secret, an unreachable authority as
retryable; and the mapping's auth kind builds it."""
from __future__ import annotations

import pytest

from erp_bridge.connectors.runtime.auth import EXPIRY_MARGIN_S, AzureAd, build
from erp_bridge.errors import ConfigError, RetryableError
from erp_bridge.mapping.schema import Auth
from tests.fakes.azure_ad import FakeAzureAd
from tests.fakes.clock import FakeClock
from tests.fakes.http_server import Fault

SCOPE = "https://contoso.operations.dynamics.com/.default"


@pytest.fixture
def aad(tmp_path, monkeypatch):
    with FakeAzureAd(tmp_path) as fake:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake.ca_file))
        yield fake


def strategy(aad, secret="app-secret-123", clock=None) -> AzureAd:
    return AzureAd(aad.authority, "bridge-app", secret, SCOPE, timeout_s=2.0,
                   names="d365_client_id, d365_client_secret", clock=clock or FakeClock(0.0))


def test_a_token_is_cached_until_shortly_before_it_expires(aad):
    clock = FakeClock(0.0)
    auth = strategy(aad, clock=clock)
    first = auth.current()
    assert auth.current() is first and len(aad.token_requests) == 1
    assert aad.valid(first.value, SCOPE) and aad.token_requests[0]["scope"] == SCOPE
    clock.advance(aad.lifetime_s - EXPIRY_MARGIN_S)
    assert auth.current().value != first.value and len(aad.token_requests) == 2
    auth.close()


def test_a_renewal_after_a_401_fetches_a_new_token_not_msal_s_cached_one(aad):
    auth = strategy(aad)
    first = auth.current()
    auth.renew(first.generation)
    auth.renew(first.generation)  # a second thread with the same refused token: no second fetch
    assert auth.current().value != first.value and len(aad.token_requests) == 2
    auth.close()


@pytest.mark.parametrize("secret, client, code", [("wrong-secret-value", "bridge-app", "AADSTS7000215"),
                                                  ("app-secret-123", "unknown-app", "AADSTS700016")])
def test_refused_credentials_are_a_config_error_naming_what_to_check(aad, secret, client, code):
    auth = AzureAd(aad.authority, client, secret, SCOPE, names="d365_client_id, d365_client_secret")
    with pytest.raises(ConfigError) as caught:
        auth.current()
    message = str(caught.value)
    assert code in message and "d365_client_secret" in message and "connection.auth.authority" in message
    assert "wrong-secret-value" not in message and "Trace ID" not in message
    auth.close()


def test_a_wrong_scope_is_a_config_error(aad):
    auth = AzureAd(aad.authority, "bridge-app", "app-secret-123", "https://contoso.operations.dynamics.com")
    with pytest.raises(ConfigError, match="invalid_scope"):
        auth.current()


def test_an_unreachable_authority_is_retryable(aad):
    auth = strategy(aad)
    aad.served.down()
    with pytest.raises(RetryableError):
        auth.current()


def test_a_5xx_from_the_token_endpoint_is_retryable(aad):
    auth = strategy(aad)
    auth.current()
    aad.served.fail_next(Fault(503, {"Retry-After": "3"}, b'{"error": "temporarily_unavailable"}', path="/token"))
    with pytest.raises(RetryableError):
        auth.renew(1)


def test_the_auth_kind_builds_it_and_needs_authority_and_scope(aad):
    names = {"client_id": "id_name", "client_secret": "secret_name"}
    secrets = {"id_name": "bridge-app", "secret_name": "app-secret-123"}.__getitem__
    auth = Auth(kind="azure_ad_client_credentials", authority=aad.authority, scope=SCOPE, secrets=names)
    built = build(auth, secrets)
    assert isinstance(built, AzureAd) and built.current().value
    with pytest.raises(ConfigError, match=r"authority and connection\.auth\.scope"):
        build(Auth(kind="azure_ad_client_credentials", scope=SCOPE, secrets=names), secrets)
