"""What the engine hands a connector: the request, with secret placeholders, and its exact JSON.

Header values hold placeholders, never secrets: ``{secret:NAME}`` for a configured secret and
``{auth:KIND}`` for a credential the connector derives at run time (a session cookie, an OAuth
token, a TBA signature). The connector substitutes them just before sending; previews mask them.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from .transforms import _text

PLACEHOLDER = re.compile(r"\{(secret|auth):([a-z0-9_]+)\}")
MASK = "***"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: Any
    #: idempotency key: the event's key (a batched document: the first event's key + "+N")
    key: str
    #: every event key this request carries, in order
    keys: tuple[str, ...] = ()
    #: which ``requests`` entry of the mapping built it
    name: str = ""

    def json_body(self) -> str | None:
        """The body exactly as it goes on the wire (Decimal digits kept, compact)."""
        return None if self.body is None else to_json(self.body)


def to_json(value: Any, indent: int | None = None) -> str:
    """JSON with Decimal written digit for digit (json.dumps would need floats and lose them)."""
    return _dump(value, indent, 0)


def _dump(value: Any, indent: int | None, depth: int) -> str:
    if isinstance(value, dict):
        items = [f"{json.dumps(str(k))}:{' ' if indent is not None else ''}{_dump(v, indent, depth + 1)}"
                 for k, v in value.items()]
        return _join("{", items, "}", indent, depth)
    if isinstance(value, (list, tuple)):
        return _join("[", [_dump(v, indent, depth + 1) for v in value], "]", indent, depth)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return json.dumps(_text(value))
    return json.dumps(value)


def _join(open_: str, items: list[str], close: str, indent: int | None, depth: int) -> str:
    if not items:
        return open_ + close
    if indent is None:
        return open_ + ",".join(items) + close
    pad, inner = " " * indent * depth, " " * indent * (depth + 1)
    return open_ + "\n" + ",\n".join(inner + i for i in items) + "\n" + pad + close


def mask(text: str) -> str:
    return PLACEHOLDER.sub(MASK, text)
