"""BigCommerce webhooks: Standard Webhooks signatures, then what a delivery points at. Pure: no I/O.

BigCommerce signs deliveries the Standard Webhooks way (../shared/specs/standard-webhooks): headers
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (space-separated ``v1,<base64>``),
the HMAC-SHA256 of ``"{id}.{timestamp}.{raw body}"``, keyed with the app's client secret (or a
``whsec_``-prefixed base64 secret). A timestamp outside the tolerance is refused, so a captured
delivery cannot be replayed later; inside it, the same ``webhook-id`` is stored once.

Order callbacks carry ids only (``{"data": {"type": "order", "id": 250}}``): ``reference`` is what
the inbox keeps; the order's status and products are fetched later (connector.resolve).
"""
from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from ...domain import ChannelChange, Decrement
from ..runtime.webhooks import WebhookRejected, by_status, header, hmac_sha256, json_object

TOLERANCE_S = 300  # the Standard Webhooks reference libraries' five minutes
ORDER_SCOPES = ("store/order/created", "store/order/updated", "store/order/statusUpdated",
                "store/order/refund/created")
#: inventory callbacks tell what BigCommerce holds; sales arrive by the order scopes, and the
#: bridge's own pushes cause these too, so they are verified and acknowledged, nothing more
INVENTORY_PREFIXES = ("store/sku/inventory/", "store/product/inventory/")
#: status ids (GET /v2/order_statuses): 1 Pending, 2 Shipped, 3 Partially Shipped, 7 Awaiting Payment,
#: 8 Awaiting Pickup, 9 Awaiting Shipment, 10 Completed, 11 Awaiting Fulfillment, 12 Manual
#: Verification Required, 13 Disputed, 14 Partially Refunded: BigCommerce has taken the stock
SALE_STATUSES = ("1", "2", "3", "7", "8", "9", "10", "11", "12", "13", "14")
#: 5 Cancelled, 6 Declined: the stock comes back (4 Refunded only when the shop restocks refunds)
RESTOCK_STATUSES = ("5", "6")



def signing_key(secret: str) -> bytes:
    """A ``whsec_`` secret is base64 (Standard Webhooks); BigCommerce's client secret is used as is."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a whsec_ webhook secret must be base64 after the prefix") from None
    return secret.encode()


def verify(key: bytes, headers: Mapping[str, str], body: bytes,
           now: Callable[[], float] = time.time) -> tuple[str, dict[str, Any]]:
    """(webhook-id, callback) of a genuine, fresh delivery; 401 for a missing, wrong or stale
    signature, 400 for a body that is not a JSON object."""
    msg_id, stamp, signatures = (header(headers, n) for n in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not msg_id or not stamp or not signatures:
        raise WebhookRejected(401, "missing webhook-id, webhook-timestamp or webhook-signature header "
                                   "(BigCommerce signs every delivery with them)")
    if not stamp.isdigit() or "." in msg_id:
        raise WebhookRejected(401, "malformed webhook-timestamp or webhook-id header")
    if abs(now() - int(stamp)) > TOLERANCE_S:
        raise WebhookRejected(401, f"stale delivery: webhook-timestamp is more than {TOLERANCE_S} s from now "
                                   "(a replay, or this host's clock is off)")
    expected = hmac_sha256(key, f"{msg_id}.{stamp}.".encode() + body)
    if not any(_matches(candidate, expected) for candidate in signatures.split()):
        raise WebhookRejected(401, "webhook-signature does not match (wrong client secret or altered body)")
    return msg_id, json_object(body, "BigCommerce callback")


def _matches(candidate: str, expected: bytes) -> bool:
    version, _, encoded = candidate.partition(",")
    if version != "v1":
        return False  # v1a (asymmetric) or unknown: BigCommerce signs with v1
    try:
        return hmac.compare_digest(base64.b64decode(encoded, validate=True), expected)
    except (binascii.Error, ValueError):
        return False


def reference(callback: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the inbox keeps of an order callback; None for a verified callback with nothing to
    fetch (inventory scopes). 400 for another scope or a callback without its order id."""
    scope = callback.get("scope")
    if isinstance(scope, str) and scope.startswith(INVENTORY_PREFIXES):
        return None
    if scope not in ORDER_SCOPES:
        raise WebhookRejected(400, f"unsupported scope {scope!r}; subscribe this URL to {', '.join(ORDER_SCOPES)}")
    data = callback.get("data")
    order_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(order_id, int) or isinstance(order_id, bool) or (data or {}).get("type") != "order":
        raise WebhookRejected(400, f"{scope} callback has no integer data.id of type order")
    return {"scope": scope, "order_id": order_id, "hash": str(callback.get("hash") or "")}


def normalise(order_id: int, status_id: str, products: Sequence[Mapping[str, Any]], channel: str, location: str,
              sale: Sequence[str], restock: Sequence[str]) -> list[ChannelChange]:
    """The stock changes an order's current status means, keyed ``<channel>:<order>:<order product>``."""
    sold = [Decrement(channel=channel, order=str(order_id), line=str(int(p["id"])), item=_item(p), location=location,
                      quantity=Decimal(int(p["quantity"]))) for p in products if int(p["quantity"]) > 0]
    return by_status(sold, status_id, sale, restock, "refund" if status_id == "4" else "cancel")


def _item(product: Mapping[str, Any]) -> str:
    sku = str(product.get("sku") or "").strip()
    return sku or f"variant:{int(product['product_id'])}:{int(product.get('variant_id') or 0)}"
