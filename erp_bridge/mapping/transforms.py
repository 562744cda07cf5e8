"""The closed registry of named transforms, and the fields a request body may read.

There is no expression language on purpose (DESIGN.md): a mapping names transforms from this
table, the loader checks every name and every chain's types before anything runs, and adding a
transform means adding a row here with a test. Every transform passes null through unchanged,
so "missing", null and zero stay different all the way to the wire.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

TEXT, NUMBER, INTEGER, DATETIME, ANY = "text", "number", "integer", "date-time", "any"


class TransformError(ValueError):
    """A value a transform cannot take at run time (e.g. 2.5 for ``int``)."""


@dataclass(frozen=True)
class Transform:
    name: str
    takes: str
    gives: str
    fn: Callable[[Any], Any]
    doc: str


def _int_exact(value: Decimal) -> int:
    if value != value.to_integral_value():
        raise TransformError(f"{value} is not a whole number; state the rounding in units")
    return int(value)


def _int_text(value: str) -> int:
    if not value.strip().lstrip("-").isdigit():
        raise TransformError(f"{value!r} is not a whole number (an id such as a location code '12')")
    return int(value)


def _utc(value: datetime) -> datetime:
    # naive datetimes are taken as UTC: events are stamped in UTC by the domain model
    tz = value.tzinfo
    if tz is UTC:
        return value
    return value.replace(tzinfo=UTC) if tz is None else value.astimezone(UTC)


def _date(value: datetime) -> str:
    return _utc(value).date().isoformat()  # C-implemented; strftime is several times slower


def _datetime(value: datetime) -> str:
    value = _utc(value)
    return (f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}Z")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        text = str(value)  # plain notation unless str() chose an exponent ("1E+2")
        return format(value, "f") if "E" in text else text
    if isinstance(value, datetime):
        return _datetime(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_ROWS = [
    Transform("upper", TEXT, TEXT, str.upper, "upper-case text"),
    Transform("lower", TEXT, TEXT, str.lower, "lower-case text"),
    Transform("strip", TEXT, TEXT, str.strip, "remove leading and trailing blanks"),
    Transform("string", ANY, TEXT, _text, "any value as text (numbers in plain notation)"),
    Transform("abs", NUMBER, NUMBER, abs, "absolute value"),
    Transform("negate", NUMBER, NUMBER, lambda v: -v, "change the sign"),
    Transform("int", NUMBER, INTEGER, _int_exact, "whole number; a fraction is an error"),
    Transform("int_text", TEXT, INTEGER, _int_text, "text of a whole number (a numeric id) as a number"),
    Transform("int_floor", NUMBER, INTEGER,
              lambda v: int(v.to_integral_value(rounding=ROUND_FLOOR)), "round down to a whole number"),
    Transform("date", DATETIME, TEXT, _date, "UTC date, YYYY-MM-DD"),
    Transform("datetime_utc", DATETIME, TEXT, _datetime, "UTC date and time, YYYY-MM-DDTHH:MM:SSZ"),
    Transform("unix_seconds", DATETIME, INTEGER, lambda v: int(_utc(v).timestamp()), "seconds since 1970 (UTC)"),
]
TRANSFORMS: dict[str, Transform] = {t.name: t for t in _ROWS}


def accepts(takes: str, given: str) -> bool:
    return takes == ANY or given == ANY or takes == given or (takes == NUMBER and given == INTEGER)


def chain_type(start: str, names: list[str]) -> tuple[str, str | None]:
    """The type a chain of transforms gives, or an error message for the first misfit."""
    current = start
    for name in names:
        transform = TRANSFORMS[name]
        if not accepts(transform.takes, current):
            return current, f"transform '{name}' takes {transform.takes}, but gets {current}"
        current = transform.gives
    return current, None


def apply_chain(value: Any, fns: tuple[Callable[[Any], Any], ...]) -> Any:
    for fn in fns:
        if value is None:
            return None
        value = fn(value)
    return value


# Fields a body node may read with ``field:``; per trigger, which exist (checked at load).
COMMON_FIELDS = {
    "key": TEXT, "id": TEXT, "kind": TEXT, "now": DATETIME, "system": TEXT, "origin_system": TEXT,
    "item": TEXT, "item_code": TEXT, "location": TEXT, "location_code": TEXT, "occurred_at": DATETIME,
    "quantity": NUMBER, "signed_quantity": NUMBER,
}
TRIGGER_FIELDS: dict[str, dict[str, str]] = {
    "move_in": {"move_id": TEXT, "from_location": TEXT, "to_location": TEXT, "direction": TEXT, "uom": TEXT},
    "move_out": {"move_id": TEXT, "from_location": TEXT, "to_location": TEXT, "direction": TEXT, "uom": TEXT},
    "decrement": {"channel": TEXT, "order": TEXT, "line": TEXT},
    "increment": {"channel": TEXT, "order": TEXT, "line": TEXT, "reason": TEXT},
    "count": {"reference": TEXT},
    "availability": {"previous": NUMBER, "low_stock": ANY},
}
TRIGGERS = tuple(TRIGGER_FIELDS)
ATTR_PREFIX = "attr."
ALL_FIELDS = sorted({*COMMON_FIELDS, *(f for fields in TRIGGER_FIELDS.values() for f in fields)})


def field_type(name: str, trigger: str) -> str | None:
    """The type of ``name`` for events of ``trigger``, or None when such events lack it."""
    if name.startswith(ATTR_PREFIX):
        return TEXT
    return COMMON_FIELDS.get(name) or TRIGGER_FIELDS[trigger].get(name)
