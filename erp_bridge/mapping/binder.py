"""The binder (OCA connector's role): internal SKU and location <-> a system's own ids, through
its mapping file. Every connector, the router and the pull endpoints ask here; nothing else
looks item or location codes up.

Items: overrides, then the lookup table, then the rule (``items.transform``), unless
``items.unlisted: error``. Locations: ``locations.map`` (several internal locations may share one
code; the ``primary`` one takes inbound changes).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..errors import RejectedError
from .checks import option_key
from .compile import UnmappedError
from .engine import item_code
from .lookups import LookupTable
from .schema import SystemMapping


class Binder:
    def __init__(self, mapping: SystemMapping, table: LookupTable | None = None, file: str | None = None):
        self.mapping, self.table = mapping, table
        self.file = file or f"mappings/{mapping.system}.yaml"

    # --- internal -> system ----------------------------------------------------------------------
    def item_code(self, sku: str) -> str:
        """The system's id for ``sku``; raises UnmappedError when the mapping has none."""
        return item_code(self.mapping, self.table, sku)

    def by_item_code(self, keys: Iterable[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
        """(SKU, location) keys grouped by the system's item id, for one read per item; keys of
        unmapped SKUs are left out (the system cannot hold them)."""
        grouped: dict[str, list[tuple[str, str]]] = {}
        for sku, location in keys:
            try:
                grouped.setdefault(self.item_code(sku), []).append((sku, location))
            except UnmappedError:
                continue
        return grouped

    def location_code(self, location: str) -> str | None:
        entry = self.mapping.location_entry(location)
        return entry.code if entry else None

    def codes(self, item: str, location: str) -> dict[str, str]:
        """``item_code`` and ``location_code`` where the mapping has them (http_json bodies)."""
        out = {}
        code = self.location_code(location)
        if code is not None:
            out["location_code"] = code
        try:
            out["item_code"] = self.item_code(item)
        except UnmappedError:
            pass  # the internal SKU is still in the body; the endpoint decides what it does with it
        return out

    # --- system -> internal ----------------------------------------------------------------------
    def internal_location(self, code: str) -> str | None:
        return self.mapping.internal_location(code)

    def sku_of(self, code: str) -> str | None:
        """The SKU a system id stands for: overrides, then the table, then (``unlisted: rule``
        with no transform) the id itself; None when it stands for none."""
        for override in self.mapping.items.overrides:
            if override.code == code:
                return override.sku
        sku = self.table.sku_of(code) if self.table is not None else None
        if sku is not None or self.mapping.items.unlisted == "error" or self.mapping.items.transform:
            return sku
        return code

    def channel_sku(self, item: str) -> str:
        """A channel line's SKU as the internal SKU, refused when the mapping does not list it."""
        if item.startswith("variant:"):
            raise RejectedError(f"{self.mapping.system} line has no SKU ({item}); give the variant a SKU "
                                f"that matches the system of record")
        listed = any(o.sku == item for o in self.mapping.items.overrides)
        if self.mapping.items.unlisted == "error" and not listed and (self.table is None or item not in self.table.codes):
            own = self.table.sku_of(item) if self.table is not None else None
            if own is not None:  # the channel named its own id (Square's variation id): the table knows it
                return own
            source = self.mapping.items.lookup.file if self.mapping.items.lookup else "items.overrides"
            raise RejectedError(f"SKU {item!r} is not listed for {self.mapping.system} ({self.file}: {source})")
        return item

    def sku_for(self, code: str, options: Mapping[str, str]) -> str | None:
        """The SKU a store code plus selected options stands for (pull clients), or None.

        Variants of ``code`` must be selected by the options: the most specific variant whose
        options are all among the selected ones wins (options that select nothing, e.g. gift wrap,
        are ignored); a tie or no match is None. A code without variants maps like a channel's
        SKU: overrides, then the lookup table, then (``unlisted: rule``) the code is the SKU."""
        variants = [v for v in self.mapping.items.variants if v.code == code]
        if not variants:
            for override in self.mapping.items.overrides:
                if override.code == code:
                    return override.sku
            sku = self.table.sku_of(code) if self.table is not None else None
            return sku if sku is not None or self.mapping.items.unlisted == "error" else code
        selected = {option_key(n, v) for n, v in options.items()}
        matches = [v for v in variants if {option_key(n, x) for n, x in v.options.items()} <= selected]
        if not matches:
            return None
        best = max(len(v.options) for v in matches)
        top = [v for v in matches if len(v.options) == best]
        return top[0].sku if len(top) == 1 else None
