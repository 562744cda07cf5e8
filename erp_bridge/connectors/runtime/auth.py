"""Authentication strategies: one small class per auth kind the mapping schema names.

Each is a ``requests.auth.AuthBase``: the sender hands it to ``requests`` and it sets the
credential on the prepared request, so a strategy sees the final method, URL and body (OAuth 1
signs all three). Token flows use oauthlib to build the token requests and parse (and refuse)
the answers; tokens are cached, renewed shortly before they expire, and renewed once after a 401.
A renewal is counted by generation so that N threads seeing the same expired token cause one
refresh, not N.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import msal
import msal.exceptions
import requests
from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error, WebApplicationClient
from requests.auth import AuthBase, HTTPBasicAuth
from requests_oauthlib import OAuth1

from ...errors import BridgeError, ConfigError, RetryableError
from ...mapping.schema import Auth
from .classify import CONNECT_TIMEOUT_S, Redactor, retry_after_s, transport_error

#: renew a token this long before the expiry it announced (clock skew, request duration)
EXPIRY_MARGIN_S = 60.0
#: a token that announced no lifetime is renewed after this long
DEFAULT_TOKEN_LIFETIME_S = 3000.0
#: token-endpoint ``error`` values that mean "not now" rather than "wrong credentials" (RFC 6749's
#: own; a connector adds its vendor's, e.g. Zoho's throttle ``Access Denied``)
TRANSIENT_TOKEN_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
Secret = Callable[[str], str]


class RefreshTokenStore(Protocol):
    def load(self) -> str: ...

    def save(self, token: str) -> None: ...

    def exclusive(self, wait_s: float) -> AbstractContextManager[object]:
        """Held around load, the token request and save, by one process at a time; a process
        that waits longer than ``wait_s`` for it raises a RetryableError."""

    def close(self) -> None: ...


class Strategy(AuthBase):
    """What the sender needs from every strategy."""

    #: secret values this strategy handles (redacted from every error excerpt)
    secret_values: tuple[str, ...] = ()
    #: bumps on every renewal; the sender passes the one it used to ``renew``
    generation: int = 0
    #: a 401 can be cured by renewing (a token, a session); static credentials cannot
    renewable: bool = False

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request

    def renew(self, seen: int) -> None:
        """The credential of generation ``seen`` was refused: get a new one (once per generation)."""

    def close(self) -> None:
        """Release what the credential holds (a session seat)."""


class NoAuth(Strategy):
    pass


class StaticHeader(Strategy):
    """bearer / header: a configured secret in one header, behind an optional prefix."""

    def __init__(self, header: str, prefix: str, value: str):
        self.header, self.value = header, prefix + value
        self.secret_values = (value,)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self.header] = self.value
        return request


class StaticHeaders(Strategy):
    """headers: several configured secrets, each in its own header, as is (Cin7 Core's account id
    and application key)."""

    def __init__(self, values: dict[str, str]):
        self.values = dict(values)
        self.secret_values = tuple(values.values())

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.update(self.values)
        return request


class Basic(Strategy):
    def __init__(self, username: str, password: str):
        self._basic = HTTPBasicAuth(username, password)
        # without a password the username is the credential (an API key: PrestaShop), so it is masked too
        self.secret_values = (password,) if password else (username,)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return self._basic(request)


class OAuth1Tba(Strategy):
    """Token-based authentication (NetSuite): OAuth 1.0a, HMAC-SHA256, realm = the account id."""

    def __init__(self, consumer_key: str, consumer_secret: str, token_id: str, token_secret: str,
                 realm: str | None = None):
        self._oauth = OAuth1(consumer_key, client_secret=consumer_secret, resource_owner_key=token_id,
                             resource_owner_secret=token_secret, signature_method="HMAC-SHA256", realm=realm)
        self.secret_values = (consumer_secret, token_secret, consumer_key, token_id)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return self._oauth(request)


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float
    generation: int


class Renewing(Strategy):
    """A credential fetched at run time and cached: ``fetch`` returns (value, lifetime seconds)."""

    renewable = True

    def __init__(self, header: str, prefix: str, clock: Callable[[], float] = time.monotonic,
                 margin_s: float = EXPIRY_MARGIN_S):
        self.header, self.prefix, self._clock, self._margin_s = header, prefix, clock, margin_s
        self._lock = threading.Lock()
        self._token: Token | None = None
        self.fetches = 0  # how many times a credential was fetched (tests, metrics)

    @property
    def generation(self) -> int:  # type: ignore[override]
        return self._token.generation if self._token else 0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self.header] = self.prefix + self.current().value
        return request

    def current(self) -> Token:
        with self._lock:
            token = self._token
            if token is None or self._clock() >= token.expires_at:
                token = self._refresh()
            return token

    def renew(self, seen: int) -> None:
        with self._lock:
            if self._token is None or self._token.generation == seen:
                self._refresh()

    def _refresh(self) -> Token:
        value, lifetime = self.fetch()
        self.fetches += 1
        margin = min(self._margin_s, lifetime / 2)
        self._token = Token(value, self._clock() + lifetime - margin, self.generation + 1)
        return self._token

    def fetch(self) -> tuple[str, float]:
        raise NotImplementedError


class OAuth2(Renewing):
    """OAuth 2 access tokens from a token endpoint: client credentials or a refresh token.

    ``client_auth``: how the client authenticates to the token endpoint (RFC 6749 §2.3.1):
    ``body`` (client_id and client_secret in the form) or ``basic`` (an HTTP Basic header, the
    one every server must accept; Salesforce Account Manager documents only this one)."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, *, refresh_token: str | None = None,
                 scope: str | None = None, header: str = "Authorization", prefix: str = "Bearer ",
                 timeout_s: float = 10.0, names: str = "", clock: Callable[[], float] = time.monotonic,
                 transient_errors: Collection[str] = (), client_auth: Literal["body", "basic"] = "body"):
        super().__init__(header, prefix, clock)
        self.token_url, self._scope, self._names = token_url, scope, names
        self._basic = HTTPBasicAuth(client_id, client_secret) if client_auth == "basic" else None
        self._transient = TRANSIENT_TOKEN_ERRORS | frozenset(transient_errors)
        self._client_id, self._client_secret, self._refresh_token = client_id, client_secret, refresh_token
        self._timeout = (min(CONNECT_TIMEOUT_S, timeout_s), timeout_s)
        self.secret_values = tuple(v for v in (client_secret, refresh_token, client_id) if v)
        self._redact = Redactor.of(self.secret_values)
        self._http = requests.Session()
        #: where a rotated refresh token is kept (runtime/tokens.StoredRefreshToken); None: memory only
        self.store: RefreshTokenStore | None = None

    def fetch(self) -> tuple[str, float]:
        if self.store is None:
            return self._fetch()
        # no other process spends the same refresh token meanwhile. Its holder sends at most two
        # token requests, each bounded by the timeout; longer means it is stuck: retry later
        with self.store.exclusive(wait_s=max(60.0, 3 * sum(self._timeout))):
            self._refresh_token = self.store.load()  # another process may have rotated it since
            try:
                return self._fetch()
            except ConfigError:  # a process of a version without the lock rotated it meanwhile
                newest = self.store.load()
                if newest == self._refresh_token:
                    raise
                self._refresh_token = newest
                return self._fetch()

    def _fetch(self) -> tuple[str, float]:
        client, body = self._request_body()
        what = f"POST {self.token_url} (token)"
        try:
            response = self._http.post(self.token_url, data=body, timeout=self._timeout, auth=self._basic, headers={
                "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
        except requests.RequestException as exc:
            raise transport_error(exc, what) from None
        with response:
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableError(f"HTTP {response.status_code} from {what}",
                                     after=retry_after_s(response.headers.get("Retry-After")))
            try:
                token = client.parse_request_body_response(response.text, scope=self._scope)
            except OAuth2Error as exc:
                said = f"{exc.error}{': ' + self._redact(exc.description) if exc.description else ''}"
                if exc.error in self._transient:
                    raise RetryableError(f"the token endpoint asks to wait ({said})",
                                         after=retry_after_s(response.headers.get("Retry-After"))) from None
                raise ConfigError(f"the token endpoint refused the credentials ({said}): "
                                  f"check secrets {self._names}") from None
            except ValueError:  # not JSON, or a token answer without access_token
                raise RetryableError(f"{what} answered HTTP {response.status_code} without a token: "
                                     f"{self._redact.excerpt(response.text)}") from None
        if self._refresh_token is not None and token.get("refresh_token"):
            # RFC 6749 6: a new refresh token replaces the old one, which the server may revoke
            # (Lightspeed rotates them); ``store`` keeps it for the other processes and restarts
            self._refresh_token = token["refresh_token"]
            if self.store is not None:
                self.store.save(token["refresh_token"])
        self.secret_values = (*self.secret_values[:3], token["access_token"], *_rotated(self._refresh_token))
        return token["access_token"], float(token.get("expires_in") or DEFAULT_TOKEN_LIFETIME_S)

    def _request_body(self) -> tuple[Any, str]:
        if self._refresh_token is not None:
            client = WebApplicationClient(self._client_id)
            return client, client.prepare_refresh_body(refresh_token=self._refresh_token, scope=self._scope,
                                                       client_id=self._client_id, client_secret=self._client_secret)
        client = BackendApplicationClient(self._client_id)
        if self._basic is not None:  # the credentials travel in the Authorization header only
            return client, client.prepare_request_body(scope=self._scope, include_client_id=False)
        return client, client.prepare_request_body(scope=self._scope, include_client_id=True,
                                                   client_secret=self._client_secret)

    def close(self) -> None:
        self._http.close()
        if self.store is not None:
            self.store.close()


def _rotated(refresh_token: str | None) -> tuple[str, ...]:
    return (refresh_token,) if refresh_token else ()


#: msal error codes that a person must fix (wrong tenant, id, secret, scope, consent); others are transient
AZURE_AD_CONFIG_ERRORS = frozenset({"invalid_client", "unauthorized_client", "invalid_scope", "invalid_request",
                                    "invalid_grant", "invalid_resource", "invalid_tenant"})


class AzureAd(Renewing):
    """Azure AD (Entra ID) client credentials through msal: Dynamics 365, Business Central, Dataverse.

    msal builds and parses the token requests (authority discovery, client assertion, errors); this
    class only caches like every other strategy. msal's own cache is emptied before each fetch so
    that a renewal after a 401 really gets a new token rather than msal's cached copy."""

    def __init__(self, authority: str, client_id: str, client_secret: str, scope: str, *,
                 timeout_s: float = 10.0, names: str = "", clock: Callable[[], float] = time.monotonic):
        super().__init__("Authorization", "Bearer ", clock)
        self.authority, self.scope, self._names = authority, scope, names
        self._client_id, self._client_secret = client_id, client_secret
        self._timeout_s = timeout_s
        self.secret_values = (client_secret, client_id)
        self._redact = Redactor.of(self.secret_values)
        self._http = requests.Session()
        self._app: msal.ConfidentialClientApplication | None = None

    def fetch(self) -> tuple[str, float]:
        what = f"Azure AD token ({self.authority})"
        try:
            app = self._application()
            app.remove_tokens_for_client()
            result = app.acquire_token_for_client(scopes=[self.scope])
        except requests.RequestException as exc:
            raise transport_error(exc, what) from None
        except msal.exceptions.MsalServiceError as exc:  # 429 / 5xx (msal keeps honouring Retry-After itself)
            raise RetryableError(f"{what} failed: {self._redact.excerpt(str(exc))}") from None
        except ValueError as exc:  # msal: the authority's discovery document was not usable
            self._app = None
            raise RetryableError(f"{what}: {self._redact.excerpt(str(exc))}") from None
        if "access_token" not in result:
            raise self._refused(result, what)
        self.secret_values = (*self.secret_values[:2], result["access_token"])
        return result["access_token"], float(result.get("expires_in") or DEFAULT_TOKEN_LIFETIME_S)

    def _application(self) -> msal.ConfidentialClientApplication:
        # built on first use: msal reads the authority's discovery document when it is created
        if self._app is None:
            self._app = msal.ConfidentialClientApplication(
                self._client_id, client_credential=self._client_secret, authority=self.authority,
                http_client=self._http, timeout=self._timeout_s, instance_discovery=False)
        return self._app

    def _refused(self, result: dict, what: str) -> BridgeError:
        error = str(result.get("error") or "no access_token")
        detail = self._redact.excerpt(str(result.get("error_description") or "")).split(" Trace ID")[0]
        if error in AZURE_AD_CONFIG_ERRORS:
            names = self._names or "the client id and secret"
            return ConfigError(f"Azure AD refused the credentials ({error}: {detail}): check {names}, the tenant "
                               f"in connection.auth.authority and the scope {self.scope}")
        return RetryableError(f"{what} failed ({error}: {detail})")

    def close(self) -> None:
        self._http.close()


class SessionLogin(Renewing):
    """A login that yields a cookie (SAP B1 Service Layer): ``login()`` returns (Cookie header
    value, idle lifetime s); ``logout(cookie)`` ends the session when the connector closes."""

    def __init__(self, login: Callable[[], tuple[str, float]], logout: Callable[[str], None] | None = None,
                 secret_values: tuple[str, ...] = (), clock: Callable[[], float] = time.monotonic):
        super().__init__("Cookie", "", clock, margin_s=0.0)  # login() states the usable lifetime itself
        self._login, self._logout = login, logout
        self._idle_s = 0.0
        self.secret_values = secret_values

    def fetch(self) -> tuple[str, float]:
        return self._login()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.current()
        request.headers[self.header] = token.value
        with self._lock:  # an idle session expires: every use pushes the idle deadline out
            if self._token is token:
                self._token = Token(token.value, self._clock() + self._idle_s, token.generation)
        return request

    def _refresh(self) -> Token:
        token = super()._refresh()
        self._idle_s = token.expires_at - self._clock()
        return token

    def close(self) -> None:
        with self._lock:
            token, self._token = self._token, None
        if token is not None and self._logout is not None:
            try:
                self._logout(token.value)
            except (requests.RequestException, BridgeError):
                pass  # shutting down: the target drops the session at its own timeout


def build(auth: Auth, secret: Secret, *, timeout_s: float = 10.0, realm: str | None = None,
          transient_token_errors: Collection[str] = ()) -> Strategy:
    """The strategy for a mapping's ``connection.auth`` (session_login is the connector's own:
    each system logs in its way, see SessionLogin). ``transient_token_errors``: the token
    endpoint's ``error`` values that are retried, not reported as wrong credentials."""
    kind, names = auth.kind, auth.secrets

    def value(role: str) -> str:
        return secret(names[role])

    if kind == "none":
        return NoAuth()
    if kind in ("bearer", "header"):
        prefix = auth.prefix if auth.prefix is not None else ("Bearer " if kind == "bearer" else "")
        return StaticHeader(auth.header, prefix, value("token"))
    if kind == "headers":
        if not names:
            raise ConfigError("headers auth needs connection.auth.secrets: header name -> secret name")
        return StaticHeaders({header: secret(name) for header, name in names.items()})
    if kind == "basic":  # no password named: an API key as the username (mapping/checks.KEY_AS_USERNAME)
        return Basic(value("username"), value("password") if "password" in names else "")
    if kind == "oauth1_tba":
        account = secret(names["account"]) if "account" in names else realm
        return OAuth1Tba(value("consumer_key"), value("consumer_secret"), value("token_id"), value("token_secret"),
                         realm=account)
    if kind in ("oauth2_client_credentials", "oauth2_refresh_token"):
        if auth.token_url is None:
            raise ConfigError(f"{kind} auth needs connection.auth.token_url")
        refresh = value("refresh_token") if kind == "oauth2_refresh_token" else None
        return OAuth2(auth.token_url, value("client_id"), value("client_secret"), refresh_token=refresh,
                      scope=auth.scope, header=auth.header,
                      prefix=auth.prefix if auth.prefix is not None else "Bearer ", timeout_s=timeout_s,
                      names=", ".join(names.values()), transient_errors=transient_token_errors)
    if kind == "azure_ad_client_credentials":
        if auth.authority is None or auth.scope is None:
            raise ConfigError(f"{kind} auth needs connection.auth.authority and connection.auth.scope")
        return AzureAd(auth.authority, value("client_id"), value("client_secret"), auth.scope, timeout_s=timeout_s,
                       names=", ".join(names.values()))
    raise ConfigError(f"auth kind {kind} is a login of the connector's own protocol; this connector has none")
