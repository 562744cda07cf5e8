"""Availability out through the Listings Items API 2021-08-01 (``patchListingsItem``).

One PATCH per (SKU, marketplace), built by the mapping engine from the mapping's ``requests``: a JSON
Patch ``replace`` of ``/attributes/fulfillment_availability`` with ``[{fulfillment_channel_code:
DEFAULT, quantity: N}]``, the merchant-fulfilled quantity, and the listing's ``productType``
(location attr ``product_type``). Amazon takes whole units: the figure is rounded down (never show
stock that is not there), never below 0.

Amazon answers 200 for a submission it refuses too: ``status`` INVALID with ``issues`` of
severity ERROR (a wrong product type, a listing that does not exist). That is this SKU's refusal,
named with Amazon's issue code and message; ACCEPTED means queued for processing (Amazon applies
it within minutes; ``read_listed`` shows what it holds now).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any
from urllib.parse import quote

import requests

from ...domain import Delivered, Figure, Result
from ...errors import BridgeError, ConfigError, RejectedError
from ...mapping.binder import Binder
from ...mapping.compile import UnmappedError
from ...mapping.engine import build_requests
from ...mapping.lookups import LookupTable
from ...mapping.schema import LocationEntry
from ...mapping.wire import HttpRequest
from ..runtime.classify import vendor_decimal
from ..runtime.sender import Reply, Sender

VERSION_PATH = "/listings/2021-08-01/items"
ATTRIBUTE = "/attributes/fulfillment_availability"
#: merchant-fulfilled (seller's own stock); Amazon's FBA channel codes are Amazon's stock
MERCHANT_CHANNEL = "DEFAULT"


def check_request(system: str, request: HttpRequest) -> None:
    """The mapping's request must be the documented patch (the integrator edits the file)."""
    body = request.body if isinstance(request.body, Mapping) else {}
    patches = body.get("patches")
    patches = patches if isinstance(patches, list) else []
    if (request.method != "PATCH" or VERSION_PATH not in request.url or "marketplaceIds=" not in request.url
            or not body.get("productType") or not any(isinstance(p, Mapping) and p.get("path") == ATTRIBUTE
                                                        for p in patches)):
        raise ConfigError(f"{system}: the mapping's availability request must be PATCH {VERSION_PATH}/"
                          "{attr.seller_id}/{item_code}?marketplaceIds={location_code} with body {productType, "
                          f"patches: [{{op: replace, path: {ATTRIBUTE}, value: [{{fulfillment_channel_code: "
                          f"{MERCHANT_CHANNEL}, quantity}}]}}]}} (docs/connectors/amazon.md)")


def whole_units(quantity: Decimal) -> int:
    """Amazon's quantity is an integer: round down, never below zero."""
    return max(0, int(quantity.to_integral_value(ROUND_FLOOR)))


def seller_id(system: str, entry: LocationEntry) -> str:
    value = entry.attrs.get("seller_id")
    if not value:
        raise ConfigError(f"{system}: locations.map entry {entry.code} needs attrs.seller_id (the merchant token: "
                          "Seller Central > Settings > Account Info > Merchant Token)")
    return value


class Listings:
    def __init__(self, system: str, base_url: str, sender: Sender, binder: Binder):
        self.system, self._base, self._sender, self._binder = system, base_url.rstrip("/"), sender, binder

    def push(self, figure: Figure) -> Result:
        """One patchListingsItem, built by the mapping engine from the mapping's ``requests``."""
        figure = replace(figure, quantity=Decimal(whole_units(figure.quantity)))
        try:
            entry = self._entry(figure.location)
            request = build_requests(figure, self._binder.mapping, self._tables, now=datetime.now(UTC),
                                     new_id=lambda: figure.idempotency_key)[0]
        except (UnmappedError, RejectedError) as exc:
            return RejectedError(f"{self.system}: cannot map SKU {figure.item} at {figure.location}: {exc}")
        check_request(self.system, request)
        sku = self._binder.item_code(figure.item)
        reply = self._sender.send(request, what=f"patchListingsItem {sku} ({entry.code})")
        return reply if isinstance(reply, BridgeError) else submission(sku, entry.code, reply)

    @property
    def _tables(self) -> dict[str, LookupTable] | None:
        return {self.system: self._binder.table} if self._binder.table else None

    def listed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decimal]:
        """The merchant-fulfilled quantity Amazon holds per (SKU, internal location) now."""
        found: dict[tuple[str, str], Decimal] = {}
        for sku, location in keys:
            try:
                code, entry = self._binder.item_code(sku), self._entry(location)
            except (UnmappedError, RejectedError):
                continue  # not listed on Amazon
            reply = self._sender.call("GET", self._url(entry, code), what=f"getListingsItem {code} ({entry.code})",
                                      params={"marketplaceIds": entry.code, "includedData": "fulfillmentAvailability"})
            if isinstance(reply, BridgeError):
                if reply.status == 404:
                    continue
                raise reply
            held = merchant_quantity(reply.body)
            if held is not None:
                found[(sku, location)] = held
        return found

    def _entry(self, location: str) -> LocationEntry:
        entry = self._binder.mapping.location_entry(location)
        if entry is None:
            raise RejectedError(f"location {location} is not in locations.map of {self._binder.file}")
        return entry

    def _url(self, entry: LocationEntry, sku: str) -> str:
        # a SKU may hold '/', '#', spaces: one path segment, percent-encoded
        return f"{self._base}{VERSION_PATH}/{quote(seller_id(self.system, entry), safe='')}/{quote(sku, safe='')}"


def submission(sku: str, marketplace: str, reply: Reply) -> Result:
    """What a ListingsItemSubmissionResponse means for this SKU."""
    body = reply.body if isinstance(reply.body, Mapping) else {}
    errors = [i for i in body.get("issues") or [] if isinstance(i, Mapping) and i.get("severity") == "ERROR"]
    status = body.get("status")
    if status == "ACCEPTED" and not errors:
        return Delivered(f"accepted (submission {body.get('submissionId')})")
    said = "; ".join(f"{i.get('code')}: {i.get('message')}" + (f" (attributes {', '.join(i['attributeNames'])})"
                                                              if i.get("attributeNames") else "") for i in errors)
    return RejectedError(f"Amazon refused SKU {sku} in marketplace {marketplace} (status {status}): "
                         f"{said or 'no issue given'}")


def merchant_quantity(body: Any) -> Decimal | None:
    rows = body.get("fulfillmentAvailability") if isinstance(body, Mapping) else None
    for row in rows or []:
        if isinstance(row, Mapping) and row.get("fulfillmentChannelCode") == MERCHANT_CHANNEL:
            return vendor_decimal(row.get("quantity"))
    return None


def amazon_message(response: requests.Response) -> str | None:
    """Amazon's error envelope: ``{"errors": [{"code", "message", "details"}]}``."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return None
    if not isinstance(errors, list) or not errors:
        return None
    return "; ".join(f"{e.get('code')}: {e.get('message')}" + (f" ({e['details']})" if e.get("details") else "")
                     for e in errors if isinstance(e, dict))
