"""A refresh token that the token endpoint rotates, kept where every bridge process finds it.

RFC 6749 section 6 lets a server issue a new refresh token with each access token and revoke the
old one (Lightspeed Retail does, on every refresh). Kept in memory only, the configured token
would be spent after the first refresh, and the bridge could not log in again after a restart.
``StoredRefreshToken`` keeps the newest one in the system's inbox (the queue's storage, so every
worker and host sharing the queue sees it) beside a fingerprint of the *configured* secret: when
an operator re-authorises and configures a new refresh token, the stored one is ignored.
"""
from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager

from .inbox import Inbox

NAME = "oauth2:refresh_token"


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


class StoredRefreshToken:
    def __init__(self, inbox: Inbox, configured: str):
        self._inbox, self._configured = inbox, configured

    def load(self) -> str:
        """The newest refresh token: the stored one, unless the configured secret changed since."""
        stored = self._inbox.cursor(NAME) or ""
        mark, _, token = stored.partition(" ")
        return token if token and mark == fingerprint(self._configured) else self._configured

    def exclusive(self, wait_s: float) -> AbstractContextManager[object]:
        """Held from ``load`` through the token request to ``save``: two processes refreshing at
        once would both send the same single-use token, and the second would be refused."""
        return self._inbox.exclusive(NAME, wait_s)

    def save(self, token: str) -> None:
        self._inbox.advance(NAME, f"{fingerprint(self._configured)} {token}")

    def close(self) -> None:
        self._inbox.close()
