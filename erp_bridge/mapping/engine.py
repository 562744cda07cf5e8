"""The pure mapping engine: (event, mapping, lookup tables) -> the HTTP request(s) to send.

No I/O, no clock, no randomness: ``now`` and ``new_id`` come from the caller, so the same input
always gives the same requests (golden tests rely on it). Events are in internal terms (SKU,
internal location); connectors that normalise inbound data use ``SystemMapping.internal_location``
and ``LookupTable.sku_of`` to get there.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import quote, urlencode

from ..connectors.base import Figure
from ..domain import Availability, AvailabilityChanged, Count, Decrement, Increment, StockMove
from ..errors import MappingError
from .compile import Compiled, CompiledSpec, UnmappedError, compiled, convert, fill
from .lookups import LookupTable
from .schema import QuantityPolicy, SystemMapping
from .transforms import _text
from .wire import HttpRequest

__all__ = ["build_requests", "channel_quantity", "channel_figure", "ChannelFigure", "HttpRequest",
           "UnmappedError", "trigger_of", "item_code"]

Input = StockMove | Decrement | Increment | Count | Figure


@dataclass(frozen=True)
class ChannelFigure:
    quantity: Decimal
    low_stock: bool | None


def channel_quantity(policy: QuantityPolicy, availability: Availability) -> Decimal:
    """basis - buffer, x allocation %, capped at max_listed, never below 0, rounded down if integer."""
    basis = _basis(policy, availability)
    quantity = (basis - policy.safety_buffer) * policy.allocation_percent / 100
    if policy.max_listed is not None:
        quantity = min(quantity, policy.max_listed)
    quantity = max(quantity, Decimal(0))
    return quantity.to_integral_value(rounding=ROUND_FLOOR) if policy.integer else quantity


def channel_figure(policy: QuantityPolicy, availability: Availability) -> ChannelFigure:
    quantity = channel_quantity(policy, availability)
    return ChannelFigure(quantity, low_stock(policy, quantity))


def low_stock(policy: QuantityPolicy | None, quantity: Decimal) -> bool | None:
    """True at or under the threshold; None when the policy states no threshold (unknown, not False)."""
    if policy is None or policy.low_stock_threshold is None:
        return None
    return quantity <= policy.low_stock_threshold


def _basis(policy: QuantityPolicy, availability: Availability) -> Decimal:
    if policy.basis == "free":
        return availability.free
    if policy.basis == "on_hand":
        return availability.on_hand
    if availability.forecast is None:
        # missing is not zero: pushing 0 would delist stock the SoR simply did not report
        raise MappingError(f"basis is forecast but the system of record sent no forecast for "
                           f"{availability.item}@{availability.location}")
    return availability.forecast


def trigger_of(event: Any) -> str:
    if isinstance(event, StockMove):
        return "move_in" if event.direction == "in" else "move_out"
    if isinstance(event, Figure):
        return "availability"
    if isinstance(event, (Decrement, Increment, Count)):
        return event.kind
    if isinstance(event, AvailabilityChanged):
        raise TypeError("an availability event carries no quantity: read availability at dispatch time, "
                        "compute it with channel_quantity and pass a Figure")
    raise TypeError(f"cannot map {type(event).__name__}")


def build_requests(event: Input | Sequence[Input], system_mapping: SystemMapping,
                   lookups: Mapping[str, LookupTable] | None, *, now: datetime,
                   new_id: Callable[[], str]) -> list[HttpRequest]:
    """The requests for one event, or for a batch (documents with ``lines`` take up to
    ``writes.batch_size`` events each; other requests are one per event). Raises UnmappedError
    for an unknown SKU or location, MappingError when the mapping has no request for the event."""
    events = list(event) if isinstance(event, (list, tuple)) else [event]
    c = compiled(system_mapping)
    table = (lookups or {}).get(system_mapping.system)
    groups: dict[str, list[dict]] = {}
    for one in events:
        trigger = trigger_of(one)
        spec = c.specs.get(trigger)
        if spec is None:
            raise MappingError(f"{system_mapping.system}: no request in the mapping handles {trigger} events")
        groups.setdefault(spec.name, []).append(_context(one, trigger, system_mapping, c, table, now))
    return [_request(c, spec_by_name(c, name), chunk, system_mapping.connection.base_url, new_id)
            for name, contexts in groups.items() for chunk in _chunks(c, name, contexts, system_mapping)]


def spec_by_name(c: Compiled, name: str) -> CompiledSpec:
    return next(s for s in c.specs.values() if s.name == name)


def _chunks(c: Compiled, name: str, contexts: list[dict], m: SystemMapping) -> Iterable[list[dict]]:
    size = m.writes.batch_size if spec_by_name(c, name).batched else 1
    for start in range(0, len(contexts), size):
        yield contexts[start:start + size]


def item_code(mapping: SystemMapping, table: LookupTable | None, sku: str) -> str:
    """The system's id for internal ``sku``: override, then lookup row, then the rule."""
    c = compiled(mapping)
    code = c.overrides.get(sku)
    if code is None and table is not None:
        code = table.codes.get(sku)
    if code is None:
        if mapping.items.unlisted == "error":
            raise UnmappedError(f"item '{sku}' has no {mapping.system} id (not in items.overrides or the lookup table)")
        code = _rule(c, sku)
    return code


