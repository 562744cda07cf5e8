"""SuiteTalk SOAP token-based authentication: the ``TokenPassport`` header element.

SOAP TBA is not OAuth 1.0a over HTTP (the runtime's ``OAuth1Tba`` signs HTTP requests for the REST
API): the credential is an element of every envelope, signed over
``account&consumerKey&tokenId&nonce&timestamp`` with the key ``consumerSecret&tokenSecret``,
HMAC-SHA256, Base64 (Oracle, "TokenPassport Complex Type"). The HMAC itself is oauthlib's RFC 5849
``sign_hmac_sha256_with_client``, which builds exactly that key; it percent-encodes the secrets first, a no-op
for the hex secrets NetSuite issues, and ``check_secret`` refuses any other secret rather than
sign with a key NetSuite does not use. Nonce and timestamp come from oauthlib too; a fresh pair
per envelope, so a retried request is never refused as a replay.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from oauthlib.common import generate_nonce, generate_timestamp
from oauthlib.oauth1 import Client
from oauthlib.oauth1.rfc5849.signature import sign_hmac_sha256_with_client
from oauthlib.oauth1.rfc5849.utils import escape

from ...errors import ConfigError
from ..runtime.auth import Strategy

ALGORITHM = "HMAC-SHA256"
ROLES = ("account", "consumer_key", "consumer_secret", "token_id", "token_secret")


@dataclass(frozen=True)
class TbaCredentials:
    account: str
    consumer_key: str
    consumer_secret: str
    token_id: str
    token_secret: str

    @classmethod
    def from_secrets(cls, names: dict[str, str], secret: Callable[[str], str]) -> TbaCredentials:
        missing = [role for role in ROLES if role not in names]
        if missing:
            raise ConfigError(f"NetSuite TBA needs connection.auth.secrets for {', '.join(missing)} "
                              f"(all of: {', '.join(ROLES)})")
        values = {role: secret(names[role]) for role in ROLES}
        for role in ("consumer_secret", "token_secret"):
            check_secret(values[role], names[role])
        return cls(**values)


def check_secret(value: str, name: str) -> None:
    # never echo the value: the message names the secret only
    if escape(value) != value:
        raise ConfigError(f"secret {name} holds characters NetSuite never issues in a TBA secret "
                          "(it issues hexadecimal strings): paste it again from the integration record or token")


def signature(creds: TbaCredentials, nonce: str, timestamp: str) -> str:
    base = "&".join((creds.account, creds.consumer_key, creds.token_id, nonce, timestamp))
    client = Client(creds.consumer_key, client_secret=creds.consumer_secret, resource_owner_key=creds.token_id,
                    resource_owner_secret=creds.token_secret)
    return sign_hmac_sha256_with_client(base, client)


class TbaPassport(Strategy):
    """The SOAP credential: nothing on the HTTP request, a signed passport in every envelope.
    As a runtime strategy its secret values are redacted from every error the sender reports."""

    def __init__(self, creds: TbaCredentials, nonce: Callable[[], str] = generate_nonce,
                 timestamp: Callable[[], str] = generate_timestamp):
        self.creds, self._nonce, self._timestamp = creds, nonce, timestamp
        self.secret_values = (creds.consumer_secret, creds.token_secret, creds.consumer_key, creds.token_id)

    def header(self) -> dict:
        """The ``tokenPassport`` header value as zeep takes it (a fresh nonce and timestamp)."""
        nonce, timestamp = self._nonce(), self._timestamp()
        return {"account": self.creds.account, "consumerKey": self.creds.consumer_key, "token": self.creds.token_id,
                "nonce": nonce, "timestamp": int(timestamp),
                "signature": {"_value_1": signature(self.creds, nonce, timestamp), "algorithm": ALGORITHM}}


def masked_header() -> dict:
    """What previews show: the passport's shape, no credential."""
    return {"account": "***", "consumerKey": "***", "token": "***", "nonce": "***", "timestamp": 0,
            "signature": {"_value_1": "***", "algorithm": ALGORITHM}}
