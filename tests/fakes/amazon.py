"""A fake Amazon Selling Partner API and Login with Amazon: a real HTTP server on 127.0.0.1.

Behaves like the documented APIs (../shared/specs/amazon/, vendor-apis.md "Amazon SP-API"):
- ``POST /auth/o2/token`` (LWA): grant_type=refresh_token with the client id and secret gives an
  access token of ``token_lifetime_s`` (3600 s); a wrong credential is ``invalid_grant`` /
  ``invalid_client``. SP-API calls need it in ``x-amz-access-token``: missing, unknown or expired
  is 403 ``Unauthorized`` in Amazon's ``errors`` envelope (Amazon answers 403, not 401);
- every request is validated against the operation's Swagger spec (tests/fakes/amazon_spec.py): a
  violation is answered 400 ``InvalidInput`` and recorded, so a test can assert there were none;
- a token bucket per operation with Amazon's documented usage plans (``plans``): over it, 429
  ``QuotaExceeded`` without ``x-amzn-RateLimit-Limit``; 200/400/404 carry the header;
- patchListingsItem applies ``fulfillment_availability`` (DEFAULT channel) and answers ACCEPTED,
  or 200 INVALID with an ERROR issue (a listing the seller does not have, a scripted refusal);
  getListingsItem with includedData=fulfillmentAvailability;
- getOrders filters by marketplace and LastUpdateDate (LastUpdatedBefore no later than two minutes
  ago), pages with NextToken over a snapshot taken by the first page (the filters must be sent
  again); getOrderItems pages too. A cancelled order's items say QuantityOrdered 0, as Amazon's do;
- scripted faults (tests/fakes/served.Fault): any status, a hang, a lost answer.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from erp_bridge.dispatch.ratelimit import TokenBucket
from tests.fakes import amazon_spec
from tests.fakes.served import Fault, Served, drop_connection, send_json

CLIENT_ID = "amzn1.application-oa2-client.fake0123456789"
CLIENT_SECRET = "amzn1.oa2-cs.v1.fake-client-secret-7f3a"
REFRESH_TOKEN = "Atzr|IwEBIfake-refresh-token-4b1d"
SELLER = "A2FAKESELLER01"
MARKETPLACE = "ATVPDKIKX0DER"
PLANS = {"getOrders": (0.0167, 20), "getOrderItems": (0.5, 30), "patchListingsItem": (5, 5),
         "getListingsItem": (5, 10)}
QUOTA = {"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource.",
                     "details": ""}]}
ORDERS, TOKEN_PATH = "/orders/v0/orders", "/auth/o2/token"


def errors(code: str, message: str, details: str = "") -> dict:
    return {"errors": [{"code": code, "message": message, "details": details}]}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeAmazon(Served):
    def __init__(self, token_lifetime_s: float = 3600.0, plans: dict[str, tuple[float, float]] | None = None):
        self.token_lifetime_s, self.offset_s = token_lifetime_s, 0.0
        self.plans = {**PLANS, **(plans or {})}
        self.buckets = {op: TokenBucket(rate, burst, clock=self.monotonic) for op, (rate, burst) in self.plans.items()}
        self.listings: dict[tuple[str, str], dict[str, Any]] = {}  # (sku, marketplace) -> {quantity, product_type}
        self.orders: dict[str, dict[str, Any]] = {}
        self.items: dict[str, list[dict[str, Any]]] = {}
        self.refusals: dict[str, dict[str, str]] = {}
        self.tokens: dict[str, float] = {}
        self.received: list[tuple[str, str, dict[str, list[str]], Any]] = []  # (method, path, query, body)
        self.violations: list[str] = []
        self.answered: list[tuple[str, str, int, Any]] = []  # (method, path, status, body) of every answer
        self.token_requests = 0
        self.hanging: list[str] = []  # paths of requests held by a hang fault
        self.page_size, self.item_page_size = 100, 100
        self._faults: list[Fault] = []
        self._snapshots: dict[str, tuple[str, list[str]]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # -- the fake's own clock (token expiry, "two minutes ago") ---------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_s)

    def time(self) -> float:
        return self.now().timestamp()

    def monotonic(self) -> float:
        return time.monotonic() + self.offset_s

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset_s += seconds

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scenario helpers ------------------------------------------------------------------------

    def list_sku(self, sku: str, quantity: int = 0, marketplace: str = MARKETPLACE, product_type: str = "PRODUCT"):
        with self._lock:
            self.listings[(sku, marketplace)] = {"quantity": quantity, "product_type": product_type}

    def refuse(self, sku: str, code: str, message: str) -> None:
        """patchListingsItem for ``sku`` answers INVALID with this ERROR issue."""
        self.refusals[sku] = {"code": code, "message": message}

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def order(self, order_id: str, lines: list[tuple[str, int]], status: str = "Unshipped", *,
              marketplace: str = MARKETPLACE, channel: str = "MFN", age_s: float = 600.0) -> None:
        """An order placed and last updated ``age_s`` ago (Amazon lists nothing newer than 2 minutes)."""
        when = iso(self.now() - timedelta(seconds=age_s))
        with self._lock:
            self.orders[order_id] = {"AmazonOrderId": order_id, "PurchaseDate": when, "LastUpdateDate": when,
                                     "OrderStatus": status, "FulfillmentChannel": channel,
                                     "MarketplaceId": marketplace, "NumberOfItemsShipped": 0,
                                     "NumberOfItemsUnshipped": sum(q for _, q in lines)}
            self.items[order_id] = [{"ASIN": f"B0{n:08d}", "SellerSKU": sku, "OrderItemId": f"{order_id[-7:]}{n:03d}",
                                     "QuantityOrdered": quantity, "QuantityShipped": 0}
                                    for n, (sku, quantity) in enumerate(lines, 1)]

    def update(self, order_id: str, status: str, age_s: float = 300.0) -> None:
        """The order moves to ``status`` (``age_s`` ago); cancelled lines say QuantityOrdered 0."""
        with self._lock:
            order = self.orders[order_id]
            order["OrderStatus"], order["LastUpdateDate"] = status, iso(self.now() - timedelta(seconds=age_s))
            if status == "Canceled":
                for item in self.items[order_id]:
                    item["QuantityOrdered"] = 0

    def calls(self, operation: str) -> list[tuple[str, str, dict[str, list[str]], Any]]:
        return [r for r in self.received if (amazon_spec.operation(r[0], r[1]) or ("", "", {}, {}))[2]
                .get("operationId") == operation]

    # -- serving ---------------------------------------------------------------------------------

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    def answer(self, method: str, raw_path: str, headers: dict[str, str], data: bytes) -> tuple[int, dict, Any]:
        split = urlsplit(raw_path)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        if path == TOKEN_PATH:
            return self._token(data.decode())
        body = json.loads(data) if data else None
        with self._lock:
            self.received.append((method, path, query, body))
        if not self._authorised(headers):
            return 403, {}, errors("Unauthorized", "Access to requested resource is denied.",
                                   "The access token you provided has expired.")
        found = amazon_spec.violations(method, path, query, body)
        if found:
            self.violations += found
            return 400, {}, errors("InvalidInput", "; ".join(found))
        match = amazon_spec.operation(method, path)
        assert match is not None
        op, params = match[2]["operationId"], {k: unquote(v) for k, v in match[3].items()}
        bucket = self.buckets.get(op)
        if bucket is not None and bucket.reserve() > 0:
            return 429, {}, QUOTA
        status, payload = self._operation(op, params, {k: v[0] for k, v in query.items()}, body)
        self.answered.append((method, path, status, payload))
        limit = {"x-amzn-RateLimit-Limit": str(self.plans[op][0])} if op in self.plans and status in (200, 400, 404) \
            else {}
        return status, {**limit, "x-amzn-RequestId": f"req-{next(self._ids)}"}, payload

    def fault_for(self, path: str) -> Fault | None:
        with self._lock:
            for n, fault in enumerate(self._faults):
                if fault.path is None or fault.path in path:
                    return self._faults.pop(n)
        return None

    def _token(self, form: str) -> tuple[int, dict, Any]:
        fields = {k: v[0] for k, v in parse_qs(form).items()}
        self.token_requests += 1
        if fields.get("grant_type") != "refresh_token":
            return 400, {}, {"error": "unsupported_grant_type", "error_description": "grant_type must be refresh_token"}
        if (fields.get("client_id"), fields.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return 401, {}, {"error": "invalid_client", "error_description": "Client authentication failed"}
        if fields.get("refresh_token") != REFRESH_TOKEN:
            return 400, {}, {"error": "invalid_grant", "error_description": "The request has an invalid grant parameter"}
        token = f"Atza|fake-access-{next(self._ids)}"
        with self._lock:
            self.tokens[token] = self.monotonic() + self.token_lifetime_s
        return 200, {}, {"access_token": token, "refresh_token": REFRESH_TOKEN, "token_type": "bearer",
                         "expires_in": int(self.token_lifetime_s)}

    def _authorised(self, headers: dict[str, str]) -> bool:
        token = next((v for k, v in headers.items() if k.lower() == "x-amz-access-token"), None)
        return token is not None and self.tokens.get(token, 0.0) > self.monotonic()

    def _operation(self, op: str, params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
        if op == "patchListingsItem":
            return self._patch(params["sku"], query["marketplaceIds"], body)
        if op == "getListingsItem":
            listing = self.listings.get((params["sku"], query["marketplaceIds"]))
            if listing is None or params["sellerId"] != SELLER:
                return 404, errors("NOT_FOUND", f"SKU '{params['sku']}' not found in marketplace")
            return 200, {"sku": params["sku"], "fulfillmentAvailability": [
                {"fulfillmentChannelCode": "DEFAULT", "quantity": listing["quantity"]}]}
        if op == "getOrders":
            return self._orders(query)
        if op == "getOrderItems":
            return self._items(params["orderId"], query)
        return 400, errors("InvalidInput", f"{op} is not served by this fake")

    def _patch(self, sku: str, marketplace: str, body: dict) -> tuple[int, Any]:
        issue = self.refusals.get(sku)
        listing = self.listings.get((sku, marketplace))
        if issue is None and listing is None:
            issue = {"code": "4000003", "message": f"The Amazon product type specified is invalid or not supported "
                                                   f"for SKU {sku}: no listing to patch."}
        value = _availability(body)
        if issue is None and value is None:
            issue = {"code": "90220", "message": "'fulfillment_availability' needs fulfillment_channel_code DEFAULT "
                                                 "and a whole quantity of 0 or more"}
        submission = f"sub-{next(self._ids)}"
        if issue is not None:
            return 200, {"sku": sku, "status": "INVALID", "submissionId": submission,
                         "issues": [{**issue, "severity": "ERROR", "attributeNames": ["fulfillment_availability"],
                                     "categories": ["INVALID_ATTRIBUTE"]}]}
        with self._lock:
            assert listing is not None and value is not None
            listing["quantity"], listing["product_type"] = value, body["productType"]
        return 200, {"sku": sku, "status": "ACCEPTED", "submissionId": submission, "issues": []}

    def _orders(self, query: dict[str, str]) -> tuple[int, Any]:
        before_text = query.get("LastUpdatedBefore")
        latest = self.now() - timedelta(minutes=2)
        before = amazon_spec.iso(before_text) if before_text else latest
        if before is None or before > latest:
            return 400, errors("InvalidInput", "LastUpdatedBefore must be at least two minutes before now")
        filters = json.dumps({k: v for k, v in sorted(query.items()) if k != "NextToken"})
        if "NextToken" in query:
            snapshot = self._snapshots.get(query["NextToken"])
            if snapshot is None or snapshot[0] != filters:
                return 400, errors("InvalidInput", "Invalid NextToken (or the filters differ from the first page's)")
            ids = snapshot[1]
        else:
            ids = self._matching(query, before)
        size = min(int(query.get("MaxResultsPerPage", 100)), self.page_size)
        page, rest = ids[:size], ids[size:]
        payload: dict[str, Any] = {"Orders": [dict(self.orders[i]) for i in page], "LastUpdatedBefore": iso(before)}
        if rest:
            token = f"tok-{next(self._ids)}"
            self._snapshots[token] = (filters, rest)
            payload["NextToken"] = token
        return 200, {"payload": payload}

    def _matching(self, query: dict[str, str], before: datetime) -> list[str]:
        after = amazon_spec.iso(query["LastUpdatedAfter"])
        markets = set(query["MarketplaceIds"].split(","))
        assert after is not None
        with self._lock:
            return [i for i, o in self.orders.items() if o["MarketplaceId"] in markets
                    and after <= datetime.fromisoformat(o["LastUpdateDate"].replace("Z", "+00:00")) <= before]

    def _items(self, order_id: str, query: dict[str, str]) -> tuple[int, Any]:
        if order_id not in self.items:
            return 404, errors("InvalidInput", f"Invalid AmazonOrderId: {order_id}")
        start = int(query.get("NextToken", "item-0").split("-")[1])
        rows = [dict(i) for i in self.items[order_id][start:start + self.item_page_size]]
        payload: dict[str, Any] = {"AmazonOrderId": order_id, "OrderItems": rows}
        if start + self.item_page_size < len(self.items[order_id]):
            payload["NextToken"] = f"item-{start + self.item_page_size}"
        return 200, {"payload": payload}


def _availability(body: dict) -> int | None:
    for patch in body.get("patches") or []:
        if patch.get("path") == "/attributes/fulfillment_availability" and patch.get("op") in ("replace", "merge"):
            for row in patch.get("value") or []:
                quantity = row.get("quantity")
                if row.get("fulfillment_channel_code") == "DEFAULT" and isinstance(quantity, int) and quantity >= 0:
                    return quantity
    return None


def _handler(fake: FakeAmazon) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fault = fake.fault_for(self.path) if not self.path.startswith(TOKEN_PATH) else None
            if fault is not None and fault.hang_s:
                fake.hanging.append(self.path)
                time.sleep(fault.hang_s)
            if fault is not None and fault.drop == "before":
                drop_connection(self)
                return
            if fault is not None and fault.drop != "after_commit":
                send_json(self, fault.status, fault.headers, fault.body)
                return
            status, headers, payload = fake.answer(self.command, self.path, dict(self.headers), data)
            if fault is not None:  # after_commit: done, and the answer is lost
                drop_connection(self)
                return
            send_json(self, status, headers, payload)

        do_GET = do_POST = do_PATCH = _serve

    return Handler


def example_mapping_set(directory, url: str, timeout_s: float = 5.0, with_sor: str | None = None):
    """mappings/amazon_sp.yaml copied to ``directory`` with the fake's URLs and seller id (the tests
    run the mapping that ships); ``with_sor``: an http_json system of record at that URL."""
    import re
    from pathlib import Path

    from erp_bridge.mapping.loader import load_mappings
    source = Path(__file__).resolve().parents[2] / "mappings"
    directory.mkdir(parents=True, exist_ok=True)
    text = (source / "amazon_sp.yaml").read_text(encoding="utf-8")
    text = re.sub(r"base_url: \S+", f"base_url: {url}", text)
    text = re.sub(r"token_url: \S+", f"token_url: {url}{TOKEN_PATH}", text)
    text = re.sub(r"timeout_s: \S+", f"timeout_s: {timeout_s}", text)
    text = re.sub(r"seller_id: \S+", f"seller_id: {SELLER}", text)
    (directory / "amazon_sp.yaml").write_text(text, encoding="utf-8")
    if with_sor is not None:
        (directory / "sor.yaml").write_text(
            "version: 1\nsystem: sor\nconnector: http_json\nrole: system_of_record\n"
            f"connection: {{base_url: '{with_sor}', auth: {{kind: none}}, timeout_s: 1}}\n"
            "locations: {map: [{internal: WH/Stock, code: WH}]}\n")
    return load_mappings(directory)


SECRETS = {"amazon_lwa_client_id": CLIENT_ID, "amazon_lwa_client_secret": CLIENT_SECRET,
           "amazon_refresh_token": REFRESH_TOKEN}


def connector_for(amazon: FakeAmazon, directory, storage_url: str | None = None, **options):
    """The real AmazonConnector, built by the registry's factory, talking to ``amazon``."""
    from erp_bridge.connectors import registry
    mappings = example_mapping_set(directory, amazon.url, **options)
    storage = storage_url or f"sqlite:///{directory}/queue.sqlite3"
    return registry.build(mappings.systems["amazon_sp"], SECRETS, mappings.lookups, storage_url=storage)
