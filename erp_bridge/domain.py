"""Events, keys and quantities: pure, no I/O.

Every event names the item and location in the *originating* system's terms (SKU, location code),
as strings. Quantities are Decimal. An event's ``idempotency_key`` is what makes it count once.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, model_validator

from .errors import BridgeError

Text = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Qty = Annotated[Decimal, Field(allow_inf_nan=False)]
PositiveQty = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
#: more than any channel sells or takes back in one line; a larger figure is a bug or an attack
MAX_CHANNEL_QUANTITY = Decimal(10**9)
ChannelQty = Annotated[Decimal, Field(gt=0, le=MAX_CHANNEL_QUANTITY, allow_inf_nan=False)]

BRIDGE_ORIGIN_PREFIX = "bridge:"


def key_part(value: str) -> str:
    """One part of an idempotency key, escaped so that no two distinct tuples of parts give the
    same key: ``%`` and the separators ``:`` and ``@`` are percent-encoded. Ids made of letters,
    digits, ``-``, ``_``, ``.`` and ``/`` are unchanged, so existing keys keep their form."""
    return value.replace("%", "%25").replace(":", "%3A").replace("@", "%40")


def make_key(*parts: str) -> str:
    return ":".join(key_part(str(p)) for p in parts)


def utcnow() -> datetime:
    return datetime.now(UTC)


def bridge_origin(system: str) -> str:
    """The origin stamped on changes the bridge itself causes in ``system`` (echo-loop guard)."""
    return f"{BRIDGE_ORIGIN_PREFIX}{system}"


def caused_by_bridge_in(origin: str | None, system: str) -> bool:
    """True when ``origin`` says the bridge caused this change in ``system`` itself."""
    return origin == bridge_origin(system)


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    @property
    def ordering_key(self) -> tuple[str, str]:
        return (self.item, self.location)  # type: ignore[attr-defined]


class AvailabilityChanged(_Event):
    """The SoR says ``(item, location)`` changed. Carries no quantity: it is read at dispatch time."""

    kind: Literal["availability"] = "availability"
    system: Text
    item: Text
    location: Text
    origin: str | None = None
    sequence: int | None = None
    #: the SoR's outbox row this came from ("marker:<id>:<sequence>"), to report results back to
    source_ref: str | None = None
    occurred_at: datetime = Field(default_factory=utcnow)

    @property
    def idempotency_key(self) -> str:
        seq = "" if self.sequence is None else f":{self.sequence}"
        return f"{key_part(self.system)}:availability:{key_part(self.item)}@{key_part(self.location)}{seq}"


class StockMove(_Event):
    """A done move in the SoR, for mirrors. Never coalesced; ``move_id`` is its idempotency key."""

    kind: Literal["move"] = "move"
    system: Text
    move_id: Text
    item: Text
    quantity: PositiveQty
    uom: str | None = None
    from_location: Text
    to_location: Text
    #: the synced location this move enters (+) or leaves (-), as the journal recorded it
    location: Text
    direction: Literal["in", "out"]
    origin: str | None = None
    #: the SoR's journal row this came from ("journal:<id>:<sequence>"), to report results back to
    source_ref: str | None = None
    occurred_at: datetime = Field(default_factory=utcnow)

    @property
    def idempotency_key(self) -> str:
        return f"{self.system}:move:{self.move_id}"  # one free part, last: unambiguous as it is

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if self.direction == "in" else -self.quantity


class _ChannelChange(_Event):
    channel: Text
    order: Text
    line: Text
    item: Text
    location: Text
    quantity: ChannelQty
    occurred_at: datetime = Field(default_factory=utcnow)
    idempotency_key: Text = ""

    @model_validator(mode="after")
    def _default_key(self):
        if not self.idempotency_key:
            object.__setattr__(self, "idempotency_key", self.default_key())
        return self

    def default_key(self) -> str:
        return make_key(self.channel, self.order, self.line)


class Decrement(_ChannelChange):
    """A channel sold ``quantity``: the SoR must lose it exactly once."""

    kind: Literal["decrement"] = "decrement"

    @property
    def signed_quantity(self) -> Decimal:
        return -self.quantity


class Increment(_ChannelChange):
    """A channel cancelled or took back ``quantity``: the SoR must regain it exactly once."""

    kind: Literal["increment"] = "increment"
    reason: Literal["cancel", "refund", "return"] = "cancel"

    def default_key(self) -> str:
        return make_key(self.channel, self.order, self.line, self.reason)

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity


#: what a channel's sale, cancellation or return becomes: one line, counted once
ChannelChange = Decrement | Increment


class Count(_Event):
    """An absolute quantity a POS reports (a physical count), not a delta."""

    kind: Literal["count"] = "count"
    system: Text
    item: Text
    location: Text
    quantity: Qty
    reference: Text
    occurred_at: datetime = Field(default_factory=utcnow)

    @property
    def idempotency_key(self) -> str:
        return f"{self.system}:count:{self.reference}"  # one free part, last: unambiguous


Event = Annotated[
    AvailabilityChanged | StockMove | Decrement | Increment | Count, Field(discriminator="kind")
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: dict | str | bytes) -> Event:
    """Validate a dict or JSON document into the right event class, by its ``kind``."""
    if isinstance(data, (str, bytes)):
        return EVENT_ADAPTER.validate_json(data)
    return EVENT_ADAPTER.validate_python(data)


class Availability(BaseModel):
    """What a system of record says about one ``(item, location)`` right now."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item: Text
    location: Text
    on_hand: Qty
    reserved: Qty = Decimal(0)
    free: Qty
    forecast: Qty | None = None
    uom: str | None = None
    #: expected restock time, when the SoR knows one
    restock_at: datetime | None = None
    read_at: datetime = Field(default_factory=utcnow)


@dataclass(frozen=True)
class Figure:
    """An availability figure for one channel key, as the channel wants it."""

    item: str
    location: str
    quantity: Decimal
    #: the figure last pushed, for compare-and-set where the target offers it
    previous: Decimal | None = None
    idempotency_key: str = ""


@dataclass(frozen=True)
class Delivered:
    """The target took it. ``detail`` says how (e.g. 'applied', 'duplicate', 'unchanged')."""

    detail: str = "delivered"


#: what a connector answers for one item of a batch: Delivered, or the error for that item
Result = Delivered | BridgeError
