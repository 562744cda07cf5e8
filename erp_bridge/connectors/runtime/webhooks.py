"""What every channel's webhook verifier shares: the refusal, header lookup, an HMAC check over the
raw body, and parsing the body as one JSON object. A connector keeps only its own scheme (which
header, which bytes are signed, how the digest is encoded) and what a delivery means for stock.

Every reason a refusal carries is safe to log and to answer: it never contains the body or a secret.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ...domain import Decrement, Increment
from ...errors import ConfigError, RejectedError
from ...mapping.schema import SystemMapping


class WebhookRejected(RejectedError):
    """A delivery that must be refused with ``status`` (401 forged, 400 malformed)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]``, case-insensitively (Starlette's headers are; a plain dict is not)."""
    found = headers.get(name)  # Starlette's: any case, without decoding every header as items() does
    if found is not None:
        return found
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def hmac_sha256(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def base64_digest_matches(given: str, expected: bytes, header_name: str) -> bool:
    """Constant-time compare of a base64 digest; raises 401 when ``given`` is not base64."""
    try:
        raw = base64.b64decode(given.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected(401, f"malformed {header_name} header (not base64)") from None
    return hmac.compare_digest(raw, expected)


def hex_digest_matches(given: str, expected: bytes, header_name: str) -> bool:
    """Constant-time compare of a hex digest (either case); raises 401 when ``given`` is not hex."""
    try:
        raw = bytes.fromhex(given.strip())
    except ValueError:
        raise WebhookRejected(401, f"malformed {header_name} header (not hex)") from None
    return hmac.compare_digest(raw, expected)


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """The body as one JSON object, or a 400 naming where it broke."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise WebhookRejected(400, f"{what} body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise WebhookRejected(400, f"{what} body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, f"{what} body must be a JSON object")
    return payload


def by_status(sold: Sequence[Decrement], status: str, sale: Sequence[str], restock: Sequence[str],
              reason: Literal["cancel", "refund", "return"] = "cancel") -> list[Decrement | Increment]:
    """What an order's current status means for its lines (``sold``: one decrement per line).

    A sale status: the decrements. A restock status: the decrements *and* their returns. Whether
    the bridge saw the order while it still counted as a sale cannot be told from a status, and
    need not be: both are keyed, so the sale counts once (or not again) and the return once, and
    a cancelled order nets to zero whatever its history and the order deliveries arrive in.
    Any other status (pending, incomplete, failed...) is not a sale yet: nothing."""
    if status in sale:
        return list(sold)
    if status in restock:
        returns = [Increment(**d.model_dump(exclude={"kind", "idempotency_key", "occurred_at"}), reason=reason)
                   for d in sold]
        return [*sold, *returns]
    return []


def check_order_statuses(mapping: SystemMapping) -> None:
    """An order status cannot both sell and give back: refuse a mapping that lists one in both."""
    hooks = mapping.webhooks
    both = set(hooks.sale_statuses or ()) & set(hooks.restock_statuses or ()) if hooks else set()
    if both:
        raise ConfigError(f"{mapping.system}: status {', '.join(sorted(both))} is in both webhooks.sale_statuses "
                          "and webhooks.restock_statuses")


def order_location(mapping: SystemMapping) -> str:
    """The channel location code an order counts at when the platform names none (WooCommerce has
    one stock per product; BigCommerce's order callbacks carry no location): the mapping's
    ``webhooks.default_location``, else its first location code."""
    hooks = mapping.webhooks
    if hooks is not None and hooks.default_location:
        return hooks.default_location
    return mapping.locations.map[0].code


@dataclass(frozen=True)
class Statuses:
    """Which order statuses sell and which give the stock back: a platform's defaults (one
    instance per platform), overridden by the mapping's ``webhooks.sale_statuses`` /
    ``restock_statuses`` through ``of``."""

    sale: tuple[str, ...]
    restock: tuple[str, ...]

    def of(self, sale: Sequence[str] | None, restock: Sequence[str] | None) -> Statuses:
        return Statuses(tuple(sale) if sale is not None else self.sale,
                        tuple(restock) if restock is not None else self.restock)
