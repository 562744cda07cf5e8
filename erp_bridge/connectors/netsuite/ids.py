"""NetSuite external ids: what makes an upsert land on the same record however often it is sent.

Oracle ("Using External IDs"): an external id may contain letters, digits, ``_`` and ``-`` only,
and REST puts it in the URL as ``eid:<id>``. Event keys (``odoo:move:42``, ``shopify:1001:1``)
have other characters, so every other byte is written ``-HH`` (its hex code). ``-`` itself is
escaped, so two keys never share an external id, and the id is readable in NetSuite's UI.
"""
from __future__ import annotations

import string

_KEEP = frozenset(string.ascii_letters + string.digits + "_")


def external_id(key: str) -> str:
    return "".join(c if c in _KEEP else "".join(f"-{b:02X}" for b in c.encode()) for c in key)


def event_key(external: str) -> str:
    """The event key an external id was made from (for reading NetSuite's answers back)."""
    out, i, raw = [], 0, bytearray()
    while i < len(external):
        if external[i] == "-":
            raw.append(int(external[i + 1:i + 3], 16))
            i += 3
            continue
        if raw:
            out.append(raw.decode())
            raw = bytearray()
        out.append(external[i])
        i += 1
    if raw:
        out.append(raw.decode())
    return "".join(out)
