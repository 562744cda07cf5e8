"""``POST /realtime/{channel}``: the real-time inventory script protocol (seed 000, vendor-apis §10).

The store posts ``.catalog .code .id .quantity .price`` and one field per selected option, at
add-to-cart and again at order confirmation, and reads two response headers: ``Available`` (0 =
unavailable, negative = unknown) and ``Inventory-Message`` (shown to the shopper). A well-formed
request is always answered 200 with both headers, whatever the answer is, because the store
reads headers, and an error status would read to it as "script unreachable".

Unknown code or options -> ``Available: 0``, not a negative number: negative means "unknown" and
lets the store take the order, for an item the bridge cannot decrement anywhere (its sale would
dead-letter): that is overselling by construction. 0 with a clear message is the honest answer.
"""
from __future__ import annotations

import logging
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from ..sync.pull import Answer, internals_by_code, sku_for

router = APIRouter(tags=["pull"])
log = logging.getLogger(__name__)
PROBE = {".id": "_fake_yahoo_item_", ".code": "_fake_yahoo_code_"}
PROBE_MESSAGE = "erp-bridge real-time inventory script is ready"
MAX_BODY = 16 * 1024
HEADERS_DOC = {"Available": {"description": "items available; 0 = not available, negative = unknown",
                             "schema": {"type": "integer"}},
               "Inventory-Message": {"description": "text the shopper sees", "schema": {"type": "string"}}}


class BadForm(ValueError):
    """The request is not a real-time inventory form: 400, still with the two headers."""


@router.post("/realtime/{channel}", responses={200: {"headers": HEADERS_DOC}, 400: {}, 404: {}},
             openapi_extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                 "type": "object", "properties": {f: {"type": "string"} for f in
                                                  (".catalog", ".code", ".id", ".quantity", ".price")}}}}}})
async def realtime(channel: str, request: Request) -> Response:
    from .pull import pull_clients, service_of

    mapping = pull_clients(request, "realtime_inventory").get(channel)
    if mapping is None:
        return _reply(404, 0, f"no real-time inventory client named {channel!r}", {})
    try:
        form = parse_form(await request.body())
        if all(form.get(k) == v for k, v in PROBE.items()):
            return _reply(200, 0, PROBE_MESSAGE, {"X-Availability-Source": "probe"})
        code, requested, options = read_form(form, mapping.pull.item_field)
    except BadForm as exc:
        return _reply(400, 0, str(exc), {})
    runtime = request.app.state.runtime
    sku = sku_for(mapping, runtime.mappings.lookups, code, options)
    if sku is None:
        return _unknown(mapping, code)
    internals = [loc for locs in internals_by_code(mapping).values() for loc in locs]
    service, pull = service_of(request), mapping.pull
    answer = service.answer_now(mapping, sku, internals, pull.fresh_s)  # from the cache, no thread
    if answer is None:
        answer = await run_in_threadpool(service.answer, mapping, sku, internals, pull.fresh_s, pull.live_timeout_s)
    return _answered(pull, answer, requested)


def _unknown(mapping, code: str) -> Response:
    detail = "unknown-options" if any(v.code == code for v in mapping.items.variants) else "unknown-item"
    log.warning("%s: %s for code %r", mapping.system, detail, code, extra={"system": mapping.system})
    return _reply(200, 0, mapping.pull.messages.unknown_item,
                  {"X-Availability-Source": "unknown", "X-Availability-Detail": detail})


def _answered(pull, answer: Answer, requested: int) -> Response:
    from .pull import freshness

    available, message = reply_for(pull, answer, requested)
    return _reply(200, available, message, freshness([answer]))


def reply_for(pull, answer: Answer, requested: int) -> tuple[int, str]:
    """(Available, Inventory-Message) for one answer under the client's settings."""
    messages = pull.messages
    if answer.source == "unreachable":
        return (0, messages.rejected) if pull.unreachable == "reject" else (-1, messages.unconfirmed)
    if answer.quantity is None:
        return 0, messages.unknown_item
    count = int(answer.quantity.to_integral_value(rounding=ROUND_FLOOR))
    shown = count if pull.display == "quantity" else min(count, 1)
    if count >= max(requested, 1):
        text = messages.in_stock
    elif count > 0 or pull.backorders:
        text = messages.backordered if pull.backorders else messages.insufficient
    else:
        text = messages.out_of_stock
    # availability display never reveals the count, not even through the message
    figure = str(count) if pull.display == "quantity" else "some"
    return shown, text.replace("{available}", figure).replace("{requested}", str(requested))


def parse_form(body: bytes) -> dict[str, str]:
    if len(body) > MAX_BODY:
        raise BadForm(f"request body over {MAX_BODY} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True,
                          strict_parsing=bool(body), max_num_fields=200)
    except ValueError:
        raise BadForm("expected an application/x-www-form-urlencoded body (key=value&...)") from None
    return {k: v for k, v in pairs}


def read_form(form: dict[str, str], item_field: str) -> tuple[str, int, dict[str, str]]:
    """(item code, quantity requested, selected options); options are the fields without a dot."""
    code = (form.get(f".{item_field}") or "").strip()
    if not code:
        raise BadForm(f"missing .{item_field} (the item to check)")
    try:
        quantity = Decimal(form.get(".quantity") or "1")
        if not quantity.is_finite() or quantity < 0 or quantity != quantity.to_integral_value():
            raise InvalidOperation
    except InvalidOperation:
        raise BadForm(".quantity must be a whole number, 0 or more") from None
    options = {k: v for k, v in form.items() if not k.startswith(".")}
    return code, int(min(quantity, Decimal(10**9))), options


def _reply(status: int, available: int, message: str, extra: dict[str, str]) -> Response:
    # header values must be one Latin-1 line: anything else would make the server fail the reply
    safe = " ".join(message.split()).encode("latin-1", "replace").decode("latin-1")
    return Response(status_code=status, headers={"Available": str(available), "Inventory-Message": safe, **extra})
