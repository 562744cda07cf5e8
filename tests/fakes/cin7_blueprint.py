"""Cin7 Core's API Blueprint (../shared/specs/cin7-core/dearinventory.apib), read as a request checker.

The blueprint is Markdown: each resource has field tables (``|`Name`|Type|Length|Required|Notes|``)
and ``### GET [GET /path?A={A}&B={B}]`` URI templates. This module reads what the bridge's requests
must follow from them, so the double and the contract tests check against the vendor's text, not
against a copy of it:
- the fields a stock adjustment POST takes ("Available Fields for Post/Put") and those a line
  takes (the "New Stock Line Model"), with the required ones;
- the query parameters ``GET saleList`` and ``GET sale`` take;
- the date format ("yyyy-MM-ddTHH:mm:ss.fff", UTC) and the page size bounds (1..1000).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

SPEC = Path("../shared/specs/cin7-core/dearinventory.apib")
ROW = re.compile(r"^\|\s*`([A-Za-z0-9]+)\s*`\s*\|\s*([^|]*)\|\s*([^|]*)\|\s*([^|]*)\|")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?$")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool


def available() -> bool:
    return SPEC.exists()


@lru_cache(maxsize=1)
def text() -> str:
    return SPEC.read_text(encoding="utf-8")


def section(heading: str) -> str:
    """The text from the line starting with ``heading`` to the next heading of any level."""
    lines = text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(heading))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return "\n".join(lines[start:end])


def fields(heading: str, after: str | None = None) -> dict[str, Field]:
    """The field table under ``heading`` (the first one after the line ``after``, if given)."""
    if after is not None:
        body = text()[text().index(after):]
        lines = body.splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip().startswith(heading))
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
        chunk = "\n".join(lines[start:end])
    else:
        chunk = section(heading)
    found = {}
    for line in chunk.splitlines():
        match = ROW.match(line.strip())
        if match:
            name, kind, _length, required = (g.strip() for g in match.groups())
            found[name] = Field(name, kind, required.lower().startswith("yes"))
    return found


def adjustment_fields() -> dict[str, Field]:
    return fields("### Available Fields for Post/Put", after="## Stock Adjustment [/stockadjustment]")


def line_fields() -> dict[str, Field]:
    return fields("## New Stock Line Model")


def query_params(resource: str) -> set[str]:
    """The parameters of ``### GET [GET /<resource>?...]``."""
    match = re.search(r"### GET \[GET /" + re.escape(resource) + r"\?([^\]]+)\]", text())
    assert match, f"no GET /{resource} in the blueprint"
    return set(re.findall(r"([A-Za-z]+)=\{", match.group(1)))


def page_limit() -> tuple[int, int]:
    """"The minimum page size is 1 and the maximum page size is 1000 records." """
    match = re.search(r"minimum page size is (\d+) and the maximum page size is (\d+)", text())
    assert match, "the blueprint's Pagination section changed"
    return int(match.group(1)), int(match.group(2))


def rate_limit_status() -> int:
    """The status the blueprint's table gives for "60 calls per minute"."""
    match = re.search(r"\|`(\d{3})[^`]*`\|You reached 60 calls per minute API limit\|", text())
    assert match, "the blueprint's status table changed"
    return int(match.group(1))


def auth_headers() -> list[str]:
    return re.findall(r"^\+ (api-auth-[a-z]+) - You must send", text(), flags=re.MULTILINE)


def date_ok(value: Any) -> bool:
    """"yyyy-MM-ddTHH:mm:ss.fff" (ISO 8601, UTC): the blueprint's Date Format."""
    if not isinstance(value, str) or not DATE.match(value.removesuffix("Z")):
        return False
    datetime.fromisoformat(value.removesuffix("Z"))
    return True


def adjustment_problems(body: Any) -> list[str]:
    """What is wrong with a POST stockadjustment body, by the blueprint's tables."""
    if not isinstance(body, dict):
        return ["the body must be a JSON object"]
    top, line = adjustment_fields(), line_fields()
    problems = [f"unknown field {k}" for k in body if k not in top]
    problems += [f"missing required {f.name}" for f in top.values() if f.required and f.name not in body]
    if body.get("Status") not in ("DRAFT", "COMPLETED"):
        problems.append(f"Status must be DRAFT or COMPLETED for POST, got {body.get('Status')!r}")
    if "EffectiveDate" in body and not date_ok(body["EffectiveDate"]):
        problems.append(f"EffectiveDate {body['EffectiveDate']!r} is not yyyy-MM-ddTHH:mm:ss.fff")
    for n, one in enumerate(body.get("Lines") or []):
        problems += [f"Lines[{n}]: {p}" for p in _line_problems(one, line)]
    if not body.get("Lines"):
        problems.append("Lines must hold at least one line")
    return problems


def _line_problems(one: Any, model: dict[str, Field]) -> list[str]:
    if not isinstance(one, dict):
        return ["a line must be an object"]
    problems = [f"unknown field {k}" for k in one if k not in model]
    # "Required if SKU is empty" / "Required if Location is empty": one of each pair
    for pair in (("ProductID", "SKU"), ("LocationID", "Location")):
        if not any(one.get(k) for k in pair):
            problems.append(f"needs {pair[0]} or {pair[1]}")
    problems += [f"missing required {name}" for name in ("Quantity", "UnitCost") if name not in one]
    for name in ("Quantity", "UnitCost"):
        if name in one and not isinstance(one[name], (int, float)):
            problems.append(f"{name} must be a Decimal (a JSON number), got {one[name]!r}")
    return problems
