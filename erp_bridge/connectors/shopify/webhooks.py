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
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from ...domain import Decrement, Increment
from ..runtime.webhooks import WebhookRejected, header as _header

SIGNATURE_HEADER = "x-shopify-hmac-sha256"
TOPIC_HEADER = "x-shopify-topic"
WEBHOOK_ID_HEADER = "x-shopify-webhook-id"
TOPICS = ("orders/create", "orders/cancelled", "refunds/create")
RESTOCKED = {"cancel": "cancel", "return": "return", "legacy_restock": "return"}


@dataclass(frozen=True)
class Delivery:
    topic: str
    webhook_id: str | None
    payload: dict[str, Any]


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> Delivery:
    """Check X-Shopify-Hmac-Sha256 (base64 HMAC-SHA256 of the raw body, constant-time), then
    parse. 401 for a missing, malformed or wrong signature; 400 for a body that is not JSON."""
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
    topic = _header(headers, TOPIC_HEADER) or ""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookRejected(400, f"body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body must be a JSON object")
    return Delivery(topic=topic, webhook_id=_header(headers, WEBHOOK_ID_HEADER), payload=payload)


def normalise(delivery: Delivery, channel: str, default_location: str | None) -> list[Decrement | Increment]:
    """Stock changes in Shopify's own terms: item = SKU (or ``variant:<id>`` without one),
    location = Shopify location id. The channel mapping turns them into internal ids later."""
    try:
        if delivery.topic == "orders/create":
            return _order_lines(delivery.payload, channel, default_location)
        if delivery.topic == "orders/cancelled":
            return [c for refund in delivery.payload.get("refunds") or []
                    for c in _restocks(refund, str(delivery.payload["id"]), channel, default_location)]
        if delivery.topic == "refunds/create":
            return _restocks(delivery.payload, str(delivery.payload["order_id"]), channel, default_location)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise WebhookRejected(400, f"{delivery.topic} payload is missing or has a malformed field: {exc!r}") from None
    raise WebhookRejected(400, f"unsupported topic {delivery.topic!r}; subscribe to {', '.join(TOPICS)}")


def _item(line: Mapping[str, Any]) -> str:
    sku = (line.get("sku") or "").strip()
    return sku or f"variant:{line['variant_id']}"


def _location(value: Any, default_location: str | None) -> str:
    if value not in (None, ""):
        return str(value)
    if default_location:
        return default_location
    raise ValueError("no location_id on the order and no default location in the mapping")


def _order_lines(order: Mapping[str, Any], channel: str, default_location: str | None) -> list[Decrement]:
    order_id, location = str(order["id"]), _location(order.get("location_id"), default_location)
    return [Decrement(channel=channel, order=order_id, line=str(line["id"]), item=_item(line),
                      location=location, quantity=Decimal(int(line["quantity"])))
            for line in order.get("line_items") or []
            if not line.get("gift_card") and int(line["quantity"]) > 0]


def _restocks(refund: Mapping[str, Any], order_id: str, channel: str,
              default_location: str | None) -> list[Increment]:
    out = []
    for rli in refund.get("refund_line_items") or []:
        reason = RESTOCKED.get(str(rli.get("restock_type") or "").lower())
        if reason is None or int(rli["quantity"]) <= 0:
            continue  # not restocked: the stock did not come back
        out.append(Increment(channel=channel, order=order_id, line=f"refund-line-{rli['id']}",
                             item=_item(rli["line_item"]), location=_location(rli.get("location_id"), default_location),
                             quantity=Decimal(int(rli["quantity"])), reason=reason))
    return out
