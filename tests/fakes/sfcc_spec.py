"""The SFCC contracts, as request validators shared by the fake and the contract tests.

Orders: ``../shared/specs/sfcc-oci/orders-oas-v1-public.yaml`` (the official SCAPI Orders OAS),
through openapi-core: path, query parameters (``siteId`` required, ``limit`` 1..200, the sort
enums, date-time filters) and the 200 answer's ``OrdersResponse`` schema. The prose rule "The sum
of the offset and limit parameters cannot be greater than 10000" is checked too.

OCI batch-update: no OpenAPI/RAML of Omnichannel Inventory is public (../shared/specs/sfcc-oci/
NOTES-omnichannel-inventory.md), so the request is checked against the documented fields of
"Availability Records, Batch Update" and "OCI Batch Update Single Input" (Connect REST API v62,
vendor-apis.md §9). The doc's property table, quoted:

    records            OCI Batch Update Single Input[]  Data for one inventory record ...   Required
    attributeSet       OCI Attribute Set Input          Inventory record attribute set.      Optional
    effectiveDate      String   Effective date of the update.                               Optional
    externalRefId      String   Unique code, reference, or identifier for the record ...    Optional
    futureStock        OCI Future Stock Single Input[]  Inventory that is expected soon.    Optional
    actionRequestId    String   Idempotent ID that identifies this request.                 Required
    locationIdentifier String   Identifier of the location where the inventory is reserved. Required
    onHand             Double   Physical inventory available, not including Future Quantity. Optional
    safetyStockCount   Double   Inventory held in reserve that isn't included in Available To Order
                                and Available To Fulfill.                                   Optional
    stockKeepingUnit   String   SKU of the product to update.                               Required

The records-per-call bound (100) is the bridge's own: the doc states partial success, no maximum.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jsonschema

SPECS = Path("../shared/specs/sfcc-oci")
ORDERS_OAS = SPECS / "orders-oas-v1-public.yaml"
HOST = "https://kv7kzm78.api.commercecloud.salesforce.com"
MAX_RECORDS = 100
MAX_OFFSET_PLUS_LIMIT = 10000

DATE_TIME = {"type": "string", "format": "date-time"}
SINGLE_INPUT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["actionRequestId", "locationIdentifier", "stockKeepingUnit"],
    "properties": {
        "attributeSet": {"type": "object"},
        "effectiveDate": DATE_TIME,
        "externalRefId": {"type": "string"},
        "futureStock": {"type": "array", "items": {"type": "object", "required": ["expectedDate", "quantity"],
                                                   "properties": {"expectedDate": DATE_TIME,
                                                                  "quantity": {"type": "number", "minimum": 0}}}},
        "actionRequestId": {"type": "string", "minLength": 1},
        "locationIdentifier": {"type": "string", "minLength": 1},
        "onHand": {"type": "number", "minimum": 0},
        "safetyStockCount": {"type": "number", "minimum": 0},
        "stockKeepingUnit": {"type": "string", "minLength": 1},
    },
}
BATCH_UPDATE_INPUT = {"type": "object", "additionalProperties": False, "required": ["records"],
                      "properties": {"records": {"type": "array", "minItems": 1, "maxItems": MAX_RECORDS,
                                                 "items": SINGLE_INPUT}}}


def available() -> bool:
    return ORDERS_OAS.exists()


def batch_update_violations(body: Any) -> list[str]:
    """How ``body`` breaks the documented OCI Batch Update Input (empty: it conforms)."""
    validator = jsonschema.Draft202012Validator(BATCH_UPDATE_INPUT, format_checker=jsonschema.FormatChecker())
    found = [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in validator.iter_errors(body)]
    ids = [r.get("actionRequestId") for r in (body or {}).get("records") or [] if isinstance(r, dict)]
    if len(ids) != len(set(ids)):
        found.append("records: an actionRequestId appears twice in one request")
    return found


@cache
def orders_openapi() -> Any:
    from openapi_core import OpenAPI
    return OpenAPI.from_file_path(str(ORDERS_OAS))


def orders_request_violations(path: str, query: dict[str, Any], headers: dict[str, str]) -> list[str]:
    """How a GET of ``path`` with ``query`` breaks the orders OAS (empty: it conforms)."""
    from openapi_core.testing import MockRequest
    request = MockRequest(HOST + "/checkout/orders/v1", "get", path, args=query, headers=headers)
    found = [_describe(e) for e in orders_openapi().iter_request_errors(request)]
    try:
        if int(query.get("offset", 0)) + int(query.get("limit", 100)) > MAX_OFFSET_PLUS_LIMIT:
            found.append("offset + limit is greater than 10000")
    except ValueError:
        pass  # already reported by the OAS
    return found


def orders_response_violations(path: str, query: dict[str, Any], body: bytes) -> list[str]:
    """How a 200 answer the fake gave breaks ``OrdersResponse`` (the fake's honesty)."""
    from openapi_core.testing import MockRequest, MockResponse
    request = MockRequest(HOST + "/checkout/orders/v1", "get", path, args=query)
    response = MockResponse(body, status_code=200, content_type="application/json")
    return [_describe(e) for e in orders_openapi().iter_response_errors(request, response)]


def _describe(error: Exception) -> str:
    cause = error.__cause__
    details = [str(e).splitlines()[0] for e in getattr(cause, "schema_errors", None) or []]
    return f"{type(error).__name__}: {'; '.join(details) or str(error)[:300]}"


def query_string(query: dict[str, Any]) -> str:
    return urlencode(query)
