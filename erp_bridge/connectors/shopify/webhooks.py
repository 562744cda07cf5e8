"""Shopify webhooks: verify the HMAC over the raw body, then normalise orders into stock changes.

Pure: no I/O. Keys are chosen so that every delivery of the same fact yields the same
idempotency key: an order line is ``shopify:<order>:<line>``; a restock is keyed by the refund
line, which ``orders/cancelled`` and ``refunds/create`` both carry for one cancellation.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ...domain import Decrement, Increment
from ..runtime.webhooks import WebhookRejected

#: Shopify's headers, by the name it has used longest (``X-Shopify-*``); the same header without
#: the ``X-`` prefix (``Shopify-Hmac-Sha256``, as newer deliveries send it) is accepted as well
SIGNATURE_HEADER = "x-shopify-hmac-sha256"
TOPIC_HEADER = "x-shopify-topic"
WEBHOOK_ID_HEADER = "x-shopify-webhook-id"
SHOP_HEADER = "x-shopify-shop-domain"
TOPICS = ("orders/create", "orders/cancelled", "refunds/create")
RESTOCKED = {"cancel": "cancel", "return": "return", "legacy_restock": "return"}
#: the Admin GraphQL id of a location, as the mapping's codes are written (the pushes need them)
LOCATION_GID = "gid://shopify/Location/"
#: more units than any one order line of a real shop; a larger figure is a bug or an attack
MAX_LINE_QUANTITY = 1_000_000
#: JSON nested deeper than this is refused before it is parsed (orders are ~6 levels deep)
MAX_DEPTH = 64


@dataclass(frozen=True)
class Delivery:
    topic: str
    webhook_id: str | None
    payload: dict[str, Any]


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers by lower-case name, the first of a repeated one (as ``runtime.webhooks.header`` finds it): each
    lookup below is then one dict read, not a walk decoding every header (twice for an absent
    one, e.g. the shop domain when a delivery does not send it)."""
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), value)
    return lowered


def _header(lowered: Mapping[str, str], name: str) -> str | None:
    """``X-Shopify-Foo`` or the current ``Shopify-Foo``, case-insensitive (``lowered``: ``_lowered``)."""
    return lowered.get(name) or lowered.get(name.removeprefix("x-"))


