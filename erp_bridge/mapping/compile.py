"""Turn a validated mapping into plain closures once, so mapping an event is a few dict lookups.

Each body node becomes ``fn(ctx, lines) -> value`` where ``ctx`` holds the fields of the request's
(first) event and ``lines`` the contexts of every event of the batch. Compiling needs no clock and
no I/O; the result is cached on the mapping object (a private attribute, not part of its data).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode

from .nodes import Node, format_parts
from .schema import Auth, RequestSpec, SystemMapping, UnitRule
from .transforms import TRANSFORMS, TransformError, _text, apply_chain

Fn = Callable[[dict, list], Any]
_MODES = {"down": ROUND_FLOOR, "half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN, "up": ROUND_CEILING}


class UnmappedError(ValueError):
    """This event cannot be mapped (unknown SKU or location, a value a transform refuses)."""


@dataclass(frozen=True, eq=False)
class CompiledSpec:
    name: str
    method: str
    path: list[tuple[str, str | None]]
    #: the URL when the path has no slots and the query is constant (the common case)
    static_url: str | None
    base_url: str
    query: list[tuple[str, Fn]]
    #: constant headers of the connection and the request, auth placeholders, Content-Type
    static_headers: dict[str, str]
    headers: list[tuple[str, Fn]]
    body: Fn | None
    uses_id: bool
    batch_size: int


@dataclass(frozen=True, eq=False)
class Compiled:
    """Everything the hot path needs, read once from the mapping (pydantic attribute access and
    model traversal cost more than the mapping itself)."""

    system: str
    specs: dict[str, CompiledSpec]  # by trigger
    locations: dict[str, tuple[str, dict[str, str]]]  # internal -> (code, {"attr.x": v})
    overrides: dict[str, str]
    item_rule: tuple[Callable[[Any], Any], ...]
    unlisted_error: bool
    units: Callable[[str, str | None], tuple[Decimal, Decimal | None, str]]
    policy: Any


def compiled(mapping: SystemMapping) -> Compiled:
    private = mapping.__pydantic_private__  # direct: BaseModel.__getattr__ is slow for private attrs
    assert private is not None  # SystemMapping declares a private attribute, so pydantic keeps the dict
    found = private.get("_compiled")
    if found is None:
        found = private["_compiled"] = _compile_mapping(mapping)
    return found


def _compile_mapping(m: SystemMapping) -> Compiled:
    specs: dict[str, CompiledSpec] = {}
    for name, spec in m.requests.items():
        one = _compile_spec(name, spec, m)
        specs.update({trigger: one for trigger in spec.on})
    locations = {e.internal: (e.code, {f"attr.{k}": v for k, v in e.attrs.items()}) for e in m.locations.map}
    return Compiled(m.system, specs, locations, {o.sku: o.code for o in m.items.overrides},
                    _fns(m.items.transform), m.items.unlisted == "error", _units(m), m.quantity_policy)


def _units(m: SystemMapping):
    def rule_of(rule: UnitRule) -> tuple[Decimal, Decimal | None, str]:
        return rule.factor, rule.rounding, _MODES[rule.mode]
    default, by_uom, by_item = rule_of(m.units.default), {k: rule_of(v) for k, v in m.units.uoms.items()}, \
        {k: rule_of(v) for k, v in m.units.items.items()}

    def lookup(sku: str, uom: str | None):
        return by_item.get(sku) or (by_uom.get(uom) if uom is not None else None) or default
    return lookup


def convert(quantity: Decimal, rule: tuple[Decimal, Decimal | None, str], mode: str | None = None) -> Decimal:
    """internal -> system units: times factor, then to a multiple of ``rounding`` (if stated)."""
    factor, rounding, rule_mode = rule
    result = quantity * factor if factor != 1 else quantity
    if rounding is not None:
        result = (result / rounding).to_integral_value(rounding=mode or rule_mode) * rounding
    return result


def auth_headers(auth: Auth) -> dict[str, str]:
    """Placeholders for the credentials of ``auth`` (see wire.py); never a value."""
    kind, secrets = auth.kind, auth.secrets
    if kind == "none":
        return {}
    if kind == "session_login":
        return {"Cookie": "{auth:session}"}
    if kind == "oauth1_tba":
        return {auth.header: "{auth:oauth1}"}
    if kind == "headers":
        return {header: "{auth:headers}" for header in secrets}
    prefix = {"basic": "Basic ", "header": ""}.get(kind, "Bearer ") if auth.prefix is None else auth.prefix
    credential = {"basic": "{auth:basic}", "bearer": f"{{secret:{secrets.get('token')}}}",
                  "header": f"{{secret:{secrets.get('token')}}}"}.get(kind, "{auth:oauth2}")
    return {auth.header: prefix + credential}


def _compile_spec(name: str, spec: RequestSpec, m: SystemMapping) -> CompiledSpec:
    body = _object(spec.body) if spec.body is not None else None
    used = _used_fields(spec)
    path = format_parts(spec.path)
    query = [(k, compile_node(n)) for k, n in spec.query.items()]
    base = m.connection.base_url
    static_url = None
    if not any(slot for _, slot in path) and all(n.kind == "const" for n in spec.query.values()):
        pairs = [(k, _text(fn({}, []))) for k, fn in query if fn({}, []) is not None]
        static_url = base + spec.path + ("?" + urlencode(pairs) if pairs else "")
    const_headers = {k: n for k, n in spec.headers.items() if n.kind == "const"}
    static_headers = {**m.connection.headers, **{k: _text(compile_node(n)({}, [])) for k, n in const_headers.items()},
                      **auth_headers(m.connection.auth)}
    if body is not None:
        static_headers.setdefault("Content-Type", "application/json")
    headers = [(k, compile_node(n)) for k, n in spec.headers.items() if k not in const_headers]
    return CompiledSpec(name, spec.method, path, static_url, base, query, static_headers, headers, body,
                        "id" in used, m.writes.batch_size if "lines" in used else 1)


def _used_fields(spec: RequestSpec) -> set[str]:
    from .nodes import walk_dict  # local: only needed at compile time
    used = {slot for _, slot in format_parts(spec.path) if slot}
    for part in (spec.query, spec.headers, spec.body or {}):
        for _, node in walk_dict(part, ()):
            used.add("lines" if node.kind == "lines" else node.field or "")
            used.update(slot for _, slot in format_parts(node.format or "") if slot)
    return used


def _fns(names: list[str]) -> tuple[Callable[[Any], Any], ...]:
    return tuple(TRANSFORMS[n].fn for n in names)


def compile_node(node: Node) -> Fn:
    kind = node.kind
    if kind == "object":
        return _object(node.object_ or {})
    if kind == "list":
        parts = [compile_node(child) for child in node.list_ or []]
        return lambda ctx, lines: [fn(ctx, lines) for fn in parts]
    if kind == "lines":
        one = _object(node.lines or {})
        return lambda ctx, lines: [one(line, lines) for line in lines]
    return _value(node)


def _value(node: Node) -> Fn:
    fns = _fns(node.transform)
    if node.kind == "const":
        constant = _run(node.const, fns)
        return lambda ctx, lines: constant
    if node.kind == "field":
        name = node.field
        if not fns:
            return lambda ctx, lines: ctx[name]
        return lambda ctx, lines: _run(ctx[name], fns)
    parts = format_parts(node.format or "")
    return lambda ctx, lines: _run(fill(parts, ctx), fns)


def _run(value: Any, fns: tuple) -> Any:
    try:
        return apply_chain(value, fns)
    except TransformError as exc:
        raise UnmappedError(str(exc)) from None


def fill(parts: list[tuple[str, str | None]], ctx: dict, quote: Callable[[str], str] | None = None) -> str:
    out = []
    for literal, name in parts:
        out.append(literal)
        if name is not None:
            value = ctx[name]
            if value is None:
                raise UnmappedError(f"field '{name}' is null and cannot go into text")
            out.append(quote(_text(value)) if quote else _text(value))
    return "".join(out)


_FIELD, _CONST, _CALL = 0, 1, 2


def _object(children: dict[str, Node]) -> Fn:
    # Plain field reads and constants are inlined as steps instead of one closure call each: the
    # bodies are mostly such leaves, and calls dominate the cost of mapping an event.
    steps = [_step(child) for child in children.values()]
    keys = list(children)
    if all(kind == _CONST and not omit for kind, _, omit in steps):
        template = {key: payload for key, (_, payload, _) in zip(keys, steps)}
        return lambda ctx, lines: dict(template)  # scalars only: a shallow copy is a fresh body
    plan = [(key, kind, payload, omit) for key, (kind, payload, omit) in zip(keys, steps)]

    def build(ctx: dict, lines: list) -> dict:
        out = {}
        for key, kind, payload, omit in plan:
            value = ctx[payload] if kind == _FIELD else payload if kind == _CONST else payload(ctx, lines)
            if value is None and omit:
                continue
            out[key] = value
        return out
    return build


def _step(node: Node) -> tuple[int, Any, bool]:
    omit = node.if_null == "omit"
    if node.kind == "field" and not node.transform:
        return _FIELD, node.field, omit
    if node.kind == "const":
        return _CONST, _run(node.const, _fns(node.transform)), omit
    return _CALL, compile_node(node), omit
