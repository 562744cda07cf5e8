"""How Dynamics 365 says what went wrong, for the runtime's classification (``VendorMessage``).

F&O OData answers ``{"error": {"code": "", "message": "An error has occurred.", "innererror":
{"message": "Write failed for table row of type 'InventJournalTrans'. Infolog: ...", "type": ...,
"stacktrace": ...}}}``: the entity's own validation text is the inner message, the outer one is
generic. Inventory Visibility (an ASP.NET service) answers problem details (``title``, ``errors``) or
``{"message": ...}``. The stack trace is never kept: it is long and says nothing an operator can fix.
"""
from __future__ import annotations

import json
from typing import Any

import requests


def d365_message(response: requests.Response) -> str | None:
    return message_of(response.text)


def message_of(text: str) -> str | None:
    """``D365 error: <the most specific message>`` from an error body, or None when it is not one."""
    try:
        body = json.loads(text or "null")
    except ValueError:
        return None
    found = _odata(body) or _problem(body)
    return f"D365 error: {found}" if found else None


def _odata(body: Any) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    inner = error.get("innererror")
    text = (inner.get("message") if isinstance(inner, dict) else None) or error.get("message")
    code = error.get("code")
    return f"{code}: {text}" if code and text else str(text or code or "") or None


def _problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    errors = body.get("errors")
    if isinstance(errors, dict) and errors:  # {"field": ["what is wrong"]}
        details = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in errors.items())
        return f"{body.get('title') or 'validation failed'} ({details})"
    text = body.get("message") or body.get("title") or body.get("detail")
    return str(text) if text else None
