"""Request-body nodes: how a mapping says what goes into a request, without an expression language.

A node is exactly one of:
- a plain scalar (``"IMov"``, ``1``, ``true``, ``null``) or ``{const: ...}``: sent as written;
- ``{field: item_code}``: a value of the event, from the closed list in transforms.py;
- ``{format: "gid://shopify/InventoryItem/{item_code}"}``: text with ``{field}`` slots and nothing
  else (no attribute access, no format specs: it is joined from parts, never ``str.format``);
- ``{object: {...}}`` / ``{list: [...]}``: nested JSON;
- ``{lines: {...}}``: one object per event of a batched document (document lines).
``transform: [names]`` applies registry transforms to field/const/format values, in order;
``if_null: omit`` drops an object key whose value is null (default: send null).
"""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from string import Formatter
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from .transforms import ALL_FIELDS, ATTR_PREFIX, TRANSFORMS

_ATTR_RE = re.compile(r"^attr\.[A-Za-z_][A-Za-z0-9_]*$")
KINDS = ("field", "const", "format", "object_", "lines", "list_")
VALUE_KINDS = ("field", "const", "format")


def _field_name(name: str) -> str:
    if name in ALL_FIELDS or _ATTR_RE.match(name):
        return name
    raise ValueError(f"unknown field '{name}' (known: {', '.join(ALL_FIELDS)}, or {ATTR_PREFIX}NAME "
                     "for a location attribute)")


def _transform_name(name: str) -> str:
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform '{name}' (known: {', '.join(TRANSFORMS)})")
    return name


def format_parts(text: str) -> list[tuple[str, str | None]]:
    """``"a{key}b"`` -> [("a", "key"), ("b", None)]; raises ValueError on anything but ``{field}``."""
    parts = []
    try:
        parsed = list(Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"bad format text: {exc} (write {{{{ and }}}} for literal braces)") from None
    for literal, name, spec, conversion in parsed:
        if name is not None and (spec or conversion or name == ""):
            raise ValueError("only {field} slots are allowed in format text (no !conversions, :specs or {})")
        parts.append((literal, _field_name(name) if name is not None else None))
    return parts


def _format_text(text: str) -> str:
    format_parts(text)
    return text


def _scalar(value: Any) -> Any:
    if isinstance(value, date):
        raise ValueError(f"got the date {value.isoformat()}; quote it to send it as text")
    return value


def _wrap_scalar(value: Any) -> Any:
    # A bare scalar is a constant and a bare list is a JSON list, so the common case reads naturally.
    if isinstance(value, list):
        return {"list": value}
    if isinstance(value, dict):
        return value
    return {"const": _scalar(value)}


FieldName = Annotated[str, AfterValidator(_field_name),
                      WithJsonSchema({"anyOf": [{"enum": ALL_FIELDS}, {"type": "string", "pattern": _ATTR_RE.pattern}]})]
TransformName = Annotated[str, AfterValidator(_transform_name), WithJsonSchema({"enum": list(TRANSFORMS)})]
FormatText = Annotated[str, AfterValidator(_format_text)]
Scalar = Annotated[Any, AfterValidator(_scalar),
                   WithJsonSchema({"type": ["string", "number", "integer", "boolean", "null"]})]


class Node(BaseModel):
    """One value of a request body, query or header; see the module docstring."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    field: FieldName | None = None
    const: Scalar = None
    format: FormatText | None = None
    object_: dict[str, NodeIn] | None = Field(default=None, alias="object")
    lines: dict[str, NodeIn] | None = None
    list_: list[NodeIn] | None = Field(default=None, alias="list")
    transform: list[TransformName] = []
    if_null: Literal["keep", "omit"] = "keep"

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Node:
        kinds = [k for k in KINDS if k in self.model_fields_set]
        if len(kinds) != 1:
            found = f" (found {', '.join(k.rstrip('_') for k in kinds)})" if kinds else ""
            raise ValueError(f"a value needs exactly one of field, const, format, object, lines, list{found}")
        if self.transform and kinds[0] not in VALUE_KINDS:
            raise ValueError("transform applies to field, const and format values only")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if k in self.model_fields_set).rstrip("_")


_NODE_INPUT = str | int | float | bool | None | list | Node
NodeIn = Annotated[Node, BeforeValidator(_wrap_scalar, json_schema_input_type=_NODE_INPUT)]
Node.model_rebuild()


def walk(node: Node, path: tuple):
    """Yield (path, node) for ``node`` and every node below it; paths are YAML key paths."""
    yield path, node
    kind = node.kind
    if kind in ("object", "lines"):
        children = node.object_ if kind == "object" else node.lines
        for key, child in (children or {}).items():
            yield from walk(child, (*path, kind, key))
    elif kind == "list":
        for index, child in enumerate(node.list_ or []):
            yield from walk(child, (*path, "list", index))


def walk_dict(nodes: dict[str, Node], path: tuple):
    for key, node in nodes.items():
        yield from walk(node, (*path, key))


def literal_number(value: Any) -> bool:
    return isinstance(value, (int, Decimal)) and not isinstance(value, bool)
