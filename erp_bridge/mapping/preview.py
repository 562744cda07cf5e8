"""``erp-bridge mappings preview``: the exact request(s) an event would become; nothing is sent.

The event file holds one event (or a list, mapped as one batch) as JSON, in internal terms. For a
channel, an ``availability`` event also carries what the system of record would report
(``"availability": {"on_hand": .., "free": ..}``) and optionally ``"last_pushed"``: the preview runs
the quantity policy on it, as dispatch would. Credentials show as ``***``.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..domain import Availability, AvailabilityChanged, Count, Decrement, Figure, Increment, StockMove, parse_event
from ..errors import ConfigError, MappingError, Problem
from ..sync.policy import channel_quantity
from ..yamlpos import load_yaml_text, problems_from_validation
from .engine import build_requests
from .loader import display_name, load_mappings
from .schema import SystemMapping
from .wire import HttpRequest, mask, to_json


def preview(system: str, event_file: Path, mappings_dir: Path, *, now: datetime | None = None,
            new_id: Callable[[], str] | None = None) -> str:
    mappings = load_mappings(Path(mappings_dir))
    mapping = mappings.systems.get(system)
    if mapping is None:
        known = ", ".join(sorted(mappings.systems)) or "none"
        raise MappingError(f"no mapping for system '{system}' (known: {known})")
    events = read_events(Path(event_file), mapping)
    if mapping.connector == "odoo":  # a fixed API over odoorpc: show the call itself
        from ..connectors.odoo import describe_call
        return describe_call(mapping, events)
    if mapping.connector == "netsuite":  # the SOAP envelope (or the REST upsert) as the connector sends it
        from ..connectors.netsuite import describe
        return describe(mapping, mappings.lookups, events, now=now or datetime.now(UTC))
    if mapping.connector == "ordergroove":  # a JSON array of live flags, decided by the threshold
        from ..connectors.ordergroove import describe as describe_flags
        return describe_flags(mapping, mappings.lookups, events)
    if mapping.connector == "dynamics365":  # journals go as one OData $batch changeset: show it as sent
        from ..connectors.dynamics365.finops import describe_batches
        return describe_batches(mapping, events, mappings.lookups, now=now or datetime.now(UTC),
                                new_id=new_id or (lambda: str(uuid.uuid4()))) + "\n"
    if mapping.connector == "prestashop":  # the full stock_available is read, then PUT back as XML
        from ..connectors.prestashop.connector import describe as describe_stock
        return describe_stock(mapping, mappings.lookups.get(system), events)
    requests = build_requests(events, mapping, mappings.lookups, now=now or datetime.now(UTC),
                              new_id=new_id or (lambda: str(uuid.uuid4())))
    if mapping.connector == "dynamics365_iv":  # several change events go as one <path>/bulk
        from ..connectors.dynamics365.inventory_visibility import as_sent
        requests = as_sent(requests, mapping)
    return "\n\n".join(format_request(mapping.system, r) for r in requests) + "\n"


def format_request(system: str, request: HttpRequest) -> str:
    lines = [f"# {system} {request.name}, key {request.key}", f"{request.method} {mask(request.url)}"]
    lines += [f"{name}: {mask(value)}" for name, value in request.headers.items()]
    if request.body is not None:
        lines += ["", mask(to_json(request.body, indent=2))]
    return "\n".join(lines)


def read_events(path: Path, mapping: SystemMapping) -> list[Any]:
    display = display_name(path)
    text = _read(path, display)
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise MappingError([Problem(display, exc.lineno, exc.colno, "", f"invalid JSON: {exc.msg}")]) from None
    items = data if isinstance(data, list) else [data]
    return [_one(item, [index] if isinstance(data, list) else [], text, display, mapping)
            for index, item in enumerate(items)]


def _read(path: Path, display: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError([Problem(display, None, None, "", f"cannot read event file: {exc.strerror}")]) from None


def _one(item: Any, prefix: list, text: str, display: str, mapping: SystemMapping) -> Any:
    extra = {}
    if isinstance(item, dict) and item.get("kind") == "availability":
        item = dict(item)  # never mutate the caller's data
        extra = {k: item.pop(k) for k in ("availability", "last_pushed") if k in item}
    try:
        event = _parse(item)
    except ValidationError as exc:
        raise MappingError(_located(exc, prefix, text, display)) from None
    if not isinstance(event, AvailabilityChanged):
        return event
    try:
        return _figure(event, extra, mapping)
    except ValidationError as exc:
        raise MappingError(_located(exc, [*prefix, "availability"], text, display)) from None


_KINDS: dict[str, type[BaseModel]] = {"move": StockMove, "decrement": Decrement, "increment": Increment, "count": Count,
          "availability": AvailabilityChanged}


def _parse(item: Any) -> Any:
    # the class itself, not the tagged union, so that error paths read "quantity", not "decrement.quantity"
    cls = _KINDS.get(str(item.get("kind"))) if isinstance(item, dict) else None
    return cls.model_validate(item) if cls is not None else parse_event(item)


def _figure(event: AvailabilityChanged, extra: dict, mapping: SystemMapping) -> Figure:
    if "availability" not in extra:
        raise MappingError(f"an availability event needs \"availability\": {{\"on_hand\": .., \"free\": ..}} "
                           f"to preview {mapping.system}")
    if mapping.quantity_policy is None:
        raise MappingError(f"{mapping.system} has no quantity_policy: it is not a channel")
    data = {"item": event.item, "location": event.location, **extra["availability"]}
    quantity = channel_quantity(mapping.quantity_policy, Availability.model_validate(data))
    previous = extra.get("last_pushed")
    return Figure(event.item, event.location, quantity, None if previous is None else Decimal(str(previous)),
                  event.idempotency_key)


def _located(exc: ValidationError, prefix: list, text: str, display: str) -> list[Problem]:
    try:
        doc = load_yaml_text(text, display)  # JSON is YAML: this gives line and column
    except ConfigError:
        return [Problem(display, None, None, "", str(e["msg"])) for e in exc.errors()]
    return problems_from_validation(doc, exc, prefix)
