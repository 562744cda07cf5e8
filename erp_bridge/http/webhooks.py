"""Channel webhooks (flow 3): verify over the raw body, normalise, store durably, then 2xx.

A forged or malformed delivery gets a 4xx naming the problem and is logged without its body.
A delivery that verifies is always stored, even when a line names an unknown SKU or location:
that line dead-letters with the reason (replayable after the mapping is fixed) instead of making
the platform retry, and eventually drop, the whole subscription.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..connectors.base import Capability
from ..errors import BridgeError, RejectedError

router = APIRouter(tags=["webhooks"])
log = logging.getLogger(__name__)


BODY_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "description": "the platform's own payload"}}}}}
ANSWERS: dict[int | str, dict[str, Any]] = {200: {"description": "verified and stored durably"}, 400: {"description": "malformed (why)"},
           401: {"description": "signature missing or wrong"}, 403: {"description": "another shop"},
           404: {"description": "no such system here"}, 413: {"description": "body over the limit"},
           503: {"description": "the bridge cannot take it now (why)"}}


@router.post("/webhooks/{system}", responses=ANSWERS, openapi_extra=BODY_DOC)
async def receive(system: str, request: Request) -> JSONResponse:
    runtime = request.app.state.runtime
    connector = runtime.connectors.get(system)
    if connector is None or Capability.VERIFY_WEBHOOK not in connector.capabilities:
        why = runtime.inactive.get(system, "no mapping file declares it, or it takes no webhooks")
        return JSONResponse({"error": f"system {system!r} does not receive webhooks here: {why}"}, status_code=404)
    body = await request.body()
    try:
        changes = await _verify(connector, request, body)
        entries = [e for change in changes for e in runtime.router.channel_change(change)]
        await runtime.store(entries)  # durable before the 200: the commit that holds it is done
    except RejectedError as exc:
        status = getattr(exc, "status", 400)
        log.warning("webhook for %s refused: %s", system, exc,
                    extra={"system": system, "status": status, "bytes": len(body)})
        return JSONResponse({"error": str(exc)}, status_code=status)
    except BridgeError as exc:  # a configuration that cannot take it, or not stored: the platform retries
        log.error("webhook for %s not taken: %s", system, exc, extra={"system": system, "bytes": len(body)})
        return JSONResponse({"error": f"the bridge cannot take this delivery now: {exc}"}, status_code=503,
                            headers={"Retry-After": "1"})
    return JSONResponse({"accepted": len(changes)}, status_code=200)


#: a delivery up to this size whose connector verifies without I/O is verified on the event loop:
#: a thread hop per webhook cost more than the HMAC and parse of an order (issue 15)
INLINE_VERIFY_BYTES = 64 * 1024


async def _verify(connector, request: Request, body: bytes) -> list:
    """In a worker thread when the connector may store the delivery (an fsync) before answering,
    or the body is large; on the loop otherwise."""
    if Capability.VERIFIES_WITHOUT_IO in connector.capabilities and len(body) <= INLINE_VERIFY_BYTES:
        return connector.verify_webhook(request.headers, body, str(request.url))
    return await run_in_threadpool(connector.verify_webhook, request.headers, body, str(request.url))
