"""The documented contract of PrestaShop's webservice, read from ``../shared/specs/prestashop`` (the
PrestaShop devdocs pages, 8.x; CC BY-NC-SA, referenced, never copied here). There is no
machine-readable spec: each resource page has a field table (name, format, required, max size, "not
filterable") and the resource's blank XML schema; the list parameters are in
docs-tutorials_advanced-use_additional-list-parameters.md and docs-getting-started.md.

Used by the contract test (every request the connector sent) and by the double (which refuses what
PrestaShop refuses).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import xmltodict

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "prestashop"
RESOURCES = {"stock_availables": "stock_available", "orders": "order", "order_details": "order_detail",
             "order_histories": "order_history"}
#: docs-reference.md, "Generic value types" (and isBool "0|1")
FORMATS = {"isUnsignedId": r"\d+", "isNullOrUnsignedId": r"\d*", "isInt": r"-?\d+", "isUnsignedInt": r"\d+",
           "isBool": r"[01]", "isFloat": r"-?\d+(\.\d+)?", "isPrice": r"-?\d+(\.\d+)?",
           "isDate": r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", "isString": r"[^<>]*"}
#: "filter[field]" value forms (additional-list-parameters.md, "Filter parameter"; getting-started.md)
FILTER = re.compile(r"^!?\[[^\[\]]*\]%?$|^%\[[^\[\]]*\]%?$|^[<>]\[[^\[\]]*\]$|^[^\[\]]+$")
SORT = re.compile(r"^\[\w+_(ASC|DESC)(,\w+_(ASC|DESC))*\]$")
LIMIT = re.compile(r"^(\d+,)?\d+$")  # "[offset,]limit"
DISPLAY = re.compile(r"^full$|^\[\w+(,\w+)*\]$")
#: the GET parameters the pages document; anything else is not the webservice's
PARAMETERS = {"display", "sort", "limit", "date", "language", "id_shop", "id_group_shop", "schema",
              "output_format", "io_format", "sendemail"}


@dataclass(frozen=True)
class Field:
    name: str
    format: str
    required: bool
    max_size: int | None
    filterable: bool


def available() -> bool:
    return (SPECS / "docs-resources_stock_availables.md").exists()


def page(plural: str) -> str:
    return (SPECS / f"docs-resources_{plural}.md").read_text(encoding="utf-8")


@cache
def fields(plural: str) -> dict[str, Field]:
    """The field table of ``docs-resources_<plural>.md``."""
    rows = [line for line in page(plural).splitlines() if line.startswith("|")]
    head = [c.strip().lower() for c in rows[0].strip("|").split("|")]
    out = {}
    for row in rows[2:]:
        cells = dict(zip(head, (c.strip() for c in row.strip("|").split("|")), strict=False))
        name = cells["name"].strip("*")
        size = cells.get("max size", "")
        out[name] = Field(name, cells.get("format", ""), "✔" in cells.get("required", ""),
                          int(size) if size.isdigit() else None, cells.get("not filterable", "") != "true")
    return out


@cache
def blank(plural: str) -> tuple[str, ...]:
    """The element names of the resource's blank schema, in order (``id`` first)."""
    xml = page(plural).split("```xml", 1)[1].split("```", 1)[0]
    resource = xmltodict.parse(xml)["prestashop"][RESOURCES[plural]]
    return tuple(k for k in resource if not k.startswith("@"))


def body_problems(plural: str, values: dict[str, str]) -> list[str]:
    """What is wrong with a written resource: a field the blank schema lacks, a required field
    missing or empty, a value not in its format or over its max size, formatting inside a tag."""
    table, known = fields(plural), blank(plural)
    problems = [f"{name}: not a field of {RESOURCES[plural]}" for name in values if name not in known]
    for name, field in table.items():
        value = values.get(name)
        if value is None or value == "":
            if field.required:
                problems.append(f"{name}: required")
            continue
        if value != value.strip():
            problems.append(f"{name}: formatting inside the tag")
        pattern = FORMATS.get(field.format)
        if pattern and not re.fullmatch(pattern, value):
            problems.append(f"{name}: {value!r} is not {field.format}")
        if field.max_size and len(value) > field.max_size:
            problems.append(f"{name}: longer than {field.max_size}")
    return problems


def query_problems(plural: str, url: str) -> list[str]:
    """What is wrong with a listing's GET parameters, by the list-parameter docs."""
    params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    table = fields(plural) if (SPECS / f"docs-resources_{plural}.md").exists() else None
    names = {"id", *table} if table is not None else None
    problems = []
    for key, value in params.items():
        match = re.fullmatch(r"filter\[(\w+)\]", key)
        if match:
            problems += _filter_problems(match.group(1), value, names, table, params)
        elif key not in PARAMETERS:
            problems.append(f"{key}: not a documented parameter")
    problems += _form_problems(params, names)
    return problems


def _filter_problems(name: str, value: str, names: set[str] | None, table: dict[str, Field] | None,
                     params: dict[str, str]) -> list[str]:
    problems = []
    if names is not None and name not in names:
        problems.append(f"filter[{name}]: not a field")
    elif table is not None and name in table and not table[name].filterable:
        problems.append(f"filter[{name}]: not filterable")
    if not FILTER.match(value):
        problems.append(f"filter[{name}]={value!r}: not a documented filter form")
    if name.startswith("date_") and params.get("date") != "1":
        problems.append(f"filter[{name}]: date filtering needs date=1")
    return problems


def _form_problems(params: dict[str, str], names: set[str] | None) -> list[str]:
    problems = []
    if "display" in params and not DISPLAY.match(params["display"]):
        problems.append(f"display={params['display']!r}: not full or [field,...]")
    elif names is not None and params.get("display", "full") != "full":
        problems += [f"display: {f} is not a field" for f in params["display"][1:-1].split(",") if f not in names]
    if "sort" in params:
        if not SORT.match(params["sort"]):
            problems.append(f"sort={params['sort']!r}: not [field_ASC|DESC,...]")
        elif "date_" in params["sort"] and params.get("date") != "1":
            problems.append("sort by a date field needs date=1")
    if "limit" in params and not LIMIT.match(params["limit"]):
        problems.append(f"limit={params['limit']!r}: not [offset,]limit")
    return problems