def _rule(c: Compiled, sku: str) -> str:
    value: Any = sku
    for fn in c.item_rule:
        value = fn(value)
    return value


def _context(event: Input, trigger: str, m: SystemMapping, c: Compiled, table: LookupTable | None,
             now: datetime) -> dict:
    location = c.locations.get(event.location)
    if location is None:
        raise UnmappedError(f"location '{event.location}' is not mapped in {m.system} (locations.map)")
    ctx = {"now": now, "system": m.system, "item": event.item, "item_code": item_code(m, table, event.item),
           "location": event.location, "location_code": location[0], "id": None,
           "kind": trigger}
    ctx.update(location[1])
    if trigger == "availability":
        return _figure_context(ctx, event, m, c, now)
    ctx["key"], ctx["origin_system"] = event.idempotency_key, getattr(event, "system", None)
    ctx["occurred_at"] = event.occurred_at
    uom = event.uom if trigger in ("move_in", "move_out") else None
    quantity = convert(event.quantity, c.units(event.item, uom))
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


def _figure_context(ctx: dict, figure: Figure, m: SystemMapping, c: Compiled, now: datetime) -> dict:
    rule = c.units(figure.item, None)
    quantity = convert(figure.quantity, rule, ROUND_FLOOR)  # never show stock that is not there
    previous = None if figure.previous is None else convert(figure.previous, rule, ROUND_FLOOR)
    ctx.update(key=figure.idempotency_key or f"{m.system}:availability:{figure.item}@{figure.location}",
               origin_system=None, occurred_at=now, quantity=quantity, signed_quantity=quantity,
               previous=previous, low_stock=low_stock(m.quantity_policy, quantity))
    return ctx


def _request(c: Compiled, spec: CompiledSpec, chunk: list[dict], base_url: str,
             new_id: Callable[[], str]) -> HttpRequest:
    ctx = chunk[0]
    if spec.uses_id:
        request_id = new_id()
        for line in chunk:
            line["id"] = request_id
    url = base_url + fill(spec.path, ctx, lambda text: quote(text, safe=""))
    query = [(k, _text(v)) for k, fn in spec.query for v in [fn(ctx, chunk)] if v is not None]
    if query:
        url += "?" + urlencode(query)
    headers = {**c.headers, **{k: _text(fn(ctx, chunk)) for k, fn in spec.headers}, **c.auth_headers}
    body = spec.body(ctx, chunk) if spec.body is not None else None
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    keys = tuple(line["key"] for line in chunk)
    key = keys[0] if len(keys) == 1 else f"{keys[0]}+{len(keys) - 1}"
    return HttpRequest(spec.method, url, headers, body, key, keys, spec.name)
