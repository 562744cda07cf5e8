"""Ordergroove (seed 003): a subscription platform that receives availability only, as a product's
``live`` flag (the "Real Time Stock Update" guide).

A figure at or under the channel's low-stock threshold turns the product off (``live: false``), so
renewals due tomorrow move into Ordergroove's out-of-stock flow instead of failing; it turns back on
(``live: true``) only at ``threshold + hysteresis``, so a figure hovering at the threshold does not
flap. Figures go out with ``PATCH /products-batch/update/``, at most 100 products per call; the
answer has one result per product (200, 400, 404), and each becomes that product's outcome.

What Ordergroove shows is one bit per product. Which bit was last confirmed is kept in the queue's
storage (``LiveFlags``, on the ``FigureStore``), so every process and host shares it and a restart
keeps it: the last pushed *figure* alone cannot say whether a figure inside the hysteresis band
came down from "live" or up from "off" (docs/connectors/ordergroove.md, "Where the state lives").
"""
from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests

from ..domain import Delivered, Figure, Result
from ..errors import BridgeError, ConfigError, MappingError, RejectedError, RetryableError
from ..mapping.binder import Binder
from ..mapping.compile import UnmappedError
from ..mapping.lookups import LookupTable
from ..mapping.schema import QuantityPolicy, SystemMapping
from ..sync.figures import FigureStore
from .base import Capability
from .runtime.auth import Strategy
from .runtime.batch import until_down
from .runtime.context import ConnectorContext
from .runtime.sender import Reply, Sender
from .runtime.webhooks import hmac_sha256

PATH = "/products-batch/update/"
WHAT = "Ordergroove PATCH /products-batch/update/"
#: the Bulk Update endpoint takes at most 100 products per request
MAX_PRODUCTS = 100
AUTH_KIND = "ordergroove_hmac"
#: connection.auth.secrets roles: merchant public id, merchant level id (the signed field), hash key
SECRET_ROLES = ("public_id", "sig_field", "hash_key")


def signature(hash_key: str, sig_field: str, ts: int) -> str:
    """base64(HMAC-SHA256(hash key, "<sig_field>|<ts>")), as the Authentication reference builds it."""
    return base64.b64encode(hmac_sha256(hash_key.encode(), f"{sig_field}|{ts}".encode())).decode()


def authorization(public_id: str, sig_field: str, hash_key: str, ts: int) -> str:
    """The ``authorization`` header value: a JSON object as text (Real Time Stock Update guide)."""
    return json.dumps({"public_id": public_id, "ts": ts, "sig_field": sig_field,
                       "sig": signature(hash_key, sig_field, ts)})


class OrdergrooveSignature(Strategy):
    """A fresh signature on every request: Ordergroove refuses a ``ts`` older than two hours."""

    def __init__(self, public_id: str, sig_field: str, hash_key: str, clock: Callable[[], float] = time.time):
        self._public_id, self._sig_field, self._hash_key, self._clock = public_id, sig_field, hash_key, clock
        self.secret_values = (hash_key, public_id, sig_field)  # all three are configured as secrets

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        ts = int(self._clock())
        request.headers["authorization"] = authorization(self._public_id, self._sig_field, self._hash_key, ts)
        request.headers["og-authorization"] = "True"  # the guide's ``'og-authorization': True``
        return request


@dataclass(frozen=True)
class Threshold:
    """Off at or under ``low``; back on only at ``low + hysteresis`` (and above ``low``)."""

    low: Decimal
    hysteresis: Decimal

    @classmethod
    def of(cls, policy: QuantityPolicy | None) -> Threshold:
        low = policy.low_stock_threshold if policy and policy.low_stock_threshold is not None else Decimal(0)
        return cls(low, policy.low_stock_hysteresis if policy else Decimal(0))

    def live(self, quantity: Decimal, shown: bool | None) -> bool:
        """What Ordergroove should show for ``quantity`` when it shows ``shown`` (None: unknown)."""
        if quantity <= self.low:
            return False
        if quantity >= self.low + self.hysteresis:
            return True
        return True if shown is None else shown  # inside the band: keep what is shown


