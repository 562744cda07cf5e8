"""WooCommerce publishes no OpenAPI: its contract is the REST API v3 reference (Markdown tables).
This reads the property tables of products and variations from ``../shared/specs/woocommerce``
and checks a batch body against them: only documented, writable attributes, each of its documented
type, ids present, at most 100 objects (the documented default limit). The fake WooCommerce
refuses what this refuses, so a connector that drifts from the docs fails its tests.
"""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

SPECS = Path("../shared/specs/woocommerce")
DOCS = {"product": SPECS / "_products.md", "variation": SPECS / "_product-variations.md"}
TABLE_ROW = re.compile(r"^\|\s*`(?P<name>\w+)`\s*\|\s*(?P<type>[\w-]+)\s*\|(?P<text>.*)\|\s*$")
BATCH_LIMIT = 100
PYTHON_TYPES: dict[str, tuple[type, ...]] = {"integer": (int,), "boolean": (bool,), "string": (str,),
                                             "array": (list,), "object": (dict,), "date-time": (str,),
                                             "number": (int, float)}


@cache
def properties(resource: str) -> dict[str, tuple[str, bool]]:
    """attribute -> (type, read-only) from the first property table of the resource's page."""
    found: dict[str, tuple[str, bool]] = {}
    started = False
    for line in DOCS[resource].read_text().splitlines():
        match = TABLE_ROW.match(line)
        if match:
            started = True
            found[match["name"]] = (match["type"], "read-only" in match["text"])
        elif started and not line.startswith("|"):
            break  # the end of the first table: later tables describe nested objects
    return found


def batch_problems(resource: str, body: Any) -> list[str]:
    """Why ``body`` is not a valid ``{"update": [...]}`` batch of ``resource`` ("" when it is)."""
    if not isinstance(body, dict) or set(body) - {"create", "update", "delete"}:
        return ["a batch body is an object with create, update and/or delete"]
    updates = body.get("update", [])
    if not isinstance(updates, list):
        return ["update must be an array"]
    problems = [f"more than {BATCH_LIMIT} objects"] if len(updates) > BATCH_LIMIT else []
    for n, item in enumerate(updates):
        problems += [f"update[{n}]: {p}" for p in _object_problems(resource, item)]
    return problems


def _object_problems(resource: str, item: Any) -> list[str]:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int) or isinstance(item.get("id"), bool):
        return ["an update needs an integer id"]
    documented, problems = properties(resource), []
    for name, value in item.items():
        if name not in documented:
            problems.append(f"{name} is not a documented {resource} property")
            continue
        kind, read_only = documented[name]
        if read_only and name != "id":
            problems.append(f"{name} is read-only")
        allowed = PYTHON_TYPES.get(kind, (object,))
        if value is not None and (not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool))):
            problems.append(f"{name} must be {kind}, got {type(value).__name__}")
    return problems
