"""Square webhooks: verify ``x-square-hmacsha256-signature`` over the notification URL and the raw
body, then read the notification's envelope. Pure: no I/O.

A notification is a *nudge*, never a sale by itself: an ``inventory.count.updated`` count is
absolute and an order or payment event carries no stock movement, so neither can be turned into a
decrement without double counting. What happened is read from Square's inventory change history
(``history.py``) by the poller; the notification only says "look now" and is stored durably (its
``event_id`` dedupes Square's own redeliveries) before the 2xx.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ...errors import RejectedError

SIGNATURE_HEADER = "x-square-hmacsha256-signature"
#: what the bridge listens to; all of them only nudge the change-history poller
TYPES = ("inventory.count.updated", "order.created", "order.updated", "order.fulfillment.updated",
         "payment.created", "payment.updated", "refund.created", "refund.updated")
#: Square retries a failed delivery for up to 24 hours: anything older is a replay
STALE_AFTER = timedelta(hours=25)
#: a notification from further ahead than this is forged (or the host clock is wrong)
FUTURE_SKEW = timedelta(minutes=5)
MAX_COUNTS = 100  # inventory.count.updated carries at most 100 counts per notification


class WebhookRejected(RejectedError):
    """A delivery to refuse with ``status``; the reason never contains the body or the key."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Notice:
    """A verified notification: which event, when, and what it is about."""

    event_id: str
    type: str
    created_at: datetime
    #: (catalog_object_id, location_id) of the counts an inventory.count.updated names
    counts: tuple[tuple[str, str], ...] = ()


def signature(key: str, url: str, body: bytes) -> str:
    """Square's signature: base64 HMAC-SHA256 over the URL as registered followed by the body."""
    return base64.b64encode(hmac.new(key.encode(), url.encode() + body, hashlib.sha256).digest()).decode()


def verify(key: str, url: str, headers: Mapping[str, str], body: bytes, now: datetime) -> Notice:
    """401 for a missing or wrong signature; 400 for a body that is not a Square notification or
    one that is stale (a replay) or dated in the future."""
    given = _header(headers, SIGNATURE_HEADER)
    if not given:
        raise WebhookRejected(401, "missing x-square-hmacsha256-signature header")
    try:
        given_raw = base64.b64decode(given, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected(401, "malformed x-square-hmacsha256-signature header (not base64)") from None
    expected = base64.b64decode(signature(key, url, body))
    if not hmac.compare_digest(given_raw, expected):
        raise WebhookRejected(401, "x-square-hmacsha256-signature does not match: wrong signature key, altered "
                                   "body, or webhooks.notification_url differs from the subscription's URL")
    notice = parse(body)
    _check_age(notice, now)
    return notice


def parse(body: bytes) -> Notice:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookRejected(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body must be a JSON object (a Square event)")
    kind, event_id = payload.get("type"), payload.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise WebhookRejected(400, "notification has no event_id")
    if kind not in TYPES:
        raise WebhookRejected(400, f"unsupported event type {kind!r}; subscribe to {', '.join(TYPES)}")
    return Notice(event_id, kind, _time(payload.get("created_at")), _counts(kind, payload.get("data")))


def _counts(kind: str, data: Any) -> tuple[tuple[str, str], ...]:
    if kind != "inventory.count.updated":
        return ()
    counts = ((data or {}).get("object") or {}).get("inventory_counts") if isinstance(data, dict) else None
    if not isinstance(counts, list) or not all(isinstance(c, dict) for c in counts):
        raise WebhookRejected(400, "inventory.count.updated without data.object.inventory_counts[]")
    if len(counts) > MAX_COUNTS:
        raise WebhookRejected(400, f"{len(counts)} inventory counts in one notification (Square sends at most 100)")
    pairs = [(c.get("catalog_object_id"), c.get("location_id")) for c in counts]
    if not all(isinstance(i, str) and isinstance(loc, str) for i, loc in pairs):
        raise WebhookRejected(400, "an inventory count lacks catalog_object_id or location_id")
    return tuple(dict.fromkeys(pairs))  # a state change arrives as a before/after pair of one key


def _time(value: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise WebhookRejected(400, f"created_at {value!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise WebhookRejected(400, f"created_at {value!r} has no time zone")
    return moment.astimezone(UTC)


def _check_age(notice: Notice, now: datetime) -> None:
    if notice.created_at < now - STALE_AFTER:
        raise WebhookRejected(400, f"stale notification {notice.event_id} from {notice.created_at:%Y-%m-%dT%H:%M:%SZ}"
                                   f": Square stops retrying after 24 h, so this is a replay")
    if notice.created_at > now + FUTURE_SKEW:
        raise WebhookRejected(400, f"notification {notice.event_id} is dated in the future "
                                   f"({notice.created_at:%Y-%m-%dT%H:%M:%SZ}); check the host clock")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
