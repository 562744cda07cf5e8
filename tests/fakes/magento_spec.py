"""Magento's admin REST contract (../shared/specs/magento2/admin-schema-2.4.9.yaml, Swagger 2.0), as a
request validator for the fake and the contract tests.

- the operation must exist (method + path template, after the ``/rest/<store code>`` prefix);
- every query parameter must be one the operation lists (``searchCriteria[...][N]`` indices are
  compared as the schema's ``[0]``), integers where it says integer;
- the body is validated with jsonschema against the operation's body schema, ``$ref``s resolved,
  with unknown properties refused (Magento's ServiceInputProcessor refuses a property its data
  interface has no setter for). ``catalog-inventory-data-stock-item-interface`` lists 23 required
  fields because the generator marks every non-nullable getter; Magento itself merges a partial
  stock item into the stored one (StockRegistry::updateStockItemBySku), as the bridge's
  ``{qty, is_in_stock}`` relies on, so ``required`` is not enforced for it.
- Prose rules: source items need ``sku`` and ``source_code`` (docs-rest_inventory_manage-source-items.md)
  and, per Magento's own validation, a numeric ``quantity`` and ``status``.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SPEC = Path("../shared/specs/magento2/admin-schema-2.4.9.yaml")
PREFIX = re.compile(r"^/rest(/[A-Za-z0-9_]+)?(?=/V1/)")
INDEX = re.compile(r"\[\d+\]")
#: the operations the bridge uses
OPERATIONS = {("post", "/V1/inventory/source-items"), ("get", "/V1/orders"), ("get", "/V1/creditmemos"),
              ("get", "/V1/stockItems/{productSku}"), ("put", "/V1/products/{productSku}/stockItems/{itemId}")}
MERGED = {"catalog-inventory-data-stock-item-interface"}


def available() -> bool:
    return SPEC.exists()


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    return yaml.load(SPEC.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def operation(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """(template, operation) of ``path`` (with or without /rest/<store>), or None."""
    bare = PREFIX.sub("", path.split("?")[0])
    for template, ops in spec()["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, bare) and method.lower() in ops:
            return template, ops[method.lower()]
    return None


def violations(method: str, path: str, query: dict[str, list[str]], body: Any) -> list[str]:
    found = operation(method, path)
    if found is None:
        return [f"{method} {path}: no such operation in the admin schema"]
    template, op = found
    params = {p["name"]: p for p in op.get("parameters") or []}
    problems = [f"query parameter {name!r} is not one {template} takes" for name in query
                if INDEX.sub("[0]", name) not in params]
    problems += [f"query parameter {name!r} must be an integer" for name, values in query.items()
                 if params.get(INDEX.sub("[0]", name), {}).get("type") == "integer"
                 and not all(re.fullmatch(r"-?\d+", v) for v in values)]
    body_param = next((p for p in params.values() if p.get("in") == "body"), None)
    if body_param is None:
        return problems + (["this operation takes no body"] if body is not None else [])
    schema = strict(body_param["schema"])
    problems += [f"body{_where(e)}: {e.message}" for e in jsonschema.Draft4Validator(schema).iter_errors(body)]
    return problems + _prose(template, body)


def strict(schema: Any, depth: int = 0) -> Any:
    """``schema`` with ``$ref``s inlined and unknown properties refused (request bodies only: no cycles)."""
    if depth > 12:
        return {}
    if isinstance(schema, list):
        return [strict(s, depth + 1) for s in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        inlined = strict(spec()["definitions"][name], depth + 1)
        return {k: v for k, v in inlined.items() if k != "required"} if name in MERGED else inlined
    out = {k: strict(v, depth + 1) for k, v in schema.items() if k not in ("xml", "description")}
    if out.get("type") == "object" and "properties" in out:
        out["additionalProperties"] = False
    return out


def _prose(template: str, body: Any) -> list[str]:
    if template != "/V1/inventory/source-items" or not isinstance(body, dict):
        return []
    return [f"body/sourceItems/{n}: {name} is required" for n, item in enumerate(body.get("sourceItems") or [])
            for name in ("sku", "source_code", "quantity", "status") if isinstance(item, dict) and name not in item]


def response_violations(method: str, path: str, status: int, body: Any) -> list[str]:
    """The fake's own answer checked against the operation's response schema (keeps the fake honest)."""
    found = operation(method, path)
    if found is None:
        return [f"{method} {path}: no such operation"]
    responses = found[1].get("responses") or {}
    answer = responses.get(str(status)) or {}  # "default" describes errors: a 2xx it does not list is unchecked
    schema = answer.get("schema")
    if schema is None:
        return []
    resolver = {"definitions": spec()["definitions"], **schema}
    # Swagger 2.0 cannot say "nullable": Magento answers null for an unset field (low_stock_date)
    return [f"answer{_where(e)}: {e.message}" for e in jsonschema.Draft4Validator(resolver).iter_errors(body)
            if not (e.validator == "type" and e.instance is None)]


def _where(error: jsonschema.ValidationError) -> str:
    return "".join(f"/{p}" for p in error.absolute_path)
