"""WooCommerce webhooks: verify ``X-WC-Webhook-Signature`` over the raw body, answer the creation
ping, and turn an order's status into stock changes. Pure: no I/O.

WooCommerce signs ``base64(HMAC-SHA256(secret, raw body))`` and sends no timestamp and no stable
delivery id (``X-WC-Webhook-Delivery-ID`` changes on every send), so a redelivery cannot be told
apart from the first one by its headers. It does not have to be: every change is keyed by the
order and its line (``woocommerce:<order>:<line>``), so a replay, a retry or an ``order.updated``
repeating the same status changes nothing, whatever order the deliveries arrive in.

A cancelled order yields both the sale and its return (runtime.webhooks.by_status says why).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ...domain import ChannelChange, Decrement
from ..runtime.webhooks import (
    Statuses,
    WebhookRejected,
    base64_digest_matches,
    by_status,
    header,
    hmac_sha256,
    json_object,
)

SIGNATURE = "X-WC-Webhook-Signature"
TOPIC = "X-WC-Webhook-Topic"
TOPICS = ("order.created", "order.updated")
#: WooCommerce reduces stock when an order enters these (wc_maybe_reduce_stock_levels)
SALE_STATUSES = ("processing", "on-hold", "completed")
#: ... and gives it back when a paid order is cancelled (wc_maybe_increase_stock_levels)
RESTOCK_STATUSES = ("cancelled",)
#: the ping WooCommerce posts, form-encoded and unsigned, when a webhook is created or activated
PING = re.compile(rb"webhook_id=\d+")



#: the platform's defaults; the mapping's webhooks.sale_statuses / restock_statuses override them
STATUSES = Statuses(SALE_STATUSES, RESTOCK_STATUSES)


def is_ping(headers: Mapping[str, str], body: bytes) -> bool:
    """The creation ping: no signature, no topic, just ``webhook_id=N``. It carries no data, so
    answering it 200 unverified gives nothing away and lets the merchant save the webhook."""
    return header(headers, SIGNATURE) is None and header(headers, TOPIC) is None and bool(PING.fullmatch(body.strip()))


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> tuple[str, dict[str, Any]]:
    """(topic, order) of a genuine delivery; 401 for a missing or wrong signature, 400 for a body
    that is not a JSON object or a topic the bridge does not take."""
    given = header(headers, SIGNATURE)
    if not given:
        raise WebhookRejected(401, f"missing {SIGNATURE} header (set a secret on the webhook in WooCommerce)")
    if not base64_digest_matches(given, hmac_sha256(secret.encode(), body), SIGNATURE):
        raise WebhookRejected(401, f"{SIGNATURE} does not match the body (wrong secret or altered body)")
    topic = header(headers, TOPIC) or ""
    if topic not in TOPICS:
        raise WebhookRejected(400, f"unsupported topic {topic!r}; subscribe this URL to {', '.join(TOPICS)} only")
    return topic, json_object(body, topic)


def normalise(order: Mapping[str, Any], channel: str, location: str, statuses: Statuses) -> list[ChannelChange]:
    """The stock changes an order's current status means, in WooCommerce's terms (item = SKU)."""
    try:
        status, order_id = str(order["status"]), str(int(order["id"]))
        raw_lines = order.get("line_items") or []
        if not isinstance(raw_lines, list):
            raise TypeError("line_items is not a list")
        lines = [_line(raw) for raw in raw_lines]
    except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
        raise WebhookRejected(400, f"order payload is missing or has a malformed field: {exc!r}") from None
    sold = [Decrement(channel=channel, order=order_id, line=line_id, item=item, location=location, quantity=qty)
            for line_id, item, qty in lines if qty > 0]
    return by_status(sold, status, statuses.sale, statuses.restock, "refund" if status == "refunded" else "cancel")


def _line(raw: Mapping[str, Any]) -> tuple[str, str, Decimal]:
    sku = str(raw.get("sku") or "").strip()
    variation = int(raw.get("variation_id") or 0)
    product = int(raw["product_id"]) if not sku else 0
    item = sku or (f"variant:{product}:{variation}" if variation else f"variant:{product}")
    return str(int(raw["id"])), item, Decimal(int(raw["quantity"]))