class LiveFlags:
    """The ``live`` flag Ordergroove last confirmed per product, in the queue's storage (SQLite file
    or PostgreSQL): a FigureStore namespace of its own, 1 for live and 0 for off."""

    def __init__(self, storage_url: str, system: str):
        self._store, self._target = FigureStore(storage_url), f"{system}:live"

    def get(self, product_id: str) -> bool | None:
        value = self._store.get(self._target, product_id, "")
        return None if value is None else bool(value)

    def put(self, product_id: str, live: bool) -> None:
        self._store.put(self._target, product_id, "", Decimal(int(live)))

    def close(self) -> None:
        self._store.close()


@dataclass(frozen=True)
class Row:
    index: int
    sku: str
    product_id: str
    live: bool


class OrdergrooveConnector:
    capabilities = frozenset({Capability.PUSH_AVAILABILITY})

    def __init__(self, mapping: SystemMapping, sender: Sender, binder: Binder, flags: LiveFlags):
        self.name, self._sender, self._binder, self._flags = mapping.system, sender, binder, flags
        self._url = str(mapping.connection.base_url).rstrip("/") + PATH
        self._threshold = Threshold.of(mapping.quantity_policy)
        self._batch_size = min(mapping.writes.batch_size, MAX_PRODUCTS)

    def push_availability(self, figures: Sequence[Figure]) -> list[Result]:
        outcomes: list[Result | None] = [None] * len(figures)
        rows = [r for r in (self._row(i, f, outcomes) for i, f in enumerate(figures)) if r is not None]
        chunks = [rows[n:n + self._batch_size] for n in range(0, len(rows), self._batch_size)]
        for chunk, sent in zip(chunks, until_down(chunks, self._send)):
            for row, outcome in zip(chunk, sent if isinstance(sent, list) else [sent] * len(chunk)):
                outcomes[row.index] = outcome
        # every figure has its outcome by now; should one not, it is retried rather than dropped
        return [o if o is not None else RetryableError("not pushed in this attempt") for o in outcomes]

    def _row(self, index: int, figure: Figure, outcomes: list[Result | None]) -> Row | None:
        try:
            product_id = self._binder.item_code(figure.item)
        except UnmappedError as exc:
            outcomes[index] = RejectedError(f"{self.name}: no Ordergroove product for SKU {figure.item}: {exc}")
            return None
        shown = self._flags.get(product_id)
        live = self._threshold.live(figure.quantity, shown)
        if live == shown:
            outcomes[index] = Delivered(f"unchanged: product {product_id} stays {'live' if live else 'off'}")
            return None
        return Row(index, figure.item, product_id, live)

    def _send(self, chunk: list[Row]) -> list[Result] | BridgeError:
        latest = {row.product_id: row.live for row in chunk}  # one entry per product; the last figure wins
        body = [{"product_id": pid, "live": live} for pid, live in latest.items()]
        reply = self._sender.call("PATCH", self._url, body=body, what=WHAT)
        if isinstance(reply, BridgeError):
            return reply
        results = product_results(reply)
        outcomes = [self._outcome(row, latest[row.product_id], results.get(row.product_id)) for row in chunk]
        for pid, live in latest.items():
            if results.get(pid, {}).get("status") == 200:
                self._flags.put(pid, live)
        return outcomes

    def _outcome(self, row: Row, live: bool, result: dict[str, Any] | None) -> Result:
        product = f"product {row.product_id} (SKU {row.sku})"
        if result is None:  # a PATCH of the flag is idempotent: asking again is safe
            return RetryableError(f"{WHAT}: the answer has no result for {product}")
        status, message = result.get("status"), self._sender.redact(_message(result))
        if status == 200:
            return Delivered(f"live: {'true' if live else 'false'}")
        if status == 404:
            return RejectedError(f"Ordergroove has no {product} (404): check the SKU's product id in "
                                 f"mappings/{self.name}.yaml (items) against Ordergroove's product feed{message}")
        if status == 400:
            return RejectedError(f"Ordergroove refused the live flag of {product} (400){message or ': no reason given'}")
        return RetryableError(f"Ordergroove answered {status} for {product}{message}")

    def close(self) -> None:
        self._sender.close()
        self._flags.close()


