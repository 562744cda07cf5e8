"""PrestaShop's webservice XML, read and written with xmltodict. Pure: no I/O.

Every answer is a ``<prestashop>`` envelope: a listing holds ``<orders><order>...``, one resource
``<stock_available>...``, an error ``<errors><error><code/><message/></error></errors>``. Values come
as CDATA text, some with an ``xlink:href`` attribute (``<id_product xlink:href="...">12</id_product>``);
here they become plain strings. A PUT replaces the whole resource (a field left out is blanked or
refused), so ``resource_body`` writes back every field that was read, as one line of XML: the
docs warn that formatting inside a tag "can break your resource" (docs-getting-started.md).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.parsers.expat import ExpatError

import requests
import xmltodict

XLINK = "http://www.w3.org/1999/xlink"
#: the elements of a listing that are always lists, even with one entry
LISTED = ("stock_available", "order", "order_detail", "configuration", "error")


class NotWebserviceXml(ValueError):
    """An answer that is not the webservice's XML (a PHP notice before it, a proxy's page)."""


def parse(content: bytes) -> dict[str, Any]:
    """The envelope's content (what is inside ``<prestashop>``)."""
    try:
        doc = xmltodict.parse(content, force_list=LISTED)
    except ExpatError as exc:
        start = content[:80].decode("utf-8", errors="replace")
        raise NotWebserviceXml(f"not XML ({exc}); it starts with {' '.join(start.split())!r}") from None
    envelope = doc.get("prestashop") if isinstance(doc, dict) else None
    if not isinstance(envelope, dict):
        raise NotWebserviceXml("XML without the <prestashop> envelope")
    return envelope


def listing(content: bytes, plural: str, singular: str) -> list[dict[str, str]]:
    """The resources of a listing with ``display``: ``<plural><singular>...</singular></plural>``."""
    holder = parse(content).get(plural)
    if holder is None or isinstance(holder, str):
        return []  # <orders/>: nothing matched
    if not isinstance(holder, dict):
        raise NotWebserviceXml(f"<{plural}> is not a list of <{singular}>")
    return [fields(entry) for entry in holder.get(singular) or [] if isinstance(entry, dict)]


def resource(content: bytes, singular: str) -> dict[str, str]:
    """One resource's fields (the answer to a GET or PUT of ``/api/<plural>/<id>``)."""
    entry = parse(content).get(singular)
    if isinstance(entry, list):
        entry = entry[0] if entry else None
    if not isinstance(entry, dict):
        raise NotWebserviceXml(f"no <{singular}> in the answer")
    return fields(entry)


def fields(entry: Mapping[str, Any]) -> dict[str, str]:
    """Field name -> text, without attributes (``@id``, ``xlink:href``) and nested associations."""
    out = {}
    for name, value in entry.items():
        if name.startswith("@"):
            continue
        if isinstance(value, dict) and any(not k.startswith(("@", "#")) for k in value):
            continue  # <associations>: not a field
        out[name] = text(value)
    return out


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return str(value.get("#text") or "")
    return str(value)


def resource_body(singular: str, values: Mapping[str, str]) -> str:
    """``<prestashop><singular>`` with every field of ``values``: the whole resource, unformatted."""
    doc = {"prestashop": {"@xmlns:xlink": XLINK, singular: dict(values)}}
    return xmltodict.unparse(doc, full_document=True, pretty=False)


def errors(content: bytes) -> list[tuple[str, str]]:
    """(code, message) of each ``<error>`` in an error answer; [] when it holds none."""
    try:
        holder = parse(content).get("errors")
    except NotWebserviceXml:
        return []
    if not isinstance(holder, dict):
        return []
    return [(text(e.get("code")), text(e.get("message"))) for e in holder.get("error") or [] if isinstance(e, dict)]


def prestashop_message(response: requests.Response) -> str | None:
    """The runtime's vendor message: PrestaShop's own words for a refusal."""
    found = errors(response.content)
    if not found:
        return None
    return "; ".join(f"PrestaShop error {code}: {message}" if code else f"PrestaShop: {message}"
                     for code, message in found)
