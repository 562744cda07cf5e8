"""Channel terms -> internal terms, through the channel's mapping file (the binder)."""
from __future__ import annotations

from ..domain import Decrement, Increment
from ..errors import RejectedError

ChannelChange = Decrement | Increment


def to_internal(mappings, change: ChannelChange) -> ChannelChange:
    """The same change with the internal SKU and location. RejectedError says what to fix."""
    mapping = _channel(mappings, change.channel)
    location = mapping.internal_location(change.location)
    file = mappings.files.get(mapping.system, f"mappings/{mapping.system}.yaml")
    if location is None:
        raise RejectedError(f"{change.channel} location {change.location!r} is not in {file} locations.map "
                            f"(or maps to several internal locations and none is primary)")
    return change.model_copy(update={"item": _internal_item(mappings, mapping, change.item, file),
                                     "location": location})


def _channel(mappings, name: str):
    mapping = mappings.systems.get(name)
    if mapping is None:
        raise RejectedError(f"no mapping file for channel {name!r}")
    return mapping


def _internal_item(mappings, mapping, item: str, file: str) -> str:
    if item.startswith("variant:"):
        raise RejectedError(f"{mapping.system} line has no SKU ({item}); give the variant a SKU "
                            f"that matches the system of record")
    table = mappings.lookups.get(mapping.system)
    listed = any(o.sku == item for o in mapping.items.overrides)
    if mapping.items.unlisted == "error" and not listed and (table is None or item not in table.codes):
        source = mapping.items.lookup.file if mapping.items.lookup else "items.overrides"
        raise RejectedError(f"SKU {item!r} is not listed for {mapping.system} ({file}: {source})")
    return item
