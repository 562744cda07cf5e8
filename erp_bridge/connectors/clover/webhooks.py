"""Clover webhooks: the one-time verification POST, the ``X-Clover-Auth`` check, and the order
references a notification carries; then what an order's state means for its line items. Pure: no I/O.

Clover (docs.clover.com/docs/webhooks; ../shared/specs/clover/NOTES-item-stocks-webhooks-ratelimits.md):
- when the app's webhook URL is saved, Clover POSTs ``{"verificationCode": "<uuid>"}`` (no auth
  header: the auth code does not exist yet). The developer pastes that code into the dashboard;
  the bridge logs it and answers 200, and it is never stock;
- then every notification carries ``X-Clover-Auth: <the app's auth code>``, a shared code shown
  in the dashboard after verification (compared in constant time; there is no body HMAC), and
  ``{"appId", "merchants": {"<mId>": [{"objectId": "O:<orderId>", "type": "CREATE|UPDATE|DELETE",
  "ts": <ms>}]}}``: ids only. The references are stored and the order is read later.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ...domain import ChannelChange, Decrement, Increment
from ..runtime.webhooks import Statuses, WebhookRejected, by_status, header, json_object

AUTH = "X-Clover-Auth"
ORDER_PREFIX = "O:"
TYPES = ("CREATE", "UPDATE", "DELETE")
VERIFICATION = re.compile(r"^[A-Za-z0-9-]{1,64}$")
#: an order's state is its paymentState (or, without one, its state): paid orders have taken the
#: stock; a partially refunded order keeps what was not refunded (refunded lines return one by one)
SALE_STATUSES = ("PAID", "PARTIALLY_PAID", "PARTIALLY_REFUNDED", "locked")
#: a fully refunded order gives every line back; keep REFUNDED here for refunded lines to return
RESTOCK_STATUSES = ("REFUNDED",)



@dataclass(frozen=True)
class Notice:
    """What a verified delivery is: the verification code, or the order references for this merchant."""

    verification_code: str | None = None
    references: tuple[tuple[str, dict[str, Any]], ...] = ()  # (delivery key, inbox payload)
    other_merchants: tuple[str, ...] = ()
    ignored: int = 0  # events of other kinds (items, payments, customers...)


def read(auth_code: str | None, merchant: str, headers: Mapping[str, str], body: bytes) -> Notice:
    """A verification POST, or a notification whose ``X-Clover-Auth`` matches; 401 / 400 otherwise."""
    payload = json_object(body, "Clover webhook")
    given = header(headers, AUTH)
    if set(payload) == {"verificationCode"}:  # with or without a header: it carries no stock either way
        code = payload["verificationCode"]
        if not isinstance(code, str) or not VERIFICATION.match(code):
            raise WebhookRejected(400, "verificationCode is not a Clover verification code")
        return Notice(verification_code=code)
    if auth_code is None:
        raise WebhookRejected(401, f"{AUTH} cannot be checked: the mapping's webhooks.secret is not set yet")
    if given is None:
        raise WebhookRejected(401, f"missing {AUTH} header (Clover sends the app's auth code with every notification)")
    if not hmac.compare_digest(given.strip().encode(), auth_code.encode()):
        raise WebhookRejected(401, f"{AUTH} does not match the app's auth code (webhooks.secret)")
    return _notice(payload, merchant)


def _notice(payload: Mapping[str, Any], merchant: str) -> Notice:
    merchants = payload.get("merchants")
    if not isinstance(merchants, dict):
        raise WebhookRejected(400, "Clover notification has no merchants object")
    refs, ignored = [], 0
    for event in merchants.get(merchant) or []:
        ref = _reference(merchant, event)
        if ref is None:
            ignored += 1
        else:
            refs.append(ref)
    return Notice(references=tuple(refs), other_merchants=tuple(m for m in merchants if m != merchant),
                  ignored=ignored)


def _reference(merchant: str, event: Any) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(event, dict) or not isinstance(event.get("objectId"), str):
        raise WebhookRejected(400, f"Clover notification for merchant {merchant} has an event without objectId")
    object_id, kind, ts = event["objectId"], event.get("type"), event.get("ts")
    if not object_id.startswith(ORDER_PREFIX):
        return None
    order_id = object_id.removeprefix(ORDER_PREFIX)
    if not order_id.isalnum() or kind not in TYPES or not isinstance(ts, int):
        raise WebhookRejected(400, f"Clover order event {object_id!r} needs an alphanumeric id, a type of "
                                   f"{', '.join(TYPES)} and an integer ts")
    key = hashlib.sha256(f"{merchant}|{object_id}|{kind}|{ts}".encode()).hexdigest()
    return key, {"merchant": merchant, "order_id": order_id, "type": kind, "ts": ts}


#: the platform's defaults; the mapping's webhooks.sale_statuses / restock_statuses override them
STATUSES = Statuses(SALE_STATUSES, RESTOCK_STATUSES)


def status_of(order: Mapping[str, Any]) -> str:
    return str(order.get("paymentState") or order.get("state") or "")


def normalise(order: Mapping[str, Any], channel: str, location: str, statuses: Statuses,
              item_of: Callable[[str], str]) -> list[ChannelChange]:
    """The stock changes an order's current state means, keyed ``<channel>:<order>:<line item>``.

    Paid: a decrement per line item that is an inventory item; a refunded (or exchanged) line item
    also returns, once, when REFUNDED is a restock status. Fully refunded: every line and its return."""
    status, order_id = status_of(order), str(order["id"])
    raw = line_items(order)
    sold, returned = [], []
    for line in raw:
        item = line.get("item")
        if not isinstance(item, dict) or not item.get("id"):
            continue  # a custom amount or manual line: no inventory item, no stock
        change = Decrement(channel=channel, order=order_id, line=str(line["id"]), item=item_of(str(item["id"])),
                           location=location, quantity=quantity(line))
        sold.append(change)
        if line.get("refunded") or line.get("exchanged"):
            returned.append(change)
    changes = by_status(sold, status, statuses.sale, statuses.restock, "refund")
    if status in statuses.sale and "REFUNDED" in statuses.restock:
        changes += [Increment(**d.model_dump(exclude={"kind", "idempotency_key", "occurred_at"}), reason="refund")
                    for d in returned]
    return changes


def line_items(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``lineItems`` as Clover expands it (``{"elements": [...]}``) or as a plain list; 400-free:
    a malformed order is the vendor's answer, refused by the caller."""
    raw = order.get("lineItems")
    if isinstance(raw, dict):
        raw = raw.get("elements")
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(x, dict) and x.get("id") for x in raw):
        raise ValueError("lineItems is not a list of line items with ids")
    return raw


def quantity(line: Mapping[str, Any]) -> Decimal:
    """One line item is one unit, unless it is priced per unit: ``unitQty`` in thousandths."""
    units = line.get("unitQty")
    if units is None:
        return Decimal(1)
    if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
        raise ValueError(f"line item {line.get('id')} has unitQty {units!r}, not a positive integer")
    return Decimal(units) / 1000
