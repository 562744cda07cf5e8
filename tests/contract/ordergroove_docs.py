"""Ordergroove publishes no machine-readable spec for the Bulk Update: its contract is the Real Time
Stock Update guide, the Bulk Update and product Update references and the Authentication pages in
../shared/specs/ordergroove (HTML scraped to Markdown). ``QUOTES`` are the sentences this contract
rests on, read from those files (a test fails if they change); ``request_problems`` checks one
request against them, and the fake Ordergroove refuses what it refuses.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

SPECS = Path("../shared/specs/ordergroove")
GUIDE = SPECS / "guides_subscription-enrollment_real-time-stock-update.md"
BULK = SPECS / "reference_products_bulk-update.md"
UPDATE = SPECS / "reference_products_update.md"
AUTH = SPECS / "reference_ordergroove-restrpc_authentication.md"
HMAC_GUIDE = SPECS / "guides_program-data_hmac-and-aes-authentication.md"
LIMITS = SPECS / "reference_ordergroove-restrpc_api-rate-limits.md"
PATH = "/products-batch/update/"
#: what the contract rests on, quoted from the docs (file -> sentences it must contain)
QUOTES: dict[Path, tuple[str, ...]] = {
    GUIDE: ("https://restapi.ordergroove.com/products-batch/update/",
            """'authorization': '{"public_id": "<MERCHANT_PUBLIC_ID>", "ts": <SECONDS_SINCE_EPOCH>, """
            """"sig_field": "<MERCHANT_LEVEL_ID>", "sig": "<HMAC_SIGNATURE>"}'""",
            "'og-authorization': True", "'content-type': 'application/json'",
            '"product_id": "(external product id)"', '"live": false',
            "You can also include multiple products in the same request."),
    BULK: ("patch https://restapi.ordergroove.com/products-batch/update/", "200 for success.",
           "404 for not found.", "400 for error.", "Requests are throttled at 600req/min."),
    UPDATE: ("Product liveliness",),
    AUTH: ("`customer_id|timestamp`", "HMAC-SHA256, Base64 encoded", "This signature is valid for **2 hours**."),
    HMAC_GUIDE: ('signature=hash_hmac("sha256","<RAW_DATA_POINT>|<SECONDS_SINCE_EPOCH>","<HASH_KEY>");',),
    LIMITS: ("6,000 requests per IP per minute.", "429 Too Many Requests"),
}
#: at most 100 products a request: PROVENANCE.md (the newer docs index) and vendor-apis.md; not in
#: the scraped pages themselves
MAX_PRODUCTS = 100
#: a signature's timestamp must be within the last two hours (AUTH, HMAC_GUIDE)
MAX_AGE_S = 2 * 3600
#: the product fields a Bulk Update item may carry (UPDATE's Response Body Definitions) and their types
PRODUCT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "product_id": str, "external_product_id": str, "name": str, "sku": str, "price": (int, float), "live": bool,
    "image_url": str, "detail_url": str, "autoship_enabled": bool, "prepaid_eligible": bool, "discontinued": bool,
    "autoship_by_default": bool, "product_type": str, "every": int, "every_period": int, "premier_enabled": int,
    "extra_data": str, "offer_profile": str, "incentive_group": str}


def missing_quotes() -> list[str]:
    return [f"{path.name}: {quote}" for path, quotes in QUOTES.items() for quote in quotes
            if quote not in " ".join(path.read_text().split())]


def expected_sig(hash_key: str, sig_field: str, ts: int) -> str:
    """An implementation of its own (not the connector's): base64 HMAC-SHA256 of "<sig_field>|<ts>"."""
    digest = hmac.new(hash_key.encode("utf-8"), (sig_field + "|" + str(ts)).encode("utf-8"), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode("ascii")


def auth_problems(headers: dict[str, str], public_id: str, sig_field: str, hash_key: str,
                  now: float | None = None) -> list[str]:
    """Why the request's ``authorization`` would be refused ([] when it is good)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if "og-authorization" not in lowered:
        return ["no og-authorization header"]
    try:
        given = json.loads(lowered.get("authorization", ""))
    except ValueError:
        return ["authorization is not a JSON object"]
    if not isinstance(given, dict) or set(given) != {"public_id", "ts", "sig_field", "sig"}:
        return ["authorization must hold exactly public_id, ts, sig_field and sig"]
    ts = given["ts"]
    if not isinstance(ts, int) or isinstance(ts, bool):
        return ["ts must be an integer (seconds since the epoch)"]
    problems = []
    if given["public_id"] != public_id or given["sig_field"] != sig_field:
        problems.append("unknown public_id or sig_field")
    if not hmac.compare_digest(str(given["sig"]), expected_sig(hash_key, sig_field, ts)):
        problems.append("signature mismatch")
    age = (time.time() if now is None else now) - ts
    if age > MAX_AGE_S or age < -300:
        problems.append("signature timestamp outside the last two hours")
    return problems


def request_problems(method: str, path: str, headers: dict[str, str], body: bytes) -> list[str]:
    """Why the Bulk Update request itself breaks the docs (authorization aside)."""
    problems = [] if (method, path) == ("PATCH", PATH) else [f"{method} {path} is not PATCH {PATH}"]
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    if content_type.split(";")[0].strip() != "application/json":
        problems.append(f"content-type {content_type!r} is not application/json")
    try:
        items = json.loads(body)
    except ValueError:
        return [*problems, "the body is not JSON"]
    if not isinstance(items, list) or not items:
        return [*problems, "the body must be a non-empty JSON array of products"]
    if len(items) > MAX_PRODUCTS:
        problems.append(f"{len(items)} products in one request (at most {MAX_PRODUCTS})")
    return problems + [f"[{n}]: {p}" for n, item in enumerate(items) for p in item_problems(item)]


def item_problems(item: Any) -> list[str]:
    if not isinstance(item, dict) or not isinstance(item.get("product_id"), str) or not item["product_id"]:
        return ["each product needs product_id (a string: the external product id)"]
    problems = []
    for name, value in item.items():
        kind = PRODUCT_FIELDS.get(name)
        if kind is None:
            problems.append(f"{name} is not a documented product field")
        elif not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            problems.append(f"{name} has the wrong type ({type(value).__name__})")
    return problems
