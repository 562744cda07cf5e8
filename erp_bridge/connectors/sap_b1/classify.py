"""How SAP Business One Service Layer says what went wrong (vendor-apis.md §1).

SL answers errors as ``{"error":{"code":<int>,"message":{"lang":"en-us","value":"..."}}}``. The
reason of a rejection is SAP's own code and message, never the request body (it can hold a
Login password); the runtime redacts every credential the server might echo back.
"""
from __future__ import annotations

import json
from typing import Any

import requests

LOGIN_FAILED = 100000027


def sap_error(response: requests.Response) -> tuple[Any, str] | None:
    """(code, message value) of an SL error body, or None when the body is not one."""
    try:
        error = json.loads(response.content or b"null")["error"]
        message = error.get("message")
        value = message.get("value") if isinstance(message, dict) else message
        return error.get("code"), str(value or "")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def sap_message(response: requests.Response) -> str | None:
    """The runtime's vendor message for SL: ``SAP error <code>: <message>``."""
    error = sap_error(response)
    return None if error is None else f"SAP error {error[0]}: {error[1]}"
