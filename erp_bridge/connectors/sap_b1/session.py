"""One Service Layer login shared by the dispatcher's threads.

``POST /Login`` sets two cookies: ``B1SESSION`` (the session) and ``ROUTEID`` (load-balancer
affinity: without it a request may land on a node that does not know the session). The login's
cookie jar is copied into each thread's own ``requests.Session`` (not documented as thread-safe),
so both go back on every call with the path and domain SL gave them. A 401 or SL's invalid-session
code re-logs in once and retries; the login generation makes sure that N threads hitting the same
expired session cause one re-login, not N. SL sessions end after ``SessionTimeout`` minutes idle,
so an idle session is renewed before use instead of spending a 401 on it.
"""
from __future__ import annotations

import copy
import threading
import time
from typing import Callable

import requests

from ...errors import BridgeError, RetryableError
from ..http import ThreadSessions
from .classify import SessionInvalid, classify, classify_login, classify_exception

CONNECT_TIMEOUT_S = 3.05
#: renew this long before SL would drop an idle session (clock skew, request duration)
EXPIRY_MARGIN_S = 30.0


class ServiceLayerSession:
    def __init__(self, base_url: str, company: str, username: str, password: str, *,
                 timeout_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.base_url = base_url.rstrip("/")
        self.timeout = (min(CONNECT_TIMEOUT_S, timeout_s), timeout_s)
        self._credentials = {"CompanyDB": company, "UserName": username, "Password": password}
        self.redact = tuple(v for v in (password, username) if v)
        self._clock = clock
        self._lock = threading.Lock()
        self._local = threading.local()  # this thread's copy of the login generation
        self._sessions = ThreadSessions()
        #: (login generation, its cookies): read and replaced as one value, so a thread never
        #: pairs one login's number with another login's cookies
        self._state: tuple[int, list] = (0, [])
        self._idle_limit_s = 0.0
        self._last_used = 0.0
        self.logins = 0  # how many times this process logged in (tests, metrics)

    def request(self, method: str, url: str, **kwargs) -> requests.Response:
        """Send with the session cookies; raises requests exceptions and login BridgeErrors."""
        state = self._ensure_login()
        response = self._send(method, url, state, **kwargs)
        if isinstance(classify(response, url), SessionInvalid):
            response.close()
            state = self._relogin(state)
            response = self._send(method, url, state, **kwargs)
        self._last_used = self._clock()
        return response

    def close(self) -> None:
        """Log out (ends the SL session, freeing its seat), then close every connection."""
        with self._lock:
            if self._state[1]:
                try:
                    self._send("POST", f"{self.base_url}/Logout", self._state).close()
                except requests.RequestException:
                    pass  # shutting down: SL drops the session at its timeout anyway
                self._state = (self._state[0], [])
            self._sessions.close()

    def _ensure_login(self) -> tuple[int, list]:
        with self._lock:
            idle = self._clock() - self._last_used
            if not self._state[1] or idle >= self._idle_limit_s:
                self._login()
            return self._state

    def _relogin(self, seen: tuple[int, list]) -> tuple[int, list]:
        with self._lock:
            if self._state[0] == seen[0]:  # nobody renewed it since this thread's attempt
                self._login()
            return self._state

    def _login(self) -> None:
        with requests.Session() as session:
            try:
                response = session.post(f"{self.base_url}/Login", json=self._credentials, timeout=self.timeout)
            except requests.RequestException as exc:
                raise classify_exception(exc, "POST Login") from None
            with response:
                outcome = classify_login(response, self.redact)
                if isinstance(outcome, BridgeError):
                    raise outcome
                self._accept(response, list(session.cookies))

    def _accept(self, response: requests.Response, cookies: list) -> None:
        if not any(c.name == "B1SESSION" for c in cookies):
            raise RetryableError("SAP Login answered without a B1SESSION cookie")
        timeout_min = float(response.json().get("SessionTimeout") or 30)
        self._state = (self._state[0] + 1, cookies)
        self._idle_limit_s = max(timeout_min * 60 - EXPIRY_MARGIN_S, timeout_min * 30)
        self._last_used = self._clock()
        self.logins += 1

    def _send(self, method: str, url: str, state: tuple[int, list], **kwargs) -> requests.Response:
        session = self._sessions.get()
        if getattr(self._local, "generation", None) != state[0]:
            session.cookies.clear()
            for cookie in state[1]:
                session.cookies.set_cookie(copy.copy(cookie))
            self._local.generation = state[0]
        return session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)

