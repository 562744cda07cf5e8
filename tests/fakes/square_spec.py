"""Square's OpenAPI contract (../shared/specs/square/api.json), as a request validator.

Each request body is validated with jsonschema against the operation's own requestBody schema,
``$ref``s resolved inside the spec, plus the rules the spec states in prose: quantities are decimal
strings with at most 5 decimals, at most 100 changes per BatchChangeInventory. Unknown operations
deprecated operations and unknown top-level fields are violations too. Used by the fake (it answers 400 like Square) and
by the contract tests (every request the connector sent).
"""
from __future__ import annotations

import json
import re
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jsonschema

SPEC = Path("../shared/specs/square/api.json")
QUANTITY = re.compile(r"^-?\d{1,20}(\.\d{1,5})?$")
MAX_CHANGES = 100


@lru_cache(maxsize=1)
def spec() -> dict:
    return json.loads(SPEC.read_text())


def available() -> bool:
    return SPEC.exists()


@cache
def _validator(path: str, method: str) -> jsonschema.protocols.Validator:
    operation = spec()["paths"][path][method.lower()]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    document = {"components": spec()["components"], **schema}
    return jsonschema.Draft4Validator(document)


@cache
def _response_validator(path: str, method: str) -> jsonschema.protocols.Validator:
    schema = spec()["paths"][path][method.lower()]["responses"]["200"]["content"]["application/json"]["schema"]
    return jsonschema.Draft4Validator({"components": spec()["components"], **schema})


def response_violations(method: str, path: str, body: object) -> list[str]:
    """How a 200 answer the fake gave breaks the operation's response schema (the fake's honesty)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
            for e in _response_validator(path, method).iter_errors(body)]


def _properties(path: str, method: str) -> set[str]:
    schema = spec()["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]
    name = schema["$ref"].rsplit("/", 1)[-1]
    return set(spec()["components"]["schemas"][name]["properties"])


def violations(method: str, path: str, body: Any) -> list[str]:
    """Every way ``body`` breaks the contract of ``method path`` (empty: it conforms)."""
    if path not in spec()["paths"] or method.lower() not in spec()["paths"][path]:
        return [f"{method} {path} is not an operation of Square's API"]
    if spec()["paths"][path][method.lower()].get("deprecated"):
        return [f"{method} {path} is deprecated (the inventory aliases were retired on 2023-11-15)"]
    found = [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
             for e in _validator(path, method).iter_errors(body)]
    if isinstance(body, dict):
        found += [f"{k}: not a field of the request" for k in body if k not in _properties(path, method)]
        found += _prose_rules(body)
    return found


def _prose_rules(body: dict) -> list[str]:
    found = []
    changes = body.get("changes") or []
    if len(changes) > MAX_CHANGES:
        found.append(f"changes: {len(changes)} items, Square takes at most {MAX_CHANGES}")
    for n, change in enumerate(changes):
        detail = (change or {}).get("physical_count") or (change or {}).get("adjustment") or {}
        if "quantity" in detail and not QUANTITY.match(str(detail["quantity"])):
            found.append(f"changes/{n}: quantity {detail['quantity']!r} is not a decimal string (<= 5 decimals)")
    return found
