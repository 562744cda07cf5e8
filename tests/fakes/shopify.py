"""A Shopify Admin GraphQL API double on 127.0.0.1 that behaves like the documented service.

It executes real GraphQL (graphql-core) against Shopify's own Admin schema (2026-04, from
../shared/specs/shopify), so a query with a wrong field, argument, input field or type fails here
as it would at Shopify; and it refuses what Shopify refuses in inventorySetQuantities (a ``name``
other than available/on_hand, an unknown ``reason``, the same item and location twice in one call,
totals beyond +-1,000,000,000), with the schema's own user-error codes. Modelled (vendor-apis.md §5 and
shopify.dev pages cited there): `X-Shopify-Access-Token` auth (401 body as Shopify sends it);
`inventorySetQuantities` with `changeFromQuantity` compare-and-set (`CHANGE_FROM_QUANTITY_STALE`,
nothing applied) and required on every row since 2026-04; the `@idempotent(key:)` directive,
mandatory since 2026-04 (a repeated key returns the first result); calculated query cost with a
leaky bucket, answered as HTTP 200 `{"errors":[{"message":"Throttled","extensions":{"code":
"THROTTLED"}}]}` plus `extensions.cost.throttleStatus`; 429 with `Retry-After` and 5xx on demand.
Leads, not confirmed in the sources: the exact wording of missing-directive and key-reuse errors.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from graphql import GraphQLError, build_schema, graphql_sync
from graphql.execution.values import get_directive_values

API_VERSION = "2026-07"
#: Shopify's own Admin GraphQL schema (2026-04), as the vendor publishes it: every document the
#: bridge sends is validated and executed against it, so a field, argument or input the real API
#: does not have fails here as it would there
REAL_SDL = Path(__file__).resolve().parents[3] / "shared" / "specs" / "shopify" / "admin-2026-04.graphql"
#: the codes Shopify returns in InventorySetQuantitiesUserError.code (from the schema's enum)
USER_ERROR_CODES = frozenset(["INVALID_INVENTORY_ITEM", "INVALID_LOCATION", "INVALID_QUANTITY_NEGATIVE", "INVALID_REASON", "INVALID_REFERENCE_DOCUMENT", "ITEM_NOT_STOCKED_AT_LOCATION", "INVALID_QUANTITY_TOO_HIGH", "INVALID_QUANTITY_TOO_LOW", "COMPARE_QUANTITY_REQUIRED", "COMPARE_QUANTITY_STALE", "CHANGE_FROM_QUANTITY_STALE", "INVALID_NAME", "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR", "NON_MUTABLE_INVENTORY_ITEM", "IDEMPOTENCY_CONCURRENT_REQUEST", "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"])
#: inventorySetQuantities' accepted ``name``s and ``reason``s (shopify.dev quantities-states)
NAMES = ("available", "on_hand")
REASONS = frozenset(("correction", "cycle_count_available", "damaged", "movement_created", "movement_updated",
                     "movement_received", "movement_canceled", "other", "promotion", "quality_control",
                     "received", "reservation_created", "reservation_deleted", "reservation_updated",
                     "restock", "safety_stock", "shrinkage"))
MAX_TOTAL, MIN_TOTAL = 1_000_000_000, -1_000_000_000


@lru_cache(maxsize=1)
def real_schema():
    """Built once per process (about 3 s: the SDL is 3.4 MB)."""
    if not REAL_SDL.exists():
        raise RuntimeError(f"the Shopify Admin schema is missing: {REAL_SDL} (../shared/specs beside the repository)")
    # assume_valid: graphql-core is stricter than Shopify about deprecations on interface fields
    schema = build_schema(REAL_SDL.read_text(encoding="utf-8"), assume_valid=True, assume_valid_sdl=True)
    assert {v for v in schema.type_map["InventorySetQuantitiesUserErrorCode"].values} == USER_ERROR_CODES
    return schema


MUTATION_COST, QUERY_COST = 10, 2
INVALID_TOKEN = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    hang_s: float = 0.0
    #: process the request for real, then hang: the answer is lost but the change happened
    applied: bool = False


class FakeShopify:
    """Start with ``with FakeShopify(token) as shop:``; ``shop.url`` is the shop's base URL."""

    def __init__(self, token: str, bucket: float = 1000.0, restore_rate: float = 100.0):
        real_schema()  # built here, once per process: never inside a request the client times
        self.token = token
        self.levels: dict[tuple[str, str], int] = {}
        self.requests: list[dict] = []
        self.idempotent: dict[str, tuple[str, dict]] = {}
        #: every inventorySetQuantities input that changed stock (a replayed key adds nothing)
        self.adjustments: list[dict] = []
        self.faults: list[Fault] = []
        #: keys whose first request is still running (IDEMPOTENCY_CONCURRENT_REQUEST for a repeat)
        self.in_progress: set[str] = set()
        #: the next N mutations are answered IDEMPOTENCY_CONCURRENT_REQUEST, nothing applied
        self.concurrent_next = 0
        self.bucket_max, self.restore_rate = bucket, restore_rate
        self._available, self._at = bucket, time.monotonic()
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FakeShopify:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- test controls -------------------------------------------------------------------------
    def stock(self, item_gid: str, location_gid: str, available: int) -> None:
        with self.lock:
            self.levels[(item_gid, location_gid)] = available

    def sell(self, item_gid: str, location_gid: str, quantity: int) -> None:
        """A sale made in Shopify itself: its available figure drops under the bridge's feet."""
        with self.lock:
            self.levels[(item_gid, location_gid)] -= quantity

    def fail_next(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)

    def mutations(self) -> list[dict]:
        return [r for r in self.requests if "inventorySetQuantities" in r["query"]]

    # --- the service ---------------------------------------------------------------------------
    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict, Any]:
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault and fault.applied:
            answer = self._serve(headers, body)
            time.sleep(fault.hang_s)
            return answer
        if fault:
            time.sleep(fault.hang_s)
            return fault.status, fault.headers, fault.body
        return self._serve(headers, body)

    def _serve(self, headers: dict[str, str], body: bytes) -> tuple[int, dict, Any]:
        if headers.get("x-shopify-access-token") != self.token:
            return 401, {}, INVALID_TOKEN
        request = json.loads(body)
        with self.changed:
            self.requests.append({**request, "headers": headers})
            status, payload = self._execute(request["query"], request.get("variables") or {})
            self.changed.notify_all()
        return status, {}, payload

    def _execute(self, query: str, variables: dict) -> tuple[int, dict]:
        cost = MUTATION_COST if query.lstrip().startswith("mutation") else QUERY_COST
        status = self._throttle_status()
        if status["currentlyAvailable"] < cost:
            return 200, {"errors": [{"message": "Throttled", "extensions": {
                "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": {"cost": {"requestedQueryCost": cost, "actualQueryCost": None, "throttleStatus": status}}}
        self._available -= cost
        result = graphql_sync(real_schema(), query, root_value=self, variable_values=variables)
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [e.formatted for e in result.errors]
        payload["extensions"] = {"cost": {"requestedQueryCost": cost, "actualQueryCost": cost,
                                          "throttleStatus": self._throttle_status()}}
        return 200, payload

    def _throttle_status(self) -> dict:
        now = time.monotonic()
        self._available = min(self.bucket_max, self._available + (now - self._at) * self.restore_rate)
        self._at = now
        return {"maximumAvailable": self.bucket_max, "currentlyAvailable": round(self._available, 1),
                "restoreRate": self.restore_rate}

    # --- resolvers (graphql-core calls root fields as attributes of root_value) ---------------
    def inventoryItem(self, info, id: str):
        return _Item(self, id)

    def inventorySetQuantities(self, info, input: dict):
        key = _directive_key(info)
        if key is None:
            raise GraphQLError("The @idempotent directive is required for inventorySetQuantities (2026-04)")
        fingerprint = json.dumps(input, sort_keys=True)
        if key in self.in_progress or self.concurrent_next:
            self.concurrent_next = max(0, self.concurrent_next - 1)
            return _refusal("IDEMPOTENCY_CONCURRENT_REQUEST", None, "This request is currently in progress, please try again.")
        if key in self.idempotent:
            first, result = self.idempotent[key]
            if first != fingerprint:
                return _refusal("IDEMPOTENCY_KEY_PARAMETER_MISMATCH", None,
                                "The same idempotency key cannot be used with different operation parameters.")
            return result
        result = self._set(input)
        self.idempotent[key] = (fingerprint, result)
        return result

    def _set(self, input: dict) -> dict:
        errors = []
        if input["name"] not in NAMES:
            errors.append(_error("INVALID_NAME", ["input", "name"], "The quantity name must be either 'available' or 'on_hand'."))
        if input["reason"] not in REASONS:
            errors.append(_error("INVALID_REASON", ["input", "reason"], "The specified reason is invalid."))
        seen: dict[tuple, int] = {}
        for i, row in enumerate(input["quantities"]):
            key = (row["inventoryItemId"], row["locationId"])
            if key in seen:
                errors.append(_error("NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR", ["input", "quantities", str(i)],
                                     "The combination of inventoryItemId and locationId must be unique."))
            seen.setdefault(key, i)
            errors += self._row_errors(i, row)
        if errors:
            return {"inventoryAdjustmentGroup": None, "userErrors": errors}
        changes = []
        for row in input["quantities"]:
            key = (row["inventoryItemId"], row["locationId"])
            changes.append({"name": input["name"], "delta": row["quantity"] - self.levels[key],
                            "quantityAfterChange": row["quantity"]})
            self.levels[key] = row["quantity"]
        self.adjustments.append(input)
        group = f"gid://shopify/InventoryAdjustmentGroup/{len(self.idempotent) + 1}"
        return {"inventoryAdjustmentGroup": {"id": group, "reason": input["reason"],
                                             "referenceDocumentUri": input.get("referenceDocumentUri"),
                                             "changes": changes}, "userErrors": []}

    def _row_errors(self, i: int, row: dict) -> list[dict]:
        path = ["input", "quantities", str(i)]
        key = (row["inventoryItemId"], row["locationId"])
        if key not in self.levels:
            code = "INVALID_INVENTORY_ITEM" if not any(k[0] == key[0] for k in self.levels) else "ITEM_NOT_STOCKED_AT_LOCATION"
            return [{"code": code, "field": path + ["inventoryItemId"], "message": "The inventory item is not stocked at the location."}]
        if "changeFromQuantity" not in row:  # required since 2026-04 (null opts out)
            return [{"code": None, "field": path + ["changeFromQuantity"],
                     "message": "changeFromQuantity is required (pass null to opt out)."}]
        expected = row.get("changeFromQuantity")
        if expected is not None and expected != self.levels[key]:
            return [{"code": "CHANGE_FROM_QUANTITY_STALE", "field": path + ["changeFromQuantity"],
                     "message": "The specified compare quantity does not match the current quantity."}]
        if row["quantity"] > MAX_TOTAL:
            return [_error("INVALID_QUANTITY_TOO_HIGH", path + ["quantity"], "The total quantity can't be higher than 1,000,000,000.")]
        if row["quantity"] < MIN_TOTAL:
            return [_error("INVALID_QUANTITY_TOO_LOW", path + ["quantity"], "The total quantity can't be lower than -1,000,000,000.")]
        if row["quantity"] < 0:
            return [{"code": "INVALID_QUANTITY_NEGATIVE", "field": path + ["quantity"], "message": "Quantity can't be negative."}]
        return []


def _error(code: str, field: list | None, message: str) -> dict:
    assert code in USER_ERROR_CODES, code
    return {"code": code, "field": field, "message": message}


def _refusal(code: str, field: list | None, message: str) -> dict:
    return {"inventoryAdjustmentGroup": None, "userErrors": [_error(code, field, message)]}


class _Item:
    def __init__(self, shop: FakeShopify, gid: str):
        self.shop, self.id = shop, gid

    def inventoryLevel(self, info, locationId: str, includeInactive: bool = False):
        if (self.id, locationId) not in self.shop.levels:
            return None
        qty = self.shop.levels[(self.id, locationId)]
        return {"id": f"{self.id}?location={locationId}", "location": {"id": locationId},
                "quantities": lambda info, names: [{"name": n, "quantity": qty} for n in names]}


def _directive_key(info) -> str | None:
    values = get_directive_values(real_schema().get_directive("idempotent"), info.field_nodes[0], info.variable_values)
    return values["key"] if values else None


def _handler(shop: FakeShopify):
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall
        def do_POST(self):
            if self.path != f"/admin/api/{API_VERSION}/graphql.json":
                return self._send(404, {}, {"errors": "Not Found"})
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._send(*shop.handle(headers, body))

        def _send(self, status: int, headers: dict, payload: Any) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout): as with the real service, nothing to do

        def log_message(self, *args):  # keep test output clean
            pass

    return Handler


#: the shop of the repository's example mapping (mappings/shopify.yaml's base_url)
SHOP_DOMAIN = "example-store.myshopify.com"


def signed_webhook(secret: str, topic: str, payload: dict, webhook_id: str = "d1f8a8e4-0001",
                   shop: str = SHOP_DOMAIN) -> tuple[dict, bytes]:
    """Headers and body exactly as Shopify delivers a webhook (shopify.dev delivery-structure)."""
    body = json.dumps(payload).encode()
    sig = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"Content-Type": "application/json", "X-Shopify-Topic": topic, "X-Shopify-Hmac-Sha256": sig,
            "X-Shopify-Shop-Domain": shop, "X-Shopify-API-Version": API_VERSION,
            "X-Shopify-Webhook-Id": webhook_id, "X-Shopify-Event-Id": f"evt-{webhook_id}",
            "X-Shopify-Triggered-At": "2026-11-22T10:00:00Z"}, body


# --- the example mapping, pointed at a fake shop ---------------------------------------------------
TOKEN = "shpat_fake_0123456789abcdef"
WEBHOOK_SECRET = "whsec_fake_fedcba9876543210"
LOCATION = "gid://shopify/Location/61234567"
ITEMS = {"chair-blue": "gid://shopify/InventoryItem/43210987654321",
         "chair-red": "gid://shopify/InventoryItem/43210987654322",
         "007": "gid://shopify/InventoryItem/43210987654307",
         "table-oak": "gid://shopify/InventoryItem/43210987654330"}


@contextmanager
def stocked_shop(blue: int = 3, red: int = 7):
    """The fake shop holding the example mapping's two items at its one location."""
    with FakeShopify(TOKEN) as shop:
        shop.stock(ITEMS["chair-blue"], LOCATION, blue)
        shop.stock(ITEMS["chair-red"], LOCATION, red)
        yield shop


def example_mapping_set(directory, url: str, timeout_s: float = 5.0, batch_size: int | None = None,
                        extra_items: dict[str, str] | None = None):
    """mappings/shopify.yaml and its lookup table, copied to ``directory`` with the fake's URL
    (``extra_items``: more SKU -> numeric inventory item id rows for the table)."""
    import re
    import shutil

    from erp_bridge.mapping.loader import load_mappings
    source = Path(__file__).resolve().parents[2] / "mappings"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "shopify_items.csv", directory / "shopify_items.csv")
    with (directory / "shopify_items.csv").open("a", encoding="utf-8") as table:
        table.writelines(f"{sku},{code},extra\n" for sku, code in (extra_items or {}).items())
    text = (source / "shopify.yaml").read_text(encoding="utf-8")
    text = re.sub(r"base_url: \S+", f"base_url: {url}/admin/api/{API_VERSION}", text)
    text = re.sub(r"timeout_s: \S+", f"timeout_s: {timeout_s}", text)
    if batch_size is not None:
        text = re.sub(r"batch_size: \d+", f"batch_size: {batch_size}", text)
    (directory / "shopify.yaml").write_text(text, encoding="utf-8")
    return load_mappings(directory)


def connector_for(shop: FakeShopify, directory, **options):
    """The real ShopifyConnector, built by the registry's factory, talking to ``shop``."""
    return connector_at(shop.url, directory, shop.token, **options)


def connector_at(url: str, directory, token: str = TOKEN, **options):
    from erp_bridge.connectors import registry
    mappings = example_mapping_set(directory, url, **options)
    secrets = {"shopify_token": token, "shopify_webhook_secret": WEBHOOK_SECRET}
    return registry.build(mappings.systems["shopify"], secrets, mappings.lookups)
