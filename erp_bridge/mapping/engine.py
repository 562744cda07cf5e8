"""The pure mapping engine: (event, mapping, lookup tables) -> the HTTP request(s) to send.

No I/O, no clock, no randomness: ``now`` and ``new_id`` come from the caller, so the same input
always gives the same requests (golden tests rely on it). Events are in internal terms (SKU,
internal location); connectors that normalise inbound data use ``SystemMapping.internal_location``
and ``LookupTable.sku_of`` to get there.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import ROUND_FLOOR
from typing import Any
from urllib.parse import quote, urlencode

from ..domain import AvailabilityChanged, Count, Decrement, Figure, Increment, StockMove
from ..errors import MappingError
from ..sync.policy import low_stock
from .compile import Compiled, CompiledSpec, UnmappedError, compiled, convert, fill
from .lookups import LookupTable
from .schema import SystemMapping
from .transforms import _text
from .wire import HttpRequest

__all__ = ["HttpRequest", "UnmappedError", "build_requests", "item_code", "trigger_of"]

Input = StockMove | Decrement | Increment | Count | Figure


_TRIGGERS = {Decrement: "decrement", Increment: "increment", Count: "count", Figure: "availability"}


def trigger_of(event: Any) -> str:
    trigger = _TRIGGERS.get(type(event))
    if trigger is not None:
        return trigger
    if isinstance(event, StockMove):
        return "move_in" if event.direction == "in" else "move_out"
    if isinstance(event, AvailabilityChanged):
        raise TypeError("an availability event carries no quantity: read availability at dispatch time, "
                        "compute it with channel_quantity and pass a Figure")
    if isinstance(event, tuple(_TRIGGERS)):  # a subclass
        return next(t for cls, t in _TRIGGERS.items() if isinstance(event, cls))
    raise TypeError(f"cannot map {type(event).__name__}")


def build_requests(event: Input | Sequence[Input], system_mapping: SystemMapping,
                   lookups: Mapping[str, LookupTable] | None, *, now: datetime,
                   new_id: Callable[[], str]) -> list[HttpRequest]:
    """The requests for one event, or for a batch (documents with ``lines`` take up to
    ``writes.batch_size`` events each; other requests are one per event). Raises UnmappedError
    for an unknown SKU or location, MappingError when the mapping has no request for the event."""
    c = compiled(system_mapping)
    table = lookups.get(c.system) if lookups else None
    if not isinstance(event, (list, tuple)):  # the hot path: one event, one request
        spec, ctx = _prepare(event, c, table, now)  # type: ignore[arg-type]  # a Sequence is a list or tuple
        return [_request(spec, [ctx], new_id)]
    groups: dict[str, tuple[CompiledSpec, list[dict]]] = {}
    for one in event:
        spec, ctx = _prepare(one, c, table, now)
        groups.setdefault(spec.name, (spec, []))[1].append(ctx)
    return [_request(spec, contexts[i:i + spec.batch_size], new_id)
            for spec, contexts in groups.values() for i in range(0, len(contexts), spec.batch_size)]


def _prepare(event: Input, c: Compiled, table: LookupTable | None, now: datetime) -> tuple[CompiledSpec, dict]:
    trigger = trigger_of(event)
    spec = c.specs.get(trigger)
    if spec is None:
        raise MappingError(f"{c.system}: no request in the mapping handles {trigger} events")
    return spec, _context(event, trigger, c, table, now)


def item_code(mapping: SystemMapping, table: LookupTable | None, sku: str) -> str:
    """The system's id for internal ``sku``: override, then lookup row, then the rule."""
    return _item_code(compiled(mapping), table, sku)


def _item_code(c: Compiled, table: LookupTable | None, sku: str) -> str:
    code = c.overrides.get(sku)
    if code is None and table is not None:
        code = table.codes.get(sku)
    if code is None:
        if c.unlisted_error:
            raise UnmappedError(f"item '{sku}' has no {c.system} id (not in items.overrides or the lookup table)")
        code = sku
        for fn in c.item_rule:
            code = fn(code)
    return code


