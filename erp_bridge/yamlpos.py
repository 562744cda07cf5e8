"""YAML with positions: one loader for the config file and the mapping files.

Reads YAML with ruamel (round-trip, so it keeps line and column of every key and value and refuses
duplicate keys), hands plain Python data to pydantic, and turns pydantic's errors back into
``file:line:column key.path: reason`` problems. Floats become ``Decimal`` from their text, so
``0.1`` stays exactly 0.1.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError

from .errors import ConfigError, Problem

PathPart = str | int


@dataclass
class YamlDoc:
    """A parsed YAML file: plain data plus a way back to line and column of any key path."""

    file: str
    data: Any
    _tree: Any

    def position(self, path: Iterable[PathPart], at_key: bool = False) -> tuple[int | None, int | None]:
        """1-based (line, column) of the deepest node of ``path`` that exists: of its value, or of
        its key with ``at_key`` (for errors about the key itself, such as an unknown key)."""
        parts = list(path)
        node, pos = self._tree, (1, 1)
        for i, part in enumerate(parts):
            found = _child_position(node, part, at_key and i == len(parts) - 1)
            if found is None:
                break
            pos, node = found
        return pos

    def problem(self, path: Iterable[PathPart], message: str, at_key: bool = False) -> Problem:
        parts = list(path)
        line, col = self.position(parts, at_key)
        return Problem(self.file, line, col, self.format_path(parts), message)

    def format_path(self, parts: list[PathPart]) -> str:
        """Like ``format_path``, but an integer key of a mapping (``on_status: {429: ..}``) reads
        ``.429``, not ``[429]``, which would look like a list index."""
        out, node = "", self._tree
        for part in parts:
            is_key = isinstance(node, CommentedMap) or not isinstance(part, int)
            out += (f".{part}" if out else str(part)) if is_key else f"[{part}]"
            found = _child_position(node, part)
            node = found[1] if found else None
        return out


def _child_position(node: Any, part: PathPart, at_key: bool = False):
    if isinstance(node, CommentedMap) and part in node:
        line, col = node.lc.value(part) if _is_scalar(node[part]) and not at_key else node.lc.key(part)
        return (line + 1, col + 1), node[part]
    if isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
        line, col = node.lc.item(part)
        return (line + 1, col + 1), node[part]
    return None


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (CommentedMap, CommentedSeq))


def format_path(parts: Iterable[PathPart]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, CommentedMap):
        return {str(k) if not isinstance(k, (int, bool)) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, CommentedSeq):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return Decimal(repr(float(value)))
    if isinstance(value, int):
        return _int_as_written(value)
    if isinstance(value, str):
        return str(value)
    return value


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def load_yaml_text(text: str, file: str) -> YamlDoc:
    """Parse ``text``; syntax errors and duplicate keys raise ConfigError with their position."""
    try:
        tree = _yaml().load(text)
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        key = (exc.problem or "").split('"')[1] if '"' in (exc.problem or "") else ""
        raise ConfigError([Problem(file, mark.line + 1, mark.column + 1, key,
                                   "duplicate key (each key may appear once in a mapping)")]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        reason = " ".join(filter(None, [exc.context, exc.problem]))
        raise ConfigError([Problem(file, line, col, "", f"invalid YAML: {reason}")]) from None
    if tree is None:
        tree = CommentedMap()
    return YamlDoc(file=file, data=_plain(tree), _tree=tree)


def load_yaml_file(path: Path | str, display: str | None = None) -> YamlDoc:
    path = Path(path)
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(name, None, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(name, None, None, "", f"cannot read file: {exc}")]) from None
    return load_yaml_text(text, name)


_TYPE_NAMES = {bool: "boolean", int: "integer", Decimal: "number", float: "number", str: "string",
               dict: "mapping", list: "list", type(None): "null"}


class SourceInt(int):
    """An integer the file wrote with leading zeros (``007``): errors quote it as written, so the
    integrator sees their ``007`` rather than a puzzling ``7``."""

    text: str

    def __repr__(self) -> str:
        return self.text


def _int_as_written(value: int) -> int:
    width = getattr(value, "_width", None)  # ruamel's ScalarInt keeps the written width
    plain = int(value)
    if width and plain >= 0 and width > len(str(plain)):
        written = SourceInt(plain)
        written.text = str(plain).zfill(width)
        return written
    return plain


def _type_name(value: Any) -> str:
    for cls, name in _TYPE_NAMES.items():
        if isinstance(value, cls) and (cls is not int or not isinstance(value, bool)):
            return name
    return type(value).__name__


def describe(value: Any) -> str:
    """'integer 42', 'string "x"', 'mapping' — how an error names what it found."""
    name = _type_name(value)
    if isinstance(value, (dict, list)):
        return name
    if value is None:
        return "null"
    return f"{name} {value!r}" if not isinstance(value, Decimal) else f"{name} {value}"


_EXPECTED = {"string_type": "a string", "int_type": "an integer", "int_parsing": "an integer",
             "bool_type": "true or false", "bool_parsing": "true or false",
             "decimal_type": "a number", "decimal_parsing": "a number", "float_type": "a number",
             "float_parsing": "a number", "dict_type": "a mapping", "list_type": "a list",
             "model_type": "a mapping", "model_attributes_type": "a mapping"}


def error_message(err: dict) -> str:
    """A pydantic error, said the way an integrator fixes it."""
    kind, value = err["type"], err.get("input")
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling)"
    if kind in _EXPECTED:
        hint = "; quote it to keep it as text" if kind == "string_type" and isinstance(value, (int, Decimal, bool)) else ""
        return f"expected {_EXPECTED[kind]}, got {describe(value)}{hint}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return msg[0].lower() + msg[1:] if msg else kind


def problems_from_validation(doc: YamlDoc, exc: ValidationError, prefix: Iterable[PathPart] = ()) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = [*prefix, *(p for p in err["loc"] if not _is_union_tag(p))]
        # '[key]' ends the loc when the key itself is wrong (e.g. an unquoted 429): point at the key
        at_key = err["type"] == "extra_forbidden" or (err["loc"] and err["loc"][-1] == "[key]")
        problems.append(doc.problem(loc, error_message(dict(err)), at_key=bool(at_key)))
    return problems


def _is_union_tag(part: Any) -> bool:
    # pydantic puts union member names (e.g. 'function-after[...]') into loc; they are no key
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def validate_doc(model: type[BaseModel], doc: YamlDoc, error_cls: type[ConfigError] = ConfigError,
                 context: dict | None = None):
    """Validate ``doc.data`` with ``model``; every problem at once, located."""
    try:
        return model.model_validate(doc.data, context=context)
    except ValidationError as exc:
        raise error_cls(problems_from_validation(doc, exc)) from None
