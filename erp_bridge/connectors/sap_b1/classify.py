"""The one place a Service Layer response becomes an outcome (vendor-apis.md §1).

SL answers errors as ``{"error":{"code":<int>,"message":{"lang":"en-us","value":"..."}}}``. The
reason of a rejection is SAP's own code and message, never the request body (it can hold a
Login password) and never a credential the server might echo back.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import requests
from urllib3.exceptions import NewConnectionError

from ...errors import ConfigError, RejectedError, RetryableError
from ..base import Delivered, Outcome
from ..http_json import retry_after_s

#: SL's "Invalid session" / "session already timeout" code (seen on 401; [unconfirmed] in the
#: vendor sources, so a 401 alone is enough to re-login)
INVALID_SESSION_CODES = frozenset({301})
LOGIN_FAILED = 100000027
MAX_MESSAGE = 300


class SessionInvalid(RetryableError):
    """The session cookie is no longer valid: log in again (once) and retry the request."""


def sap_error(response: requests.Response) -> tuple[Any, str] | None:
    """(code, message value) of an SL error body, or None when the body is not one."""
    try:
        error = json.loads(response.content or b"null")["error"]
        message = error.get("message")
        value = message.get("value") if isinstance(message, dict) else message
        return error.get("code"), str(value or "")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def classify(response: requests.Response, what: str, redact: Sequence[str] = ()) -> Outcome:
    status, error = response.status_code, sap_error(response)
    if 200 <= status < 300:
        return Delivered()
    if status == 401 or (error and error[0] in INVALID_SESSION_CODES):
        return SessionInvalid(f"SAP session invalid or expired ({what})")
    if status in (429, 503):
        return RetryableError(f"HTTP {status} from {what}", after=retry_after_s(response.headers.get("Retry-After")))
    if status >= 500:
        return RetryableError(f"HTTP {status} from {what}{_reason(error, redact, ': ')}")
    if error is None:
        return RejectedError(f"HTTP {status} from {what} (no SAP error body)")
    return RejectedError(_reason(error, redact))


def classify_login(response: requests.Response, redact: Sequence[str]) -> Outcome:
    """Login refused for bad credentials is the operator's to fix, not worth retrying."""
    error = sap_error(response)
    if error and error[0] == LOGIN_FAILED or response.status_code == 401:
        return ConfigError(f"SAP Login refused: {_reason(error, redact) if error else 'HTTP 401'} "
                           "(check connection.database and the username/password secrets)")
    outcome = classify(response, "POST Login", redact)
    return RetryableError(str(outcome)) if isinstance(outcome, SessionInvalid) else outcome


def classify_exception(exc: requests.RequestException, what: str) -> RetryableError:
    kind = "timed out" if isinstance(exc, requests.Timeout) else "failed"
    # the exception text carries the full URL (an item code, a filter); name the type only
    return RetryableError(f"{what} {kind}: {type(exc).__name__}")


def never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached SL (refused, or no connection in time)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def _reason(error: tuple[Any, str] | None, redact: Sequence[str], prefix: str = "") -> str:
    if error is None:
        return ""
    text = " ".join(error[1].split())
    for value in redact:
        text = text.replace(value, "***")
    return f"{prefix}SAP error {error[0]}: {text[:MAX_MESSAGE]}"