def _context(event: Any, trigger: str, c: Compiled, table: LookupTable | None, now: datetime) -> dict:
    location = c.locations.get(event.location)
    if location is None:
        raise UnmappedError(f"location '{event.location}' is not mapped in {c.system} (locations.map)")
    item = event.item
    ctx = {"now": now, "system": c.system, "item": item, "item_code": _item_code(c, table, item),
           "location": event.location, "location_code": location[0], "id": None, "kind": trigger}
    if location[1]:
        ctx.update(location[1])
    if trigger == "availability":
        return _figure_context(ctx, event, c, now)
    ctx["key"], ctx["origin_system"] = event.idempotency_key, getattr(event, "system", None)
    ctx["occurred_at"] = event.occurred_at
    uom = event.uom if trigger in ("move_in", "move_out") else None
    quantity = convert(event.quantity, c.units(item, uom))
    ctx["quantity"] = quantity
    ctx["signed_quantity"] = quantity if trigger in ("move_in", "increment", "count") else -quantity
    _event_fields(ctx, event, trigger)
    return ctx


def _event_fields(ctx: dict, event: Any, trigger: str) -> None:
    if trigger in ("move_in", "move_out"):
        ctx.update(move_id=event.move_id, from_location=event.from_location, to_location=event.to_location,
                   direction=event.direction, uom=event.uom)
    elif trigger in ("decrement", "increment"):
        ctx.update(channel=event.channel, order=event.order, line=event.line)
        if trigger == "increment":
            ctx["reason"] = event.reason
    else:
        ctx["reference"] = event.reference


def _figure_context(ctx: dict, figure: Figure, c: Compiled, now: datetime) -> dict:
    rule = c.units(figure.item, None)
    quantity = convert(figure.quantity, rule, ROUND_FLOOR)  # never show stock that is not there
    previous = None if figure.previous is None else convert(figure.previous, rule, ROUND_FLOOR)
    ctx.update(key=figure.idempotency_key or f"{c.system}:availability:{figure.item}@{figure.location}",
               origin_system=None, occurred_at=now, quantity=quantity, signed_quantity=quantity,
               previous=previous, low_stock=low_stock(c.policy, quantity))
    return ctx


def _request(spec: CompiledSpec, chunk: list[dict], new_id: Callable[[], str]) -> HttpRequest:
    ctx = chunk[0]
    if spec.uses_id:
        request_id = new_id()
        for line in chunk:
            line["id"] = request_id
    url = spec.static_url or _url(spec, ctx, chunk)
    headers = dict(spec.static_headers)
    for name, fn in spec.headers:
        headers[name] = _text(fn(ctx, chunk))
    body = spec.body(ctx, chunk) if spec.body is not None else None
    if len(chunk) == 1:
        key = ctx["key"]
        return HttpRequest(spec.method, url, headers, body, key, (key,), spec.name)
    keys = tuple(line["key"] for line in chunk)
    return HttpRequest(spec.method, url, headers, body, f"{keys[0]}+{len(keys) - 1}", keys, spec.name)


# what quote(text, safe="") does to ASCII, as one str.translate table (C speed, no per-call setup)
_QUOTE_ASCII = {c: f"%{c:02X}" for c in range(128)
                if not (chr(c).isalnum() or chr(c) in "_.-~")}


def _quote(text: str) -> str:
    return text.translate(_QUOTE_ASCII) if text.isascii() else quote(text, safe="")


def _url(spec: CompiledSpec, ctx: dict, chunk: list[dict]) -> str:
    url = spec.base_url + fill(spec.path, ctx, _quote)
    query = [(k, _text(v)) for k, fn in spec.query for v in [fn(ctx, chunk)] if v is not None]
    return url + "?" + urlencode(query) if query else url