def product_results(reply: Reply) -> dict[str, dict[str, Any]]:
    """product id -> its result. The Bulk Update reference answers ``{"results": [...]}``; the Real
    Time Stock Update guide shows a list of such objects: both are read."""
    body = reply.body
    groups = body if isinstance(body, list) else [body]
    found: dict[str, dict[str, Any]] = {}
    for group in groups:
        results = group.get("results") if isinstance(group, dict) else None
        for result in results if isinstance(results, list) else []:
            if isinstance(result, dict) and result.get("product_id") is not None:
                found[str(result["product_id"])] = result
    return found


def _message(result: dict[str, Any]) -> str:
    text = next((result[k] for k in ("message", "error", "errors", "detail") if result.get(k)), None)
    return f": {text if isinstance(text, str) else json.dumps(text)[:300]}" if text else ""


def ordergroove_message(response: requests.Response) -> str | None:
    """Ordergroove's error text (``detail``, ``message`` or ``error``), or None."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    text = next((body[k] for k in ("detail", "message", "error") if isinstance(body.get(k), str)), None)
    if text and response.status_code == 403:
        return f"{text} (check the merchant public id, merchant level id and hash key, and this host's clock)"
    return text


def describe(mapping: SystemMapping, lookups: Mapping[str, LookupTable], figures: Sequence[Any]) -> str:
    """``erp-bridge mappings preview``: the PATCH these figures become. The preview has no storage,
    so what Ordergroove shows is taken from ``last_pushed`` (unknown without it)."""
    binder, threshold = Binder(mapping, lookups.get(mapping.system)), Threshold.of(mapping.quantity_policy)
    lines, body = [], []
    for figure in figures:
        if not isinstance(figure, Figure):
            raise MappingError(f"{mapping.system} receives availability only, not {type(figure).__name__}")
        shown = None if figure.previous is None else threshold.live(figure.previous, None)
        live, product_id = threshold.live(figure.quantity, shown), binder.item_code(figure.item)
        state = "live" if live else "off"
        lines.append(f"# {figure.item} -> product {product_id}: figure {figure.quantity}, "
                     + (f"stays {state}: not sent" if live == shown else f"live: {str(live).lower()}"))
        if live != shown:
            body.append({"product_id": product_id, "live": live})
    url = str(mapping.connection.base_url).rstrip("/") + PATH
    lines += [f"PATCH {url}", "authorization: ***", "og-authorization: True", "Content-Type: application/json", "",
              json.dumps(body, indent=2)] if body else ["(nothing to send)"]
    return "\n".join(lines) + "\n"


def from_context(ctx: ConnectorContext, clock: Callable[[], float] = time.time) -> OrdergrooveConnector:
    """Registry factory: the signature strategy from the three secrets, the SKU table, the flags."""
    m = ctx.mapping
    auth = m.connection.auth
    if auth.kind != AUTH_KIND:
        raise ConfigError(f"{m.system}: Ordergroove takes auth kind {AUTH_KIND} (the HMAC authorization header of "
                          f"the Real Time Stock Update guide), not {auth.kind}")
    if m.items.lookup is not None and ctx.table is None:
        raise ConfigError(f"{m.system}: items.lookup names {m.items.lookup.file} but the connector got no lookup tables")
    public_id, sig_field, hash_key = (_secret(ctx, role) for role in SECRET_ROLES)
    strategy = OrdergrooveSignature(public_id, sig_field, hash_key, clock)
    sender = ctx.sender(message=ordergroove_message, auth=strategy)
    return OrdergrooveConnector(m, sender, Binder(m, ctx.table), LiveFlags(ctx.storage_url, m.system))


def _secret(ctx: ConnectorContext, role: str) -> str:
    name = ctx.mapping.connection.auth.secrets.get(role)
    if name is None:
        raise ConfigError(f"{ctx.system}: connection.auth.secrets needs '{role}' ({AUTH_KIND}: "
                          f"{', '.join(SECRET_ROLES)})")
    return ctx.secret(name)
