"""An Azure AD (Entra ID) double, over TLS on 127.0.0.1 (msal only talks to https authorities):
``GET /<tenant>/v2.0/.well-known/openid-configuration`` and ``POST /<tenant>/oauth2/v2.0/token``
for the client-credentials grant, as the Microsoft identity platform documents them: the token
answer ``{token_type, expires_in, ext_expires_in, access_token}``; refusals with AADSTS codes
(``invalid_client`` 401 for a wrong secret, ``unauthorized_client`` 400 for an unknown app,
``invalid_scope`` 400). Tokens expire on the given clock; API doubles ask ``valid(token, scope)``.
Point requests at the test CA with ``REQUESTS_CA_BUNDLE=<ca_file>`` (the ``ca_bundle`` fixture).
"""
from __future__ import annotations

import json
import secrets
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

from .http_server import Answer, Served

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


class FakeAzureAd:
    def __init__(self, ca_dir: Path, clients: dict[str, str] | None = None, *, lifetime_s: int = 3599,
                 scopes: tuple[str, ...] = (), clock: Callable[[], float] = time.time):
        self.clients = clients or {"bridge-app": "app-secret-123"}
        self.lifetime_s, self.scopes, self.clock = lifetime_s, set(scopes), clock
        self.issued: dict[str, tuple[str, float]] = {}
        self.token_requests: list[dict[str, str]] = []
        ca = trustme.CA()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.ca_file = ca_dir / "azure-ad-test-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.served = Served(self, tls=context)

    @property
    def authority(self) -> str:
        return f"{self.served.origin}/{TENANT}"

    def __enter__(self) -> FakeAzureAd:
        self.served.up()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.served.down()

    def valid(self, token: str, scope: str) -> bool:
        found = self.issued.get(token)
        return found is not None and found[0] == scope and self.clock() < found[1]

    def expire_all(self) -> None:
        self.issued = {t: (s, 0.0) for t, (s, _) in self.issued.items()}

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        route = urlsplit(path).path
        if method == "GET" and route == f"/{TENANT}/v2.0/.well-known/openid-configuration":
            return _json(200, self._discovery())
        if method == "POST" and route == f"/{TENANT}/oauth2/v2.0/token":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            self.token_requests.append(form)
            return self._token(form)
        return _json(404, {"error": "invalid_request", "error_description": f"AADSTS90002: no route {route}"})

    def _discovery(self) -> dict:
        base = self.authority
        return {"token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{base}/v2.0", "token_endpoint_auth_methods_supported": ["client_secret_post"]}

    def _token(self, form: dict[str, str]) -> Answer:
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "AADSTS70003: the app requested an unsupported grant type")
        if form.get("client_id") not in self.clients:
            return _error(400, "unauthorized_client", f"AADSTS700016: Application with identifier "
                                                      f"'{form.get('client_id')}' was not found in the directory")
        if form.get("client_secret") != self.clients[form["client_id"]]:
            return _error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the secret "
                                                 "being sent in the request is the client secret value")
        scope = form.get("scope", "")
        if not scope.endswith("/.default") or (self.scopes and scope not in self.scopes):
            return _error(400, "invalid_scope", f"AADSTS1002012: The provided value for scope {scope} is not valid")
        token = "eyJ0eX" + secrets.token_urlsafe(24)
        self.issued[token] = (scope, self.clock() + self.lifetime_s)
        return _json(200, {"token_type": "Bearer", "expires_in": self.lifetime_s, "ext_expires_in": self.lifetime_s,
                           "access_token": token})


def _error(status: int, code: str, description: str) -> Answer:
    return _json(status, {"error": code, "error_description": f"{description}\r\nTrace ID: 0000\r\n",
                          "error_codes": [int(description[6:description.index(":")])]})


def _json(status: int, payload: Any) -> Answer:
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(payload).encode()
