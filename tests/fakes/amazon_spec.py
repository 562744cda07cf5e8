"""Amazon SP-API contracts (../shared/specs/amazon/: listingsItems_2021-08-01.json, ordersV0.json,
both Swagger 2.0) as request and response validators.

A request is matched to its operation by method and path template; then every parameter is
checked as the spec declares it (required, unknown names, integer bounds, enums, csv arrays and
their ``maxItems``) and the body is validated with jsonschema (Draft 4, ``$ref``s into the spec's
``definitions``). The prose rules of getOrders are checked too: LastUpdatedAfter or CreatedAfter,
not both kinds, LastUpdatedBefore not after LastUpdatedAfter... Used by the fake (it answers 400
InvalidInput) and by the contract tests (every request the connector sent).
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SPECS = {"listings": Path("../shared/specs/amazon/listingsItems_2021-08-01.json"),
         "orders": Path("../shared/specs/amazon/ordersV0.json")}


def available() -> bool:
    return all(p.exists() for p in SPECS.values())


@cache
def spec(name: str) -> dict:
    return json.loads(SPECS[name].read_text())


def operation(method: str, path: str) -> tuple[str, str, dict, dict[str, str]] | None:
    """(spec name, template, operation, path params) for ``method path``, or None."""
    for name in SPECS:
        for template, item in spec(name)["paths"].items():
            pattern = "^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
            found = re.match(pattern, path)
            if found and method.lower() in item:
                return name, template, item[method.lower()], found.groupdict()
    return None


def violations(method: str, path: str, query: dict[str, list[str]], body: Any) -> list[str]:
    """Every way the request breaks its operation's contract (empty: it conforms)."""
    match = operation(method, path)
    if match is None:
        return [f"{method} {path} is not an operation of the Listings Items or Orders v0 API"]
    name, template, op, path_params = match
    params = {p["name"]: p for p in op.get("parameters", [])}
    found = [f"path {k}: empty" for k, v in path_params.items() if not v]
    found += [f"query {k}: not a parameter of {op['operationId']}" for k in query if k not in params]
    for pname, param in params.items():
        if param["in"] == "query":
            found += _query(pname, param, query.get(pname))
        elif param["in"] == "body":
            found += _body(name, param, body)
    if op["operationId"] == "getOrders":
        found += _get_orders_rules(query)
    return found


def response_violations(method: str, path: str, status: int, body: Any) -> list[str]:
    """How an answer the fake gave breaks the operation's response schema (the fake's honesty)."""
    match = operation(method, path)
    if match is None:
        return [f"{method} {path}: no such operation"]
    name, _, op, _ = match
    schema = (op["responses"].get(str(status)) or {}).get("schema")
    if schema is None:
        return [f"{op['operationId']}: no response {status} in the spec"]
    validator = jsonschema.Draft4Validator({"definitions": spec(name)["definitions"], **schema})
    return [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in validator.iter_errors(body)]


def _query(name: str, param: dict, values: list[str] | None) -> list[str]:
    if not values:
        return [f"query {name}: required"] if param.get("required") else []
    if len(values) > 1:
        return [f"query {name}: given {len(values)} times (Swagger 2.0 arrays are one comma-separated value)"]
    value = values[0]
    if param.get("type") == "array":
        parts = value.split(",")
        found = [f"query {name}: {len(parts)} values, at most {param['maxItems']}"] \
            if "maxItems" in param and len(parts) > param["maxItems"] else []
        enum = (param.get("items") or {}).get("enum")
        return found + [f"query {name}: {p!r} not in {enum}" for p in parts if enum and p not in enum]
    if param.get("type") == "integer":
        if not value.lstrip("-").isdigit():
            return [f"query {name}: {value!r} is not an integer"]
        low, high = param.get("minimum"), param.get("maximum")
        if (low is not None and int(value) < low) or (high is not None and int(value) > high):
            return [f"query {name}: {value} outside {low}..{high}"]
    if param.get("enum") and value not in param["enum"]:
        return [f"query {name}: {value!r} not in {param['enum']}"]
    return []


def _body(name: str, param: dict, body: Any) -> list[str]:
    if body is None:
        return ["body: required"] if param.get("required") else []
    validator = jsonschema.Draft4Validator({"definitions": spec(name)["definitions"], **param["schema"]})
    return [f"body {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(body)]


def _get_orders_rules(query: dict[str, list[str]]) -> list[str]:
    """The rules ordersV0.json states in the parameters' descriptions."""
    one = {k: v[0] for k, v in query.items() if v}
    size = one.get("MaxResultsPerPage", "100")
    found = [] if size.isdigit() and 1 <= int(size) <= 100 else [f"MaxResultsPerPage: {size} outside 1..100"]
    if "NextToken" in one:
        return found
    if "LastUpdatedAfter" not in one and "CreatedAfter" not in one:
        found.append("either CreatedAfter or LastUpdatedAfter is required")
    if "LastUpdatedAfter" in one and ("CreatedAfter" in one or "CreatedBefore" in one):
        found.append("CreatedAfter/CreatedBefore cannot be set with LastUpdatedAfter")
    times = {k: iso(v) for k, v in one.items() if k.endswith(("After", "Before"))}
    found += [f"{k}: {one[k]!r} is not an ISO 8601 date with a zone" for k, t in times.items() if t is None]
    after, before = times.get("LastUpdatedAfter"), times.get("LastUpdatedBefore")
    if after and before and before < after:
        found.append("LastUpdatedBefore must be equal to or after LastUpdatedAfter")
    return found


def iso(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None
