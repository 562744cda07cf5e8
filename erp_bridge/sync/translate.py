"""Channel terms -> internal terms, through the channel's mapping file (the binder)."""
from __future__ import annotations

from ..domain import Decrement, Increment
from ..errors import RejectedError
from ..mapping.binder import Binder

ChannelChange = Decrement | Increment


def to_internal(mappings, change: ChannelChange) -> ChannelChange:
    """The same change with the internal SKU and location. RejectedError says what to fix."""
    mapping = _channel(mappings, change.channel)
    location = mapping.internal_location(change.location)
    file = mappings.files.get(mapping.system, f"mappings/{mapping.system}.yaml")
    if location is None:
        raise RejectedError(f"{change.channel} location {change.location!r} is not in {file} locations.map "
                            f"(or maps to several internal locations and none is primary): add "
                            f"{{internal: <the stock location it sells from>, code: {change.location}}}")
    binder = Binder(mapping, mappings.lookups.get(mapping.system), file)
    return change.model_copy(update={"item": binder.channel_sku(change.item), "location": location})


def _channel(mappings, name: str):
    mapping = mappings.systems.get(name)
    if mapping is None:
        raise RejectedError(f"no mapping file for channel {name!r}")
    return mapping
