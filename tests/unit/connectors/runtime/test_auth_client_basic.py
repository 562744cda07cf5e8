"""runtime/auth.OAuth2 ``client_auth="basic"`` (RFC 6749 §2.3.1): the client id and secret go in an
HTTP Basic header, not in the form, against a token endpoint that takes only that (the fake Account
Manager of tests/fakes/sfcc.py)."""
from __future__ import annotations

import base64

import pytest

from erp_bridge.connectors.runtime.auth import OAuth2
from erp_bridge.errors import ConfigError
from tests.fakes.sfcc import CLIENT_ID, CLIENT_SECRET, TOKEN_PATH, FakeSfcc

pytestmark = pytest.mark.filterwarnings("ignore:Unsupported scheme type")  # openapi-core on the OAS's oauth2
SCOPE = "SALESFORCE_COMMERCE_API:zzxy_prd sfcc.orders"


@pytest.fixture
def account_manager():
    with FakeSfcc() as fake:
        yield fake


def test_basic_client_auth_sends_the_credentials_in_the_header_only(account_manager):
    strategy = OAuth2(account_manager.url + TOKEN_PATH, CLIENT_ID, CLIENT_SECRET, scope=SCOPE, client_auth="basic")
    token = strategy.current()
    assert token.value in account_manager.tokens
    (request,) = account_manager.token_requests
    assert request["form"] == {"grant_type": "client_credentials", "scope": SCOPE}
    assert request["authorization"] == "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    strategy.close()


def test_the_default_puts_them_in_the_form_which_such_an_endpoint_refuses(account_manager):
    strategy = OAuth2(account_manager.url + TOKEN_PATH, CLIENT_ID, CLIENT_SECRET, scope=SCOPE, names="sfcc_client_secret")
    with pytest.raises(ConfigError, match="invalid_client.*check secrets sfcc_client_secret") as refused:
        strategy.current()
    assert CLIENT_SECRET not in str(refused.value)
    assert account_manager.token_requests[0]["form"]["client_secret"] == CLIENT_SECRET
    strategy.close()
