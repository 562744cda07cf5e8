"""Lightspeed Retail X-Series (Vend) webhooks: verify ``X-Signature`` over the raw body, read the
form-encoded ``payload``, and turn a sale into stock changes. Pure: no I/O.

A delivery is a POST, ``application/x-www-form-urlencoded``, whose ``payload`` field holds the sale
as JSON (the API 1.0 register sale: ``register_sale_products``; the 2.0 shape, ``line_items``, is
read too); other fields (``type``, ``domain_prefix``, ``environment``) may or may not be there
(x-series-api.lightspeedhq.com/docs/webhooks). Deliveries made for an OAuth application carry
``X-Signature: signature=<hex>, algorithm=HMAC-SHA256``: the HMAC-SHA256 of the raw request body
keyed with the application's client secret (Vend's developer documentation; the stored material
in ../shared/specs/lightspeed does not have it, see docs/connectors/lightspeed_x.md).

Lightspeed retries a delivery up to 20 times over 48 h and sends ``sale.update`` again whenever a
sale changes, so the same lines arrive many times: every change is keyed by the sale and its line
(``lightspeed_x:<sale>:<line>``), which makes a redelivery or a later update count nothing twice.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

from ...domain import ChannelChange, Decrement, Increment
from ..runtime.webhooks import Statuses, WebhookRejected, header, hex_digest_matches, hmac_sha256, json_object

SIGNATURE = "X-Signature"
TOPIC = "sale.update"
#: sale statuses in which X-Series has taken the stock: completed, on account, lay-by, awaiting
#: dispatch or pickup (the stock is committed to the customer) and their closed forms
SALE_STATUSES = ("CLOSED", "ONACCOUNT", "ONACCOUNT_CLOSED", "LAYBY", "LAYBY_CLOSED", "AWAITING_DISPATCH",
                 "AWAITING_PICKUP", "DISPATCHED_CLOSED", "PICKED_UP_CLOSED")
#: a voided sale gives its stock back (SAVED, a parked sale, has taken none)
RESTOCK_STATUSES = ("VOIDED",)



#: the platform's defaults; the mapping's webhooks.sale_statuses / restock_statuses override them
STATUSES = Statuses(SALE_STATUSES, RESTOCK_STATUSES)


@dataclass(frozen=True)
class Line:
    id: str
    product_id: str
    sku: str
    quantity: Decimal  # negative on a return line
    voided: bool


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    """The form fields of a genuine delivery; 401 for a missing or wrong signature, 400 for a body
    that is not a form with one ``payload`` field."""
    given = header(headers, SIGNATURE)
    if not given:
        raise WebhookRejected(401, f"missing {SIGNATURE} header (create the webhook with the OAuth application "
                                   "whose client secret is webhooks.secret; manual /setup/api webhooks are unsigned)")
    fields = dict(part.strip().partition("=")[::2] for part in given.split(","))
    if fields.get("algorithm", "HMAC-SHA256").upper() != "HMAC-SHA256" or not fields.get("signature"):
        raise WebhookRejected(401, f"malformed {SIGNATURE} header: expected signature=<hex>, algorithm=HMAC-SHA256")
    if not hex_digest_matches(fields["signature"], hmac_sha256(secret.encode(), body), SIGNATURE):
        raise WebhookRejected(401, f"{SIGNATURE} does not match the body (wrong client secret or altered body)")
    return form(body)


def form(body: bytes) -> dict[str, str]:
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except UnicodeDecodeError:
        raise WebhookRejected(400, "webhook body is not UTF-8 text") from None
    except ValueError:
        raise WebhookRejected(400, "webhook body is not application/x-www-form-urlencoded") from None
    if len(parsed.get("payload", [])) != 1:
        raise WebhookRejected(400, "webhook body has no single payload field (Lightspeed sends payload=<JSON>)")
    return {name: values[0] for name, values in parsed.items()}


def sale_of(fields: Mapping[str, str]) -> dict[str, Any] | None:
    """The sale a delivery carries; None for another topic (acknowledged, nothing to count)."""
    topic = fields.get("type")
    if topic is not None and topic != TOPIC:
        return None
    sale = json_object(fields["payload"].encode(), f"{TOPIC} payload")
    if not isinstance(sale.get("id"), str) or not isinstance(sale.get("status"), str) or _raw_lines(sale) is None:
        raise WebhookRejected(400, f"payload is not a sale (no id, status or line items); subscribe this URL to "
                                   f"{TOPIC} only")
    return sale


def lines(sale: Mapping[str, Any]) -> list[Line]:
    """The sale's lines, checked; 400 naming the field that is malformed."""
    try:
        return [_line(raw) for raw in _raw_lines(sale) or []]
    except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as exc:
        raise WebhookRejected(400, f"sale {sale.get('id')!r} has a malformed line item: {exc!r}") from None


def normalise(sale: Mapping[str, Any], channel: str, outlet: str, statuses: Statuses,
              item_of: Callable[[Line], str]) -> list[ChannelChange]:
    """What the sale's current status means for stock, keyed ``<channel>:<sale>:<line>``.

    A sale status: each sold line a decrement, each return line (negative quantity, a return
    sale's) an increment. A restock status (voided): those *and* their opposites, so the sale nets
    to zero whatever the bridge saw before. A voided line is treated as a voided sale's line.
    ``item_of(line)`` names the item (the SKU, through the mapping's binder)."""
    status, sale_id = str(sale["status"]), str(sale["id"])
    if status not in statuses.sale and status not in statuses.restock:
        return []
    changes: list[ChannelChange] = []
    for line in lines(sale):
        if line.quantity == 0:
            continue
        fields: dict[str, Any] = {"channel": channel, "order": sale_id, "line": line.id, "item": item_of(line),
                                  "location": outlet, "quantity": abs(line.quantity)}
        first: ChannelChange = Decrement(**fields) if line.quantity > 0 else Increment(**fields, reason="return")
        changes.append(first)
        if status in statuses.restock or line.voided:
            changes.append(Increment(**fields, reason="cancel") if line.quantity > 0 else Decrement(**fields))
    return changes


def _raw_lines(sale: Mapping[str, Any]) -> list[Any] | None:
    raw = sale.get("register_sale_products", sale.get("line_items"))
    return raw if isinstance(raw, list) else None


def _line(raw: Mapping[str, Any]) -> Line:
    line_id, product = raw["id"], raw["product_id"]
    if not isinstance(line_id, str) or not line_id or not isinstance(product, str) or not product:
        raise ValueError("id and product_id must be non-empty strings")
    quantity = Decimal(str(raw["quantity"]))
    if not quantity.is_finite():
        raise ValueError(f"quantity {raw['quantity']!r} is not a number")
    return Line(line_id, product, str(raw.get("sku") or "").strip(), quantity, raw.get("status") == "VOIDED")
