"""The Service Layer login, as the runtime's session strategy.

``POST /Login`` sets two cookies: ``B1SESSION`` (the session) and ``ROUTEID`` (load-balancer
affinity: without it a request may land on a node that does not know the session); both go back
on every call as one ``Cookie`` header. SL ends a session after ``SessionTimeout`` minutes idle, so
the strategy renews an idle session before use instead of spending a 401 on it; a 401 re-logs in
once (the runtime's renewal, one per login generation however many threads saw it).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import requests

from ...errors import ConfigError, RetryableError
from ..runtime.auth import SessionLogin
from ..runtime.classify import CONNECT_TIMEOUT_S, Redactor, classify_response, transport_error
from ..runtime.sender import Sender
from .classify import LOGIN_FAILED, sap_error, sap_message

#: renew this long before SL would drop an idle session (clock skew, request duration)
EXPIRY_MARGIN_S = 30.0
COOKIES = ("B1SESSION", "ROUTEID")


class ServiceLayerLogin:
    def __init__(self, base_url: str, company: str, username: str, password: str, timeout_s: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self._credentials = {"CompanyDB": company, "UserName": username, "Password": password}
        self._timeout = (min(CONNECT_TIMEOUT_S, timeout_s), timeout_s)
        self.redact = Redactor.of((password, username))

    def login(self) -> tuple[str, float]:
        """(Cookie header, idle lifetime in s); raises ConfigError for refused credentials."""
        with requests.Session() as http:
            try:
                response = http.post(f"{self.base_url}/Login", json=self._credentials, timeout=self._timeout)
            except requests.RequestException as exc:
                raise transport_error(exc, "POST Login") from None
            with response:
                self._check(response)
                cookies = {c.name: c.value for c in http.cookies if c.name in COOKIES}
                timeout_min = float(response.json().get("SessionTimeout") or 30)
        if "B1SESSION" not in cookies:
            raise RetryableError("SAP Login answered without a B1SESSION cookie")
        header = "; ".join(f"{name}={cookies[name]}" for name in COOKIES if name in cookies)
        return header, max(timeout_min * 60 - EXPIRY_MARGIN_S, timeout_min * 30)

    def logout(self, cookie: str) -> None:
        requests.post(f"{self.base_url}/Logout", headers={"Cookie": cookie}, timeout=self._timeout).close()

    def _check(self, response: requests.Response) -> None:
        error = sap_error(response)
        if response.status_code == 401 or (error and error[0] == LOGIN_FAILED):
            reason = self.redact(sap_message(response) or "HTTP 401")
            raise ConfigError(f"SAP Login refused: {reason} (check connection.database and the "
                              "username/password secrets)")
        outcome = classify_response(response, "POST Login", {}, self.redact, sap_message)
        if isinstance(outcome, Exception):
            raise outcome


def session_sender(system: str, base_url: str, company: str, username: str, password: str, *,
                   timeout_s: float = 10.0, on_status: dict | None = None,
                   clock: Callable[[], float] = time.monotonic) -> Sender:
    """The runtime's sender, logged in to SL through the session strategy."""
    sl = ServiceLayerLogin(base_url, company, username, password, timeout_s)
    strategy = SessionLogin(sl.login, sl.logout, secret_values=(password,), clock=clock)
    return Sender(system, timeout_s=timeout_s, auth=strategy, on_status=on_status, message=sap_message,
                  secret_values=(password, username), secret_names="the SAP username/password secrets")