def verify(secret: str, headers: Mapping[str, str], body: bytes, shop_domain: str | None = None) -> Delivery:
    """Check X-Shopify-Hmac-Sha256 (base64 HMAC-SHA256 of the raw body, constant-time), then
    parse. 401 for a missing, malformed or wrong signature; 403 for a delivery from another shop
    than ``shop_domain`` (the app's secret may sign for several shops); 400 for a body that is
    not UTF-8 JSON, or is nested deeper than MAX_DEPTH."""
    headers = _lowered(headers)
    given = _header(headers, SIGNATURE_HEADER)
    if not given:
        raise WebhookRejected(401, "missing X-Shopify-Hmac-Sha256 header")
    try:
        given_raw = base64.b64decode(given, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected(401, "malformed X-Shopify-Hmac-Sha256 header (not base64)") from None
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    if not hmac.compare_digest(given_raw, expected):
        raise WebhookRejected(401, "X-Shopify-Hmac-Sha256 does not match the body (wrong secret or altered body)")
    shop = _header(headers, SHOP_HEADER)
    if shop_domain and shop is not None and shop.strip().lower() != shop_domain.lower():
        raise WebhookRejected(403, f"X-Shopify-Shop-Domain {_printable(shop)!r} is not the configured "
                                   f"shop {shop_domain!r}")
    topic = _header(headers, TOPIC_HEADER) or ""
    return Delivery(topic=topic, webhook_id=_header(headers, WEBHOOK_ID_HEADER), payload=parse_body(body))


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookRejected(400, f"body is not UTF-8 (invalid byte at position {exc.start})") from None
    try:
        payload = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise WebhookRejected(400, f"body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:  # the C parser's own bound (the interpreter's recursion limit) is far deeper
        raise WebhookRejected(400, f"body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise WebhookRejected(400, f"body is not valid JSON: {exc}") from None
    if _depth(payload) > MAX_DEPTH:
        raise WebhookRejected(400, f"body is nested deeper than {MAX_DEPTH} levels")
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body must be a JSON object")
    return payload


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _depth(value: Any) -> int:
    """Deepest nesting of arrays and objects in the parsed body, one level at a time, stopping
    past MAX_DEPTH. Measured after parsing: the C parser bounds its own recursion (a RecursionError,
    refused above), and a scan of every character in Python before it cost more than the parse
    itself (280 us for an order of 8 KB against 15 us; issue 15)."""
    deepest, level = 0, [value] if isinstance(value, (dict, list)) else []
    while level and deepest <= MAX_DEPTH:
        deepest += 1
        level = [child for node in level for child in (node.values() if isinstance(node, dict) else node)
                 if isinstance(child, (dict, list))]
    return deepest


def _printable(text: str) -> str:
    return text[:100].encode("unicode_escape").decode("ascii")


def normalise(delivery: Delivery, channel: str, default_location: str | None) -> list[Decrement | Increment]:
    """Stock changes in Shopify's own terms: item = SKU (or ``variant:<id>`` without one),
    location = Shopify location id. The channel mapping turns them into internal ids later."""
    try:
        if delivery.topic == "orders/create":
            return list[Decrement | Increment](_order_lines(delivery.payload, channel, default_location))
        if delivery.topic == "orders/cancelled":
            order_id = _id(delivery.payload.get("id"), "id")
            return [c for i, refund in enumerate(_objects(delivery.payload.get("refunds"), "refunds"))
                    for c in _restocks(refund, order_id, channel, default_location, f"refunds[{i}].")]
        if delivery.topic == "refunds/create":
            return list[Decrement | Increment](_restocks(
                delivery.payload, _id(delivery.payload.get("order_id"), "order_id"), channel, default_location))
    except BadField as exc:
        raise WebhookRejected(400, f"{delivery.topic}: {exc}") from None
    except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
        raise WebhookRejected(400, f"{delivery.topic} payload is missing or has a malformed field: {exc!r}") from None
    raise WebhookRejected(400, f"unsupported topic {delivery.topic!r}; subscribe to {', '.join(TOPICS)}")


def location_code(location: str, codes: Collection[str]) -> str:
    """An order's location as the mapping names it. Orders carry Shopify's numeric location id (a
    POS sale: the store whose till sold it; a refund: where it was restocked); the mapping's codes
    are ``gid://shopify/Location/<id>``. A bare id that the mapping lists as it is stays as it is."""
    if not location.isdigit() or location in codes:
        return location
    return LOCATION_GID + location


class BadField(ValueError):
    """A field a channel cannot mean; the message names it (``line_items[2].quantity: ...``)."""


def _id(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise BadField(f"{field}: must be an id (a number or a non-empty string), got {_kind(value)}")
    return str(value)


def _objects(value: Any, field: str) -> list[Mapping[str, Any]]:
    """A JSON array of objects (missing or null: none)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadField(f"{field}: must be an array of objects, got {_kind(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise BadField(f"{field}[{i}]: must be an object, got {_kind(item)}")
    return value


def quantity(value: Any, field: str) -> int:
    """A whole, non-negative number of units within MAX_LINE_QUANTITY: validated, never coerced
    (1.5 is not 1, ``true`` is not 1, 1e308 is not a quantity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadField(f"{field}: must be a whole number of units, got {_kind(value)}")
    if isinstance(value, float) and not value.is_integer():
        raise BadField(f"{field}: must be a whole number of units, got {value!r}")
    if value < 0:
        raise BadField(f"{field}: must not be negative, got {value!r}")
    if value > MAX_LINE_QUANTITY:
        raise BadField(f"{field}: {value!r} is beyond the bound of {MAX_LINE_QUANTITY} units per line")
    return int(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {_printable(value)!r}"
    return "an array" if isinstance(value, list) else "an object"


def _item(line: Mapping[str, Any], field: str) -> str:
    sku = line.get("sku")
    if sku is not None and not isinstance(sku, str):
        raise BadField(f"{field}.sku: must be a string, got {_kind(sku)}")
    sku = (sku or "").strip()
    return sku or f"variant:{_id(line.get('variant_id'), f'{field}.variant_id')}"


def _location(value: Any, default_location: str | None, field: str) -> str:
    if value not in (None, ""):
        return _id(value, field)
    if default_location:
        return default_location
    raise BadField(f"{field}: missing on the order and no webhooks.default_location in the mapping")


def _order_lines(order: Mapping[str, Any], channel: str, default_location: str | None) -> list[Decrement]:
    order_id = _id(order.get("id"), "id")
    location = _location(order.get("location_id"), default_location, "location_id")
    out = []
    for i, line in enumerate(_objects(order.get("line_items"), "line_items")):
        field = f"line_items[{i}]"
        units = quantity(line.get("quantity"), f"{field}.quantity")
        if line.get("gift_card") is True or units == 0:
            continue
        out.append(Decrement(channel=channel, order=order_id, line=_id(line.get("id"), f"{field}.id"),
                             item=_item(line, field), location=location, quantity=Decimal(units)))
    return out


def _restocks(refund: Mapping[str, Any], order_id: str, channel: str,
              default_location: str | None, prefix: str = "") -> list[Increment]:
    out = []
    for i, rli in enumerate(_objects(refund.get("refund_line_items"), f"{prefix}refund_line_items")):
        field = f"{prefix}refund_line_items[{i}]"
        reason = RESTOCKED.get(str(rli.get("restock_type") or "").lower())
        units = quantity(rli.get("quantity"), f"{field}.quantity")
        if reason is None or units == 0:
            continue  # not restocked: the stock did not come back
        line_item = rli.get("line_item")
        if not isinstance(line_item, dict):
            raise BadField(f"{field}.line_item: must be an object, got {_kind(line_item)}")
        out.append(Increment(channel=channel, order=order_id, line=f"refund-line-{_id(rli.get('id'), f'{field}.id')}",
                             item=_item(line_item, f"{field}.line_item"),
                             location=_location(rli.get("location_id"), default_location, f"{field}.location_id"),
                             quantity=Decimal(units), reason=reason))
    return out
