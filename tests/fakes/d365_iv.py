"""A Dynamics 365 Inventory Visibility double on 127.0.0.1, behaving as
../shared/specs/dynamics365/inventory-visibility-api.md documents it:

- the security service ``POST /securityservice/token`` (``Api-Version: 1.0``, a JSON body with exactly
  the documented keys; ``client_assertion`` must be an Azure AD token the AAD double issued for the
  documented app scope; ``context`` the environment id) answers ``{access_token, token_type, expires_in}``
  (3600 s on the given clock); optionally a 307 to a regional gateway first, as the doc warns;
- the API under ``/api/environment/<id>``: ``POST /onhand`` (one change event), ``/onhand/bulk`` (at
  most 512), ``/onhand/indexquery``; bearer tokens from the security service only, ``Api-Version``
  required; every event validated (id, organizationId, productId, dimensions with siteId and
  locationId, quantities ``{data source: {measure: number}}``); an ``id`` already counted is not
  counted again; the index query answers rows with lower-cased ``siteid``/``locationid`` and the
  ``fno``/``pos``/``iv`` measures, ``iv.onhand`` and ``iv.availabletoreserve`` computed as the default
  configuration does (``fno`` physical + ``pos.inbound`` - ``pos.outbound``);
- faults from ``Served.fail_next``.
Leads, not in the doc: the validation error body (ASP.NET problem details) and that a bulk with one
invalid event is refused whole.
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .azure_ad import FakeAzureAd
from .http_server import Answer, Served

ENVIRONMENT = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
AAD_SCOPE = "0cdb527f-a8d1-4bf8-9436-b352c68682b2/.default"
TOKEN_BODY = {"grant_type": "client_credentials", "client_assertion_type": "aad_app",
              "scope": "https://inventoryservice.operations365.dynamics.com/.default", "context_type": "finops-env"}
EVENT_KEYS = {"id", "organizationId", "productId", "dimensionDataSource", "dimensions", "quantities"}
QUERY_KEYS, FILTER_KEYS = {"dimensionDataSource", "filters", "groupByValues", "returnNegative"}, {
    "organizationId", "productId", "siteId", "locationId"}
DATA_SOURCES = {"pos", "fno", "iv"}
BULK_MAX = 512


class FakeInventoryVisibility:
    def __init__(self, aad: FakeAzureAd, organization: str = "usmf", *, lifetime_s: int = 3600,
                 redirect_first: bool = False, clock: Callable[[], float] = time.time):
        self.aad, self.organization, self.lifetime_s, self.clock = aad, organization, lifetime_s, clock
        self.redirect_first = redirect_first
        #: products whose events the service refuses (a test control for a refused event)
        self.refused_products: set[str] = set()
        self.tokens: dict[str, float] = {}
        self.token_requests: list[tuple[str, dict]] = []
        self.counted: dict[str, dict] = {}  # event id -> the event, once
        self.received: list[tuple[str, Any]] = []  # (path, body) of API calls
        self.headers_seen: list[dict[str, str]] = []  # their headers, in the same order
        #: (product, site, location) -> data source -> measure -> quantity
        self.measures: dict[tuple[str, str, str], dict[str, dict[str, Decimal]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(Decimal)))
        self.lock = threading.RLock()
        self.served = Served(self)

    @property
    def api_url(self) -> str:
        return f"{self.served.origin}/api/environment/{ENVIRONMENT}"

    @property
    def token_url(self) -> str:
        return f"{self.served.origin}/securityservice/token"

    def __enter__(self) -> FakeInventoryVisibility:
        self.served.up()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.served.down()

    def physical(self, product: str, site: str, location: str, quantity: Any) -> None:
        """Stock F&O reported (``fno.physicalinvent``)."""
        with self.lock:
            self.measures[(product, site, location)]["fno"]["physicalinvent"] = Decimal(str(quantity))

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    # --- the service ------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        route = urlsplit(path).path
        with self.lock:
            if method == "POST" and route == "/securityservice/token" and self.redirect_first:
                self.redirect_first = False
                return 307, {"Location": f"{self.served.origin}/gw/securityservice/token"}, b""
            if method == "POST" and route.endswith("/securityservice/token"):
                return self._token(headers, body)
            return self._api(method, route, headers, body)

    def _token(self, headers: dict[str, str], body: bytes) -> Answer:
        payload = _load(body)
        self.token_requests.append((headers.get("Api-Version", ""), payload))
        if headers.get("Api-Version") != "1.0" or not isinstance(payload, dict) or \
                set(payload) != {*TOKEN_BODY, "client_assertion", "context"} or \
                any(payload.get(k) != v for k, v in TOKEN_BODY.items()):
            return _json(400, {"error": "invalid_request", "error_description": "malformed token request"})
        if not self.aad.valid(str(payload["client_assertion"]), AAD_SCOPE):
            return _json(401, {"error": "invalid_client", "error_description": "the client assertion is not valid"})
        if payload["context"] != ENVIRONMENT:
            return _json(403, {"error": "unauthorized_client", "error_description":
                               f"environment {payload['context']} is not registered for this application"})
        token = "iv." + secrets.token_urlsafe(24)
        self.tokens[token] = self.clock() + self.lifetime_s
        return _json(200, {"access_token": token, "token_type": "bearer", "expires_in": self.lifetime_s})

    def _api(self, method: str, route: str, headers: dict[str, str], body: bytes) -> Answer:
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        if self.tokens.get(token, 0.0) <= self.clock():
            return 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}, b""
        prefix = f"/api/environment/{ENVIRONMENT}"
        if headers.get("Api-Version") not in ("1.0", "2.0"):
            return _problem({"Api-Version": ["The Api-Version header is required (1.0)."]})
        payload = _load(body)
        self.received.append((route.removeprefix(prefix), payload))
        self.headers_seen.append(dict(headers))
        handler = {f"{prefix}/onhand": self._one, f"{prefix}/onhand/bulk": self._bulk,
                   f"{prefix}/onhand/indexquery": self._query}.get(route)
        if method != "POST" or handler is None:
            return _json(404, {"message": f"no route {method} {route}"})
        return handler(payload)

    def _invalid(self, event: Any) -> dict[str, list[str]]:
        errors = _invalid_event(event, self.organization)
        if isinstance(event, dict) and event.get("productId") in self.refused_products:
            errors["productId"] = [f"product {event['productId']} is not valid in this partition"]
        return errors

    def _one(self, event: Any) -> Answer:
        errors = self._invalid(event)
        if errors:
            return _problem(errors)
        self._count(event)
        return _json(200, {"id": event["id"], "processingStatus": "success", "message": "", "statusCode": 200})

    def _bulk(self, events: Any) -> Answer:
        if not isinstance(events, list) or not 0 < len(events) <= BULK_MAX:
            return _problem({"body": [f"an array of 1 to {BULK_MAX} change events"]})
        for n, event in enumerate(events):
            errors = self._invalid(event)
            if errors:
                return _problem({f"[{n}].{k}": v for k, v in errors.items()})
        for event in events:
            self._count(event)
        return _json(200, [{"id": e["id"], "processingStatus": "success", "statusCode": 200} for e in events])

    def _count(self, event: dict) -> None:
        if event["id"] in self.counted:
            return  # "the same event won't be counted twice"
        self.counted[event["id"]] = event
        dims = {k.lower(): v for k, v in event["dimensions"].items()}
        level = self.measures[(event["productId"], dims["siteid"], dims["locationid"])]
        for source, values in event["quantities"].items():
            for measure, quantity in values.items():
                level[source.lower()][measure.lower()] += Decimal(str(quantity))

    def _query(self, body: Any) -> Answer:
        errors = _invalid_query(body, self.organization)
        if errors:
            return _problem(errors)
        wanted = body["filters"]
        rows = [self._row(key) for key in sorted(self.measures) if
                (not wanted["productId"] or key[0] in wanted["productId"]) and
                (not wanted["siteId"] or key[1] in wanted["siteId"]) and
                (not wanted["locationId"] or key[2] in wanted["locationId"])]
        return _json(200, rows)

    def _row(self, key: tuple[str, str, str]) -> dict:
        level = self.measures[key]
        fno, pos = level["fno"], level["pos"]
        on_hand = fno["physicalinvent"] + pos["inbound"] - pos["outbound"]
        quantities = {"fno": {"physicalinvent": fno["physicalinvent"]},
                      "pos": {"inbound": pos["inbound"], "outbound": pos["outbound"]},
                      "iv": {"onhand": on_hand, "availabletoreserve": on_hand - level["iv"]["softreservphysical"]}}
        return {"productId": key[0], "dimensions": {"siteid": key[1], "locationid": key[2]},
                "quantities": quantities}


def _invalid_event(event: Any, organization: str) -> dict[str, list[str]]:
    if not isinstance(event, dict):
        return {"body": ["a change event object"]}
    errors = {k: ["unknown field"] for k in event if k not in EVENT_KEYS}
    for key in ("id", "organizationId", "productId"):
        if not isinstance(event.get(key), str) or not event[key]:
            errors[key] = [f"The {key} field is required."]
    if event.get("organizationId") not in (None, organization):
        errors["organizationId"] = [f"unknown organization {event.get('organizationId')}"]
    if "dimensionDataSource" in event and event["dimensionDataSource"] not in DATA_SOURCES:
        errors["dimensionDataSource"] = ["not a configured data source"]
    dims = event.get("dimensions")
    if not isinstance(dims, dict) or not all(isinstance(v, str) for v in dims.values()) or \
            not {"siteid", "locationid"} <= {k.lower() for k in dims}:
        errors["dimensions"] = ["siteId and locationId are required dimensions (data partition by location)"]
    quantities = event.get("quantities")
    if not isinstance(quantities, dict) or not quantities or not all(
            isinstance(m, dict) and m and all(isinstance(q, (int, Decimal)) and not isinstance(q, bool)
                                              for q in m.values()) for m in quantities.values()):
        errors["quantities"] = ["{data source: {measure: number}}"]
    return errors


def _invalid_query(body: Any, organization: str) -> dict[str, list[str]]:
    if not isinstance(body, dict) or not isinstance(body.get("filters"), dict) or set(body) - QUERY_KEYS:
        return {"body": ["{filters: {...}, groupByValues: [...], returnNegative: bool}"]}
    filters, errors = body["filters"], {}
    for key in FILTER_KEYS:
        if not isinstance(filters.get(key), list) or not all(isinstance(v, str) for v in filters[key]):
            errors[f"filters.{key}"] = ["an array of strings"]
    if filters.get("organizationId") != [organization]:
        errors["filters.organizationId"] = ["exactly one organization id"]
    if not isinstance(body.get("groupByValues", []), list) or not isinstance(body.get("returnNegative", True), bool):
        errors["groupByValues"] = ["groupByValues: string[], returnNegative: boolean"]
    return errors


def _load(body: bytes) -> Any:
    try:
        return json.loads(body, parse_float=Decimal) if body else None
    except ValueError:
        return None


def _problem(errors: dict[str, list[str]]) -> Answer:
    return _json(400, {"type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
                       "title": "One or more validation errors occurred.", "status": 400, "errors": errors})


def _json(status: int, payload: Any) -> Answer:
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(payload, default=_number).encode()


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(type(value).__name__)


# --- helpers the Inventory Visibility tests share --------------------------------------------------
MAPPING_FILE = Path(__file__).resolve().parents[2] / "mappings" / "dynamics365_iv.yaml"
CLIENT = ("bridge-app", "app-secret-123")


def iv_mapping(iv: FakeInventoryVisibility, *, role: str = "mirror", batch_size: int = 100):
    """The example mapping (mappings/dynamics365_iv.yaml) pointed at the doubles."""
    from erp_bridge.mapping.schema import SystemMapping
    from erp_bridge.yamlpos import load_yaml_file

    data = load_yaml_file(MAPPING_FILE).data
    data["connection"].update(base_url=iv.api_url, timeout_s=2.0)
    data["connection"]["auth"].update(authority=iv.aad.authority, token_url=iv.token_url)
    data["role"], data["writes"]["batch_size"] = role, batch_size
    return SystemMapping.model_validate(data)


def iv_connector(iv: FakeInventoryVisibility, *, mapping: Any = None, client: tuple[str, str] = CLIENT,
                 token_clock: Callable[[], float] = time.monotonic):
    from erp_bridge.connectors.dynamics365.inventory_visibility import from_context
    from erp_bridge.connectors.runtime.context import ConnectorContext

    mapping = mapping or iv_mapping(iv)
    names = mapping.connection.auth.secrets
    secrets_ = {names["client_id"]: client[0], names["client_secret"]: client[1]}
    return from_context(ConnectorContext(mapping, secrets_.__getitem__, {}), token_clock=token_clock)
