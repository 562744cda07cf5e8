"""Inventory Visibility's two-step token (../shared/specs/dynamics365/inventory-visibility-api.md,
"Authentication"): an Azure AD client-credentials token (msal, the runtime's ``AzureAd``) for the
documented app scope, then exchanged at the Inventory Visibility security service for the token the
API takes. Both are cached and renewed before they expire; a 401 from the API renews the second, a
401 from the security service renews the first.

The exchange is not OAuth (a JSON body, ``client_assertion_type: aad_app``), so no OAuth library
builds it; it is one JSON POST on ``requests`` with the runtime's timeout and error rules.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable

import requests

from ...errors import ConfigError, RetryableError
from ...mapping.schema import Auth
from ..runtime.auth import DEFAULT_TOKEN_LIFETIME_S, AzureAd, Renewing, Secret
from ..runtime.classify import CONNECT_TIMEOUT_S, Redactor, retry_after_s, transport_error

#: the Azure AD scope of step 1 and the service scope of step 2, as Microsoft documents them
AAD_SCOPE = "0cdb527f-a8d1-4bf8-9436-b352c68682b2/.default"
SERVICE_SCOPE = "https://inventoryservice.operations365.dynamics.com/.default"
SECURITY_SERVICE = "https://securityservice.operations365.dynamics.com/token"
_ENVIRONMENT = re.compile(r"/api/environment/([^/]+)")


class InventoryVisibilityToken(Renewing):
    def __init__(self, aad: AzureAd, environment_id: str, token_url: str = SECURITY_SERVICE, *,
                 timeout_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        super().__init__("Authorization", "Bearer ", clock)
        self.aad, self.environment_id, self.token_url = aad, environment_id, token_url
        self._timeout = (min(CONNECT_TIMEOUT_S, timeout_s), timeout_s)
        self._http = requests.Session()
        self.secret_values = aad.secret_values

    def fetch(self) -> tuple[str, float]:
        aad = self.aad.current()
        response = self._exchange(aad.value)
        if response.status_code == 401:  # the Azure AD token was refused: renew it once
            response.close()
            self.aad.renew(aad.generation)
            response = self._exchange(self.aad.current().value)
        with response:
            value, lifetime = self._read_token(response)
        self.secret_values = (*self.aad.secret_values, value)  # both tokens, and the client secret
        return value, lifetime

    def _exchange(self, aad_token: str) -> requests.Response:
        body = {"grant_type": "client_credentials", "client_assertion_type": "aad_app",
                "client_assertion": aad_token, "scope": SERVICE_SCOPE, "context": self.environment_id,
                "context_type": "finops-env"}
        try:  # the service may answer 307 to a regional gateway: requests re-POSTs the body there
            return self._http.post(self.token_url, json=body, timeout=self._timeout, headers={"Api-Version": "1.0"})
        except requests.RequestException as exc:
            raise transport_error(exc, f"POST {self.token_url} (Inventory Visibility token)") from None

    def _read_token(self, response: requests.Response) -> tuple[str, float]:
        what, redact = f"POST {self.token_url} (Inventory Visibility token)", Redactor.of(self.secret_values)
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(f"HTTP {response.status_code} from {what}",
                                 after=retry_after_s(response.headers.get("Retry-After")))
        try:
            token = response.json()
        except ValueError:
            token = None
        if not response.ok or not isinstance(token, dict) or not token.get("access_token"):
            raise ConfigError(f"the Inventory Visibility security service refused the token exchange (HTTP "
                              f"{response.status_code}: {redact.excerpt(response.text)}): check that the app "
                              f"registration is allowed in Inventory Visibility and that environment id "
                              f"{self.environment_id} (from connection.base_url) is the F&O environment")
        return str(token["access_token"]), float(token.get("expires_in") or DEFAULT_TOKEN_LIFETIME_S)

    def close(self) -> None:
        self.aad.close()
        self._http.close()


def environment_id(base_url: str) -> str:
    found = _ENVIRONMENT.search(base_url)
    if not found:
        raise ConfigError("dynamics365_iv: connection.base_url must end in /api/environment/<environment id> "
                          "(the Inventory Visibility endpoint and the F&O environment id)")
    return found.group(1)


def build(auth: Auth, secret: Secret, base_url: str, *, timeout_s: float = 10.0,
          clock: Callable[[], float] = time.monotonic) -> InventoryVisibilityToken:
    """The strategy for ``auth.kind: inventory_visibility``: ``authority`` is the tenant, ``scope``
    (default the documented app scope) is step 1, ``token_url`` (default the security service) step 2."""
    if auth.authority is None:
        raise ConfigError("inventory_visibility auth needs connection.auth.authority "
                          "(https://login.microsoftonline.com/<tenant id>)")
    names = auth.secrets
    aad = AzureAd(auth.authority, secret(names["client_id"]), secret(names["client_secret"]), auth.scope or AAD_SCOPE,
                  timeout_s=timeout_s, names=", ".join(names.values()), clock=clock)
    return InventoryVisibilityToken(aad, environment_id(base_url), auth.token_url or SECURITY_SERVICE,
                                    timeout_s=timeout_s, clock=clock)
